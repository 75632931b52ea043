//! A daemon killed with SIGKILL while its evictor demotes and drops copies and its write-behind
//! recompresses cold packs loses no acknowledged push: after every restart each acknowledged
//! ref pulls byte-identical.

use std::time::Duration;

use anyhow::{Result, ensure};
use scipcache_tests::{Daemon, DaemonOptions, NS, blake3_file, write_generated};

use crate::common::p;

/// Rounds of push, pause, `kill -9`, restart and pull-everything.
const ROUNDS: u64 = 12;

#[test]
fn kill_9_during_eviction_and_recompression_loses_no_acknowledged_push() -> Result<()> {
    // Tiny budgets keep the evictor busy after every push; every backlog counts as one and the
    // write-behind is idle at once, so fast packs are recompressed right after they are written.
    let mut d = Daemon::start(
        DaemonOptions::new()
            .arg("--hot-bytes")
            .arg("1MiB")
            .arg("--warm-bytes")
            .arg("3MiB")
            .arg("--cold-flush-after")
            .arg("200ms")
            .arg("--cold-fast-backlog")
            .arg("1")
            .arg("--cold-idle-after")
            .arg("0s"),
    )?;
    let writer = d.token("acme", &["web/app:write"], "1h")?;
    let mut acknowledged: Vec<(String, String)> = Vec::new();
    for round in 0..ROUNDS {
        let key = format!("commit/{round}");
        let file = d.scratch().join(format!("blob-{round}"));
        let b3 = write_generated(&file, (1 << 20) + round * 300_000, 100 + round)?;
        d.cli(&writer, &["push", NS, &key, p(&file)])?.success()?;
        acknowledged.push((key, b3));
        // Let eviction and recompression get going, a different way into them each round.
        std::thread::sleep(Duration::from_millis(100 + (round * 137) % 900));
        d.kill9()?;
        d.restart()?;
        let out = d.scratch().join("pulled");
        for (key, b3) in &acknowledged {
            d.cli(&writer, &["pull", NS, key, "-o", p(&out)])?
                .success()?;
            ensure!(
                &blake3_file(&out)? == b3,
                "round {round}: {key} pulled different bytes after kill -9; log:\n{}",
                d.log()
            );
        }
    }
    Ok(())
}
