//! `scipcached rebuild`: the cold tier alone restores the local index. A data dir whose index
//! was deleted is refused at start (naming `rebuild`), the rebuild restores every ref that
//! still exists byte-identical, and deleted and expired refs stay gone.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use scipcache_tests::{Daemon, DaemonOptions, NS, write_generated};

use crate::common::{p, same_bytes};

/// Pulls `key` into `out`, returning the CLI's exit code.
fn pull_code(d: &Daemon, token: &str, key: &str, out: &std::path::Path) -> Result<Option<i32>> {
    Ok(d.cli(token, &["pull", NS, key, "-o", p(out)])?.code())
}

#[test]
fn a_deleted_index_is_refused_and_rebuild_restores_live_refs_but_not_deleted_or_expired_ones()
-> Result<()> {
    let mut d = Daemon::start(DaemonOptions::new().arg("--cold-flush-after").arg("100ms"))?;
    let writer = d.token("acme", &["web/app:write"], "1h")?;
    let admin = d.token("acme", &["*:admin"], "1h")?;
    let mut files: Vec<(String, PathBuf)> = Vec::new();
    for i in 0..4u64 {
        let path = d.scratch().join(format!("index-{i}.scip"));
        write_generated(&path, (3 << 20) + i * 100_003, 40 + i)?;
        let key = format!("commit/{i}");
        d.cli(&writer, &["push", NS, &key, p(&path)])?.success()?;
        files.push((key, path));
    }
    let short = d.scratch().join("short.scip");
    write_generated(&short, 1 << 20, 99)?;
    d.cli(
        &writer,
        &["push", NS, "commit/short", p(&short), "--ttl", "2s"],
    )?
    .success()?;
    d.cli(&writer, &["rm", NS, "commit/1"])?.success()?;
    let deleted = files.remove(1);
    d.wait_cold_drained(&admin)?;

    // A rebuild needs the daemon stopped.
    let busy = d.rebuild()?;
    ensure!(
        busy.code() == Some(1) && busy.error_line().contains("stop scipcached"),
        "rebuild while the daemon runs must refuse and say to stop it:\n{busy}"
    );
    // Wait for the short ref to expire (its TTL is 2 s).
    let scratch_out = d.scratch().join("probe.out");
    let deadline = Instant::now() + Duration::from_secs(60);
    while pull_code(&d, &writer, "commit/short", &scratch_out)? != Some(3) {
        if Instant::now() >= deadline {
            bail!("commit/short (--ttl 2s) still pulls after 60 s");
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    let status = d.sigterm()?;
    ensure!(status.success(), "SIGTERM exit {status}; log:\n{}", d.log());

    let meta = d.data_dir().join("meta");
    std::fs::remove_dir_all(&meta).with_context(|| format!("removing {}", meta.display()))?;
    let (status, log) = d.start_refused()?;
    ensure!(
        !status.success() && log.contains("scipcached rebuild"),
        "a start without an index over a cold tier with data must refuse and name \
         `scipcached rebuild` (exit {status}); log:\n{log}"
    );

    let rebuilt = d.rebuild()?.success()?;
    let report = rebuilt.stdout_str();
    eprintln!("rebuild: {report}");
    ensure!(
        report.contains("refs: 3 restored, 1 deleted (stay deleted), 1 expired (stay gone)"),
        "rebuild must report 3 restored, 1 deleted, 1 expired refs:\n{rebuilt}"
    );

    d.restart()?;
    for (key, path) in &files {
        let out = d.scratch().join(format!("{}.out", key.replace('/', "-")));
        d.cli(&writer, &["pull", NS, key, "-o", p(&out)])?
            .success()?;
        ensure!(
            same_bytes(path, &out)?,
            "{key} pulled other bytes after the rebuild"
        );
    }
    for gone in [deleted.0.as_str(), "commit/short"] {
        let out = d.scratch().join("gone.out");
        let code = pull_code(&d, &writer, gone, &out)?;
        ensure!(
            code == Some(3),
            "{gone} (deleted or expired before the rebuild) must stay gone: exit {code:?}"
        );
    }
    let listed = d.cli(&writer, &["--json", "ls", NS])?.success()?.json()?;
    let keys: Vec<&str> = listed["refs"]
        .as_array()
        .context("ls --json has no refs")?
        .iter()
        .filter_map(|r| r["key"].as_str())
        .collect();
    ensure!(
        keys.len() == 3 && !keys.contains(&"commit/1"),
        "ls after the rebuild: {keys:?}"
    );
    Ok(())
}
