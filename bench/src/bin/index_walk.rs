//! `index_walk`: how long the start-up walk of the index takes, and how long the store then
//! takes to open, at a given number of chunks (the restart goal: serving within 1 s at 1 million
//! chunks).
//!
//! ```text
//! cargo run --release --bin index_walk -- [--chunks N] [--dir DIR]
//! ```
//!
//! Builds (once; an existing `DIR` with an index is reused) a data dir of `N` small chunks
//! (default 1,000,000, 64 bytes each) through the engine's write path (`Store::put_chunks`,
//! batches of 4,096, every chunk also written to the cold tier so that `chunks`, `hot` and
//! `cold` each hold `N` records), plus 100 refs of 64 KiB blobs. Then, three times, times the
//! walk (`index_check::walk`, what `scipcached check-index` runs in its child process) and
//! `Store::open` + `Store::shutdown` after it (existence filter rebuilt from `chunks`), and
//! prints the best of each. The page cache is warm (the usual restart); the daemon adds a
//! process spawn (~ a few ms) for the walk.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use scipcache_tiers::codec::{Compression, Frame};
use scipcache_tiers::ids::ChunkId;
use scipcache_tiers::index_check;
use scipcache_tiers::names::{Namespace, Tenant};
use scipcache_tiers::refs::RefOptions;
use scipcache_tiers::{Store, StoreConfig};

const USAGE: &str = "usage: index_walk [--chunks N] [--dir DIR]";
const BATCH: usize = 4096;
const CHUNK_LEN: usize = 64;

fn config(dir: &std::path::Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.lmdb_map_size = 16 << 30;
    c.cold_compression = Compression::Lz4;
    c.cold_flush_after = Duration::from_secs(3600);
    c
}

/// Deterministic, distinct chunk bytes for chunk `i`.
fn chunk(i: u64) -> [u8; CHUNK_LEN] {
    let mut b = [0u8; CHUNK_LEN];
    let mut x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    for w in b.chunks_exact_mut(8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        w.copy_from_slice(&x.to_le_bytes());
    }
    b[..8].copy_from_slice(&i.to_le_bytes());
    b
}

async fn build(dir: &std::path::Path, chunks: u64) -> Result<()> {
    let store = Store::open(config(dir)).await?;
    let tenant: Tenant = "acme".parse()?;
    let started = Instant::now();
    let mut i = 0;
    while i < chunks {
        let n = BATCH.min(usize::try_from(chunks - i)?);
        let batch = (i..i + n as u64)
            .map(|c| {
                let raw = chunk(c);
                Ok((ChunkId::of(&raw), Frame::encode(&raw, Compression::Raw)?))
            })
            .collect::<Result<Vec<_>>>()?;
        store.put_chunks(&tenant, batch).await?;
        i += n as u64;
    }
    let ns: Namespace = "acme/web/app".parse()?;
    for r in 0..100u64 {
        let blob: Vec<u8> = (0..1024u64)
            .flat_map(|c| chunk(chunks + r * 1024 + c))
            .collect();
        store
            .write_blob(
                &ns,
                &format!("commit/{r}").parse()?,
                &blob[..],
                RefOptions::default(),
            )
            .await?;
    }
    eprintln!(
        "index_walk: stored {chunks} chunks in {:.1?}; uploading cold copies",
        started.elapsed()
    );
    store.flush_cold().await?;
    store.shutdown().await?;
    eprintln!("index_walk: built in {:.1?}", started.elapsed());
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let mut chunks = 1_000_000u64;
    let mut dir: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--chunks" => chunks = args.next().context(USAGE)?.parse().context(USAGE)?,
            "--dir" => dir = Some(args.next().context(USAGE)?.into()),
            _ => bail!("{USAGE}"),
        }
    }
    let temp;
    let dir = match dir {
        Some(d) => d,
        None => {
            temp = tempfile::tempdir()?;
            temp.path().to_path_buf()
        }
    };
    if !index_check::data_file(&dir).exists() {
        build(&dir, chunks).await?;
    }
    let (mut walk, mut open) = (Duration::MAX, Duration::MAX);
    let mut report = None;
    for _ in 0..3 {
        let started = Instant::now();
        let r = index_check::walk(&dir)?;
        walk = walk.min(started.elapsed());
        let started = Instant::now();
        let store = Store::open(config(&dir)).await?;
        open = open.min(started.elapsed());
        store.shutdown().await?;
        report = Some(r);
    }
    let report = report.context("no run")?;
    let size = std::fs::metadata(index_check::data_file(&dir))?.len();
    println!(
        "index of {} records ({}), data.mdb {:.0} MiB: walk {:.0} ms, then open {:.0} ms \
         (best of 3)",
        report.records(),
        report
            .tables
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(t, n)| format!("{t} {n}"))
            .collect::<Vec<_>>()
            .join(", "),
        size as f64 / f64::from(1 << 20),
        walk.as_secs_f64() * 1e3,
        open.as_secs_f64() * 1e3,
    );
    Ok(())
}
