//! `scipcache fsck` on a real daemon: a clean store exits 0 with nothing missing or corrupt;
//! a flipped byte in a warm pack file, one in a cold pack object and a deleted cold pack
//! object make it exit 1 with `data loss: ` and the problems listed; `fsck --repair` repairs
//! them all from the good copies in the other tiers and exits 0, and every ref still pulls
//! byte-identical. Only the operator may run it.

use std::collections::BTreeSet;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use scipcache_tests::{CliOutput, Daemon, DaemonOptions, NS, write_generated};
use serde_json::Value;

use crate::common::{p, require_fields, same_bytes, u64_field};

/// The contract's `fsck --json` fields, and the problem list.
const FSCK_FIELDS: &[&str] = &[
    "checked_chunks",
    "missing",
    "corrupt",
    "repaired",
    "garbage",
    "seconds",
    "problems",
];

/// Every file under `dir` (recursively) whose name ends with `.pack`.
fn packs_under(dir: &Path) -> Result<BTreeSet<PathBuf>> {
    let mut packs = BTreeSet::new();
    let mut folders = vec![dir.to_path_buf()];
    while let Some(dir) = folders.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries {
            let path = entry?.path();
            if path.is_dir() {
                folders.push(path);
            } else if path.extension().is_some_and(|e| e == "pack") {
                packs.insert(path);
            }
        }
    }
    Ok(packs)
}

/// The cold pack objects (`<data-dir>/cold/packs/<tenant hex>/*.pack`).
fn cold_packs(d: &Daemon) -> Result<BTreeSet<PathBuf>> {
    packs_under(&d.data_dir().join("cold").join("packs"))
}

/// Flips the byte at `offset` of `file`.
fn flip(file: &Path, offset: u64) -> Result<()> {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(file)
        .with_context(|| format!("opening {}", file.display()))?;
    let mut byte = [0u8; 1];
    f.read_exact_at(&mut byte, offset)?;
    f.write_all_at(&[byte[0] ^ 0x5a], offset)?;
    f.sync_all()?;
    Ok(())
}

/// `scipcache --json fsck ARGS` with the operator's token, checked for its fields.
fn fsck(d: &Daemon, operator: &str, args: &[&str]) -> Result<(CliOutput, Value)> {
    let mut all = vec!["--json", "fsck"];
    all.extend_from_slice(args);
    let out = d.cli(operator, &all)?;
    let j = out.json()?;
    require_fields(&j, FSCK_FIELDS, "fsck")?;
    Ok((out, j))
}

/// `(chunks, stored_bytes)` of the tier `name` in `stat --json`.
fn tier(d: &Daemon, operator: &str, name: &str) -> Result<u64> {
    let j = d.cli(operator, &["--json", "stat"])?.success()?.json()?;
    let t = j["tiers"]
        .as_array()
        .and_then(|tiers| tiers.iter().find(|t| t["name"] == name))
        .with_context(|| format!("stat names no {name} tier: {j}"))?;
    u64_field(t, "chunks")
}

#[test]
fn fsck_finds_flipped_and_deleted_packs_and_repair_fixes_them_from_good_copies() -> Result<()> {
    // A hot budget far below what is pushed, so most chunks live in warm too; no scrub, so
    // that nothing repairs the damage before fsck sees it.
    let d = Daemon::start(DaemonOptions::new().args([
        "--hot-bytes",
        "2000000",
        "--warm-bytes",
        "1GiB",
        "--cold-flush-after",
        "100ms",
        "--scrub-per-day",
        "0",
    ]))?;
    let operator = d.token("*", &["*:admin"], "1h")?;
    let writer = d.token("acme", &["web/app:write"], "1h")?;

    // Three blobs, each in cold packs of its own (the queue drains between the pushes).
    let mut files = Vec::new();
    let mut packs_of = Vec::new();
    let mut seen = BTreeSet::new();
    for i in 0..3u64 {
        let file = d.scratch().join(format!("blob-{i}.bin"));
        write_generated(&file, 6 << 20, 70 + i)?;
        let key = format!("commit/{i}");
        d.cli(&writer, &["push", NS, &key, p(&file)])?.success()?;
        d.wait_cold_drained(&operator)?;
        let now = cold_packs(&d)?;
        let new: Vec<PathBuf> = now.difference(&seen).cloned().collect();
        ensure!(!new.is_empty(), "push {i} wrote no cold pack");
        seen = now;
        packs_of.push(new);
        files.push((key, file));
    }
    // The evictor has moved the oldest chunks (blob 0's first) to warm.
    let deadline = Instant::now() + Duration::from_secs(60);
    while tier(&d, &operator, "warm")? == 0 {
        if Instant::now() >= deadline {
            bail!("no chunk reached the warm tier within 60 s under a 2 MB hot budget");
        }
        std::thread::sleep(Duration::from_millis(200));
    }

    let (clean_out, clean) = fsck(&d, &operator, &[])?;
    ensure!(
        clean_out.code() == Some(0)
            && u64_field(&clean, "missing")? == 0
            && u64_field(&clean, "corrupt")? == 0
            && u64_field(&clean, "repaired")? == 0
            && u64_field(&clean, "checked_chunks")? > 0,
        "fsck of an intact store must exit 0 with nothing missing or corrupt:\n{clean_out}"
    );
    let human = d.cli(&operator, &["fsck"])?;
    ensure!(
        human.code() == Some(0) && human.stdout_str().starts_with("fsck: checked "),
        "{human}"
    );
    // Only the operator.
    let tenant_admin = d.token("acme", &["*:admin"], "1h")?;
    d.cli(&tenant_admin, &["fsck"])?.expect_code(4)?;

    // The damage: the first record of the oldest warm pack (a chunk of blob 0, whose cold copy
    // is intact), a byte inside blob 2's first cold pack, and blob 1's first cold pack gone.
    let warm = packs_under(&d.data_dir().join("warm"))?;
    let oldest_warm = warm.first().context("no warm pack file")?;
    // 16-byte pack header, 44-byte record header, then the frame: a byte of its payload.
    flip(oldest_warm, 16 + 44 + 40)?;
    let cold_flipped = &packs_of[2][0];
    let len = std::fs::metadata(cold_flipped)?.len();
    flip(cold_flipped, len / 4)?;
    let cold_deleted = &packs_of[1][0];
    std::fs::remove_file(cold_deleted)?;

    let (damaged_out, damaged) = fsck(&d, &operator, &[])?;
    let stderr = damaged_out.stderr.trim();
    ensure!(
        damaged_out.code() == Some(1)
            && stderr.lines().count() == 1
            && stderr.starts_with("data loss: fsck found ")
            && stderr.contains("fsck --repair"),
        "fsck of a damaged store must exit 1 with one `data loss: ` line naming the fix:\n\
         {damaged_out}"
    );
    ensure!(
        u64_field(&damaged, "corrupt")? >= 2 && u64_field(&damaged, "missing")? >= 1,
        "two corrupt copies (warm, cold) and a missing cold pack: {damaged}"
    );
    let problems = damaged["problems"]
        .as_array()
        .context("problems is not an array")?;
    let text: String = problems
        .iter()
        .filter_map(|p| p["what"].as_str())
        .collect::<Vec<_>>()
        .join("\n");
    ensure!(
        text.contains("warm") && text.contains("cold"),
        "the problems name the tiers of the bad copies:\n{text}"
    );

    let (repaired_out, repaired) = fsck(&d, &operator, &["--repair"])?;
    ensure!(
        repaired_out.code() == Some(0)
            && u64_field(&repaired, "repaired")?
                >= u64_field(&repaired, "missing")? + u64_field(&repaired, "corrupt")?
            && u64_field(&repaired, "repaired")? > 0,
        "fsck --repair must repair every problem from the good copies and exit 0:\n\
         {repaired_out}"
    );
    d.wait_cold_drained(&operator)?;
    let (after_out, after) = fsck(&d, &operator, &[])?;
    ensure!(
        after_out.code() == Some(0)
            && u64_field(&after, "missing")? == 0
            && u64_field(&after, "corrupt")? == 0,
        "fsck after the repair must find nothing:\n{after_out}"
    );
    for (key, file) in &files {
        let out = d.scratch().join("pulled.out");
        d.cli(&writer, &["pull", NS, key, "-o", p(&out)])?
            .success()?;
        ensure!(same_bytes(file, &out)?, "{key} pulled other bytes");
    }
    Ok(())
}
