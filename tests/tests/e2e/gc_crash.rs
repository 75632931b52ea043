//! A daemon killed with SIGKILL while pushes, deletes, garbage collection and compaction run
//! at once loses no acknowledged push: after every restart each acknowledged ref that was not
//! deleted pulls byte-identical, and `fsck` finds nothing missing or corrupt.

use std::process::Child;
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use scipcache_tests::{Daemon, DaemonOptions, NS, blake3_file, write_generated};

use crate::common::p;

/// Rounds of concurrent work, `kill -9`, restart and check.
const ROUNDS: u64 = 12;

/// Waits for a CLI child the daemon's death may have cut off; whether it succeeded.
fn finished(child: Child) -> Result<bool> {
    let out = child.wait_with_output().context("waiting for a CLI call")?;
    Ok(out.status.success())
}

#[test]
fn kill_9_during_pushes_deletes_gc_and_compaction_loses_no_acknowledged_ref() -> Result<()> {
    // Tiny budgets keep warm packs filling and emptying; a high compaction threshold rewrites
    // packs at nearly every GC.
    let mut d = Daemon::start(
        DaemonOptions::new()
            .arg("--hot-bytes")
            .arg("1MiB")
            .arg("--warm-bytes")
            .arg("4MiB")
            .arg("--cold-flush-after")
            .arg("100ms")
            .arg("--compact-below")
            .arg("0.9"),
    )?;
    let writer = d.token("acme", &["web/app:write"], "1h")?;
    let operator = d.token("*", &["*:admin"], "1h")?;
    // (key, BLAKE3) of each acknowledged ref not deleted, and of those whose deletion was cut
    // off (they may or may not exist after the restart).
    let mut live: Vec<(String, String)> = Vec::new();
    let mut maybe: Vec<(String, String)> = Vec::new();
    for round in 0..ROUNDS {
        let mut pushes = Vec::new();
        for i in 0..3 {
            let key = format!("commit/{round}-{i}");
            let file = d.scratch().join(format!("blob-{round}-{i}"));
            let b3 = write_generated(&file, (2 << 20) + i * 700_000, 1000 + round * 10 + i)?;
            let child = d
                .cli_command(Some(&writer), &["push", NS, &key, p(&file)])
                .spawn()?;
            pushes.push((key, b3, child));
        }
        // One older ref deleted while the pushes run.
        let removal = if live.len() > 2 {
            let (key, b3) = live.remove((round as usize * 7) % live.len());
            let child = d.cli_command(Some(&writer), &["rm", NS, &key]).spawn()?;
            Some((key, b3, child))
        } else {
            None
        };
        let gc = d
            .cli_command(Some(&operator), &["gc", "--grace", "0s", "--json"])
            .spawn()?;
        // Short enough that the kill often lands while the calls are still running.
        std::thread::sleep(Duration::from_millis(40 + (round * 53) % 250));
        d.kill9()?;
        for (key, b3, child) in pushes {
            if finished(child)? {
                live.push((key, b3));
            }
        }
        if let Some((key, b3, child)) = removal
            && !finished(child)?
        {
            maybe.push((key, b3));
        }
        finished(gc)?;
        d.restart()?;
        let out = d.scratch().join("pulled");
        for (key, b3) in &live {
            d.cli(&writer, &["pull", NS, key, "-o", p(&out)])?
                .success()?;
            ensure!(
                &blake3_file(&out)? == b3,
                "round {round}: {key} pulled different bytes after kill -9; log:\n{}",
                d.log()
            );
        }
        // A deletion cut off by the kill either happened or not; a ref still there is whole.
        for (key, b3) in std::mem::take(&mut maybe) {
            let pulled = d.cli(&writer, &["pull", NS, &key, "-o", p(&out)])?;
            match pulled.code() {
                Some(0) => {
                    ensure!(blake3_file(&out)? == b3, "round {round}: {key} differs");
                    live.push((key, b3));
                }
                Some(3) => {}
                other => anyhow::bail!("round {round}: pulling {key} exited {other:?}"),
            }
        }
        let fsck = d.cli(&operator, &["fsck", "--json"])?;
        ensure!(
            fsck.code() == Some(0),
            "round {round}: fsck after kill -9 found damage: {}\nlog:\n{}",
            fsck.stdout_str(),
            d.log()
        );
    }
    ensure!(
        live.len() >= 5,
        "too few pushes were acknowledged: {}",
        live.len()
    );
    // A final collection with nothing running leaves every live ref whole.
    d.cli(&operator, &["gc", "--grace", "0s", "--json"])?
        .success()?;
    let out = d.scratch().join("pulled");
    for (key, b3) in &live {
        d.cli(&writer, &["pull", NS, key, "-o", p(&out)])?
            .success()?;
        ensure!(&blake3_file(&out)? == b3, "{key} differs after the last gc");
    }
    Ok(())
}
