//! The background scrub reads the copies nothing else reads: with the hot copy intact, a
//! flipped byte in a cold pack is found (`/metrics`, the log) and the chunk's cold copy is
//! written again, so the blob still pulls byte-identical.

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use scipcache_tests::{Daemon, DaemonOptions, NS, blake3_file, http_get, write_generated};

use crate::common::p;

/// The cold pack objects under a data dir's default cold tier.
fn cold_packs(data_dir: &Path) -> Result<Vec<PathBuf>> {
    let mut packs = Vec::new();
    let mut folders = vec![data_dir.join("cold").join("packs")];
    while let Some(dir) = folders.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("listing {}", dir.display()))?
        {
            let path = entry?.path();
            if path.is_dir() {
                folders.push(path);
            } else {
                packs.push(path);
            }
        }
    }
    Ok(packs)
}

/// The value of a gauge line `name value` in a Prometheus text page (0 when absent).
fn gauge(page: &str, name: &str) -> u64 {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.trim().parse().ok())
        .unwrap_or(0)
}

#[test]
fn the_scrub_finds_a_flipped_byte_in_a_cold_pack_while_hot_is_intact_and_repairs_it() -> Result<()>
{
    // Every chunk each second.
    let d = Daemon::start(
        DaemonOptions::new()
            .arg("--scrub-per-day")
            .arg("1000000000"),
    )?;
    let writer = d.token("acme", &["web/app:write"], "1h")?;
    let admin = d.token("acme", &["*:admin"], "1h")?;
    let file = d.scratch().join("blob.bin");
    write_generated(&file, 2 << 20, 5)?;
    d.cli(&writer, &["push", NS, "commit/1", p(&file)])?
        .success()?;
    d.wait_cold_drained(&admin)?;

    let packs = cold_packs(d.data_dir())?;
    ensure!(!packs.is_empty(), "no cold pack was written");
    // A quarter into the pack: inside a chunk's frame, before the footer.
    let pack = &packs[0];
    let len = std::fs::metadata(pack)?.len();
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(pack)?;
    let mut byte = [0u8; 1];
    f.read_exact_at(&mut byte, len / 4)?;
    f.write_all_at(&[byte[0] ^ 0x5a], len / 4)?;
    f.sync_all()?;

    let deadline = Instant::now() + Duration::from_secs(60);
    let bad_cold = "scipcache_scrub_bad_copies{tier=\"cold\"}";
    loop {
        let page = http_get(d.metrics_addr(), "/metrics")?.body;
        if gauge(&page, bad_cold) >= 1 {
            ensure!(
                gauge(&page, "scipcache_scrub_lost_chunks") == 0,
                "a chunk counted as lost although hot was intact:\n{page}"
            );
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "the scrub did not report the flipped cold copy within 60 s:\n{}",
            page.lines()
                .filter(|l| l.starts_with("scipcache_scrub"))
                .collect::<Vec<_>>()
                .join("\n")
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    ensure!(
        d.log()
            .lines()
            .any(|l| l.contains("the scrub found a bad copy") && l.contains("cold")),
        "the log names the bad copy and its tier:\n{}",
        d.log()
    );
    // The repair queued a new cold copy; it is written, and the blob still pulls whole.
    d.wait_cold_drained(&admin)?;
    let out = d.scratch().join("out.bin");
    d.cli(&admin, &["pull", NS, "commit/1", "-o", p(&out)])?
        .success()?;
    ensure!(
        blake3_file(&out)? == blake3_file(&file)?,
        "the pull differs"
    );
    Ok(())
}
