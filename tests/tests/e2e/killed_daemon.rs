//! A daemon killed with SIGKILL in the middle of a push: the CLI's one-line cause starts with
//! `unavailable: ` (exit 1), so scripts that retry on unavailable do, instead of `unknown:
//! transport error` or `unknown: h2 protocol error`. (The same cut at an exact point, with the
//! client's retries of a connection that breaks once, is in the client crate's
//! `tests/transport_failures.rs`.)

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use scipcache_tests::{Daemon, DaemonOptions, FED_BEFORE_A_STALL, NS, Spawned, write_generated};

#[test]
fn a_daemon_killed_mid_push_makes_the_cli_print_unavailable() -> Result<()> {
    let mut d = Daemon::start(DaemonOptions::new())?;
    let token = d.token("acme", &["web/app:write"], "1h")?;
    let admin = d.token("acme", &["*:admin"], "1h")?;
    let big = d.scratch().join("big.bin");
    write_generated(&big, 48 * 1024 * 1024, 21)?;
    let mut blob = Vec::new();
    std::fs::File::open(&big)?.read_to_end(&mut blob)?;

    // The push reads a pipe fed with the blob's first bytes, which then stalls until the
    // daemon is dead; the rest then arrives while the push's connections are broken.
    let (push, mut stdin) = Spawned::spawn_with_stdin(
        d.cli_command(Some(&token), &["push", NS, "commit/orphan", "/dev/stdin"]),
    )?;
    let (release, released) = std::sync::mpsc::channel::<()>();
    let feeder = std::thread::spawn(move || {
        // Fails with EPIPE once the CLI has given up: fine either way.
        let (first, rest) = blob.split_at(FED_BEFORE_A_STALL);
        if stdin.write_all(first).is_ok() && released.recv().is_ok() {
            for part in rest.chunks(1 << 20) {
                if stdin.write_all(part).is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(120);
    while d.hot_chunks(&admin)? == 0 {
        ensure!(
            Instant::now() < deadline,
            "the daemon stored no chunk of the push within 120 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    d.kill9()?;
    let _ = release.send(());

    let out = push.wait(Duration::from_secs(120))?;
    let _ = feeder.join();
    ensure!(
        out.code() == Some(1),
        "a push whose daemon died must exit 1:\n{out}"
    );
    ensure!(
        out.error_line().starts_with("unavailable: "),
        "a push whose daemon died must fail as unavailable:\n{out}"
    );
    ensure!(
        out.stderr.trim().lines().count() == 1,
        "the cause must be one line:\n{out}"
    );
    Ok(())
}
