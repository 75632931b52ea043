//! `scip_cut`: what SCIP-aware cutting does to deduplication, without a daemon.
//!
//! ```text
//! cargo run --release -p scipcache-bench --bin scip_cut -- [--level N] [--series DIR]...
//! ```
//!
//! Each series (A, B, B with its SHA pinned, and any `--series DIR` of `NN_*.scip.zst` files)
//! is cut commit by commit with plain FastCDC, document-aligned, and document-aligned after
//! version normalization, into one simulated chunk store per mode. Printed per series and
//! mode: distinct chunks and their raw bytes, their bytes compressed one by one with zstd at
//! `--level` (default 3), the median next-commit bytes (raw bytes of chunks the store lacked,
//! commits 2 onwards, as a share of the file), and the cutting rate (median of the commits).
//! Markdown on stdout.
//!
//! `--speed` only times the cutting of each series' first commit in each mode (median of 5).

use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use scipcache_bench::{ScipFile, read_scip, require_data, scip_series};
use scipcache_tiers::chunking::ChunkerSpec;
use scipcache_tiers::scip::{Cut, CutMode, Cutter};

/// The B series' full SHAs (`shared/data/scip/README.md`) and the string that pins them.
const B_SHAS: [&str; 3] = [
    "eb5ef2ac708a6e70ec253d78955d04e20c3c9784",
    "e8f1c8fa814a9f5c37bb4c7497f632ab24380110",
    "9794e80a33c0e47ba4a7a98bffd6df0133b7aaca",
];
const PINNED: &[u8; 40] = b"5f3c9a0e7b21d4c86e0f9b3a2d7c41e85a6b0f92";

const MODES: [(CutMode, &str); 3] = [
    (CutMode::Plain, "plain FastCDC"),
    (CutMode::Documents, "document-aligned"),
    (CutMode::Normalized, "normalized"),
];

fn main() -> Result<()> {
    let mut level = 3;
    let mut speed = false;
    let mut extra = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--level" => level = args.next().context("--level N")?.parse()?,
            "--series" => extra.push(PathBuf::from(args.next().context("--series DIR")?)),
            "--speed" => speed = true,
            other => bail!("unknown argument {other}"),
        }
    }
    let mut all: Vec<(String, Vec<ScipFile>)> = Vec::new();
    if let Some(a) = require_data("series A", scip_series("A")) {
        all.push(("A".into(), a));
    }
    if let Some(b) = require_data("series B", scip_series("B")) {
        let pinned = b
            .iter()
            .zip(B_SHAS)
            .map(|(f, sha)| ScipFile {
                name: f.name.clone(),
                data: replace_all(&f.data, sha.as_bytes(), PINNED),
            })
            .collect();
        all.push(("B".into(), b));
        all.push(("B pinned".into(), pinned));
    }
    for dir in extra {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(&dir)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(".scip.zst"))
            .collect();
        paths.sort();
        let files = paths
            .iter()
            .map(|p| {
                Ok(ScipFile {
                    name: p.display().to_string(),
                    data: read_scip(p)?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        all.push((dir.display().to_string(), files));
    }
    if speed {
        println!("| series | cutting | cut MB/s, first commit, median of 5 |");
        println!("| --- | --- | ---: |");
        for (name, files) in &all {
            for (mode, label) in MODES {
                if std::env::var("SCIP_CUT_MODE").is_ok_and(|m| !label.starts_with(m.as_str())) {
                    continue;
                }
                let mut rates = (0..5)
                    .map(|_| {
                        let started = Instant::now();
                        cut(&files[0].data, mode)?;
                        Ok(files[0].data.len() as f64 / 1e6 / started.elapsed().as_secs_f64())
                    })
                    .collect::<Result<Vec<f64>>>()?;
                println!("| {name} | {label} | {:.0} |", median(&mut rates));
            }
            let rate = restore_speed(&files[0].data)?;
            println!("| {name} | restoring the normalized chunks | {rate:.0} |");
        }
        return Ok(());
    }
    println!(
        "| series | cutting | distinct chunks | stored raw MB | stored zstd-{level} MB | next commit, median | cut MB/s |"
    );
    println!("| --- | --- | ---: | ---: | ---: | ---: | ---: |");
    for (name, files) in &all {
        for (mode, label) in MODES {
            let r = measure(files, mode, level)?;
            println!(
                "| {name} | {label} | {} | {:.1} | {:.1} | {:.2}% | {:.0} |",
                r.chunks,
                r.raw as f64 / 1e6,
                r.compressed as f64 / 1e6,
                r.next_commit_share * 100.0,
                r.rate_mb_s
            );
        }
    }
    Ok(())
}

struct Measured {
    chunks: usize,
    raw: u64,
    compressed: u64,
    next_commit_share: f64,
    rate_mb_s: f64,
}

fn measure(files: &[ScipFile], mode: CutMode, level: i32) -> Result<Measured> {
    let mut seen: HashSet<blake3::Hash> = HashSet::new();
    let (mut raw, mut compressed) = (0u64, 0u64);
    let mut shares = Vec::new();
    let mut rates = Vec::new();
    for (i, f) in files.iter().enumerate() {
        let started = Instant::now();
        let cuts = cut(&f.data, mode)?;
        rates.push(f.data.len() as f64 / 1e6 / started.elapsed().as_secs_f64());
        let mut new = 0u64;
        for c in cuts {
            if seen.insert(blake3::hash(&c.data)) {
                new += c.data.len() as u64;
                compressed += zstd::bulk::compress(&c.data, level)?.len() as u64;
            }
        }
        raw += new;
        if i > 0 {
            shares.push(new as f64 / f.data.len() as f64);
        }
    }
    Ok(Measured {
        chunks: seen.len(),
        raw,
        compressed,
        next_commit_share: median(&mut shares),
        rate_mb_s: median(&mut rates),
    })
}

/// Every chunk of `data`, fed in 4 MiB blocks as the CLI reads a file.
fn cut(data: &[u8], mode: CutMode) -> Result<Vec<Cut>> {
    let mut cutter = Cutter::new(ChunkerSpec::default(), mode)?;
    let mut out = Vec::new();
    for block in data.chunks(4 << 20) {
        cutter.push(block);
        while let Some(c) = cutter.next_cut(false)? {
            out.push(c);
        }
    }
    while let Some(c) = cutter.next_cut(true)? {
        out.push(c);
    }
    Ok(out)
}

/// MB/s of putting the versions back into every normalized chunk of `data` (what a read of a
/// normalized blob does after decoding), median of 5; the copies to restore into are made
/// outside the timing.
fn restore_speed(data: &[u8]) -> Result<f64> {
    let mut cutter = Cutter::new(ChunkerSpec::default(), CutMode::Normalized)?;
    let mut cuts = Vec::new();
    cutter.push(data);
    while let Some(c) = cutter.next_cut(true)? {
        cuts.push(c);
    }
    let table = cutter.finish();
    let mut rates = (0..5)
        .map(|_| {
            let mut copies: Vec<Vec<u8>> = cuts
                .iter()
                .filter(|c| c.normalized)
                .map(|c| c.data.to_vec())
                .collect();
            let bytes: usize = copies.iter().map(Vec::len).sum();
            let started = Instant::now();
            for c in &mut copies {
                table.restore_in_place(c)?;
            }
            Ok(bytes as f64 / 1e6 / started.elapsed().as_secs_f64())
        })
        .collect::<Result<Vec<f64>>>()?;
    Ok(median(&mut rates))
}

fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `data` with every `from` replaced by `to` (same length).
fn replace_all(data: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let mut out = data.to_vec();
    let mut at = 0;
    while let Some(i) = memchr_find(&out[at..], from) {
        out[at + i..at + i + from.len()].copy_from_slice(to);
        at += i + from.len();
    }
    out
}

fn memchr_find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    memchr::memmem::find(hay, needle)
}
