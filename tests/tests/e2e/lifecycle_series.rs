//! Compaction on the real 12-commit series: after a GC that keeps the newest 3 refs (by a
//! `[[retention]]` rule), the cold folder and the warm packs are within 2× of a fresh daemon
//! holding only those 3, and the 3 pull byte-identical.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use scipcache_tests::{Daemon, DaemonOptions, NS, blake3_file, data, dir_bytes};

use crate::common::p;

/// A daemon whose hot tier holds about a commit, so most chunks live in warm too.
fn daemon(scratch: &Path, name: &str) -> Result<Daemon> {
    let config = scratch.join(format!("{name}.toml"));
    std::fs::write(
        &config,
        "[[retention]]\nprefix = \"commit/\"\nkeep_last = 3\n",
    )?;
    Daemon::start(
        DaemonOptions::new()
            .arg("--config")
            .arg(&config)
            .arg("--hot-bytes")
            .arg("24MiB")
            .arg("--cold-flush-after")
            .arg("200ms"),
    )
}

/// Waits until the write-behind is drained and hot is under its budget (the evictor done).
fn settle(d: &Daemon, admin: &str) -> Result<()> {
    d.wait_cold_drained(admin)?;
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let stat = d.cli(admin, &["stat", "--json"])?.success()?.json()?;
        let hot = stat["tiers"]
            .as_array()
            .and_then(|t| t.iter().find(|t| t["name"] == "hot"))
            .and_then(|t| t["stored_bytes"].as_u64())
            .unwrap_or(0);
        if hot <= 24 << 20 {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

#[test]
fn gc_keeping_the_newest_3_of_12_shrinks_cold_and_warm_to_within_2x_of_a_fresh_store() -> Result<()>
{
    let Some(series) = data::series_a() else {
        return Ok(());
    };
    let scratch = tempfile::tempdir()?;
    let d = daemon(scratch.path(), "all")?;
    let writer = d.token("acme", &["web/app:write"], "1h")?;
    let operator = d.token("*", &["*:admin"], "1h")?;
    for f in &series.files {
        d.cli(&writer, &["push", NS, &f.key(), p(f.path()?)])?
            .success()?;
        // Creation times in push order.
        std::thread::sleep(Duration::from_millis(20));
    }
    settle(&d, &operator)?;
    let (cold_all, warm_all) = (
        dir_bytes(&d.data_dir().join("cold")),
        dir_bytes(&d.data_dir().join("warm")),
    );
    let gc = d
        .cli(&operator, &["gc", "--grace", "0s", "--json"])?
        .success()?
        .json()?;
    ensure!(gc["swept_chunks"].as_u64() > Some(0), "{gc}");
    let listed = d.cli(&writer, &["ls", NS, "--json"])?.success()?.json()?;
    let kept: Vec<&str> = listed["refs"]
        .as_array()
        .map(|r| r.iter().filter_map(|r| r["key"].as_str()).collect())
        .unwrap_or_default();
    let newest: Vec<String> = series.files.iter().rev().take(3).map(|f| f.key()).collect();
    ensure!(kept.len() == 3, "kept {kept:?}");
    for key in &newest {
        ensure!(kept.contains(&key.as_str()), "{key} not kept: {kept:?}");
    }
    settle(&d, &operator)?;
    let (cold_gc, warm_gc) = (
        dir_bytes(&d.data_dir().join("cold")),
        dir_bytes(&d.data_dir().join("warm")),
    );
    let out = scratch.path().join("pulled");
    for f in series.files.iter().rev().take(3) {
        d.cli(&writer, &["pull", NS, &f.key(), "-o", p(&out)])?
            .success()?;
        ensure!(
            blake3_file(&out)? == f.b3,
            "{} pulled different bytes",
            f.key()
        );
    }

    let fresh = daemon(scratch.path(), "fresh")?;
    let writer = fresh.token("acme", &["web/app:write"], "1h")?;
    let admin = fresh.token("*", &["*:admin"], "1h")?;
    for f in series.files.iter().skip(series.files.len() - 3) {
        fresh
            .cli(&writer, &["push", NS, &f.key(), p(f.path()?)])?
            .success()?;
    }
    settle(&fresh, &admin)?;
    let (cold_fresh, warm_fresh) = (
        dir_bytes(&fresh.data_dir().join("cold")),
        dir_bytes(&fresh.data_dir().join("warm")),
    );
    eprintln!(
        "cold folder {cold_all} → {cold_gc} bytes (fresh {cold_fresh}); warm packs {warm_all} → \
         {warm_gc} (fresh {warm_fresh})"
    );
    ensure!(
        cold_gc <= 2 * cold_fresh,
        "cold folder {cold_gc} bytes after gc, fresh store {cold_fresh}"
    );
    ensure!(
        warm_gc <= 2 * warm_fresh.max(1 << 20),
        "warm packs {warm_gc} bytes after gc, fresh store {warm_fresh}"
    );
    Ok(())
}
