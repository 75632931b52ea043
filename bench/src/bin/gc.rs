//! `gc`: garbage collection figures, in one process (the engine without gRPC).
//!
//! ```text
//! cargo run --release -p scipcache-bench --bin gc -- series
//! cargo run --release -p scipcache-bench --bin gc -- million [--chunks N]
//! ```
//!
//! - `series`: pushes the 12 commits of A and the 3 of B (each series in its own namespace),
//!   flushes the cold tier, demotes every chunk into warm too (so the warm tier holds the
//!   history), and prints the bytes per tier and on disk. Then a `[[retention]]` rule keeps the
//!   newest 3 `commit/` refs per namespace and a GC with grace 0 runs; it prints the report,
//!   the bytes again, the same for a fresh data dir holding only the 6 kept refs, and checks
//!   that the kept refs read back byte-identical.
//! - `million`: stores N (default 1,000,000) chunks of 256 random bytes, half of them named by
//!   10 live blobs, flushes the cold tier, deletes nothing, then times a GC that sweeps the
//!   other half (grace 0), and reports the process's peak RSS during the run against its RSS
//!   before it.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use scipcache_tiers::codec::{Compression, Frame};
use scipcache_tiers::ids::{BlobId, ChunkId};
use scipcache_tiers::manifest::{Manifest, ManifestEntry};
use scipcache_tiers::names::{Namespace, RefKey};
use scipcache_tiers::refs::RefOptions;
use scipcache_tiers::store::{
    GcOptions, GcReport, Progress, RetentionPolicy, RetentionRule, Stats, TierName,
};
use scipcache_tiers::{Store, StoreConfig};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

const USAGE: &str = "usage: gc series | million [--chunks N]";

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let chunks = match args.iter().position(|a| a == "--chunks") {
        Some(i) => args.get(i + 1).context(USAGE)?.parse()?,
        None => 1_000_000,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.first().map(String::as_str) {
        Some("series") => rt.block_on(series()),
        Some("million") => rt.block_on(million(chunks)),
        _ => bail!(USAGE),
    }
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

fn print_bytes(label: &str, dir: &Path, s: &Stats) {
    let t = |n| s.tier(n).stored_bytes;
    println!(
        "{label}: stored hot {:.1} MB, warm {:.1} MB, cold {:.1} MB (total {:.1} MB); on disk \
         meta {:.1} MB, warm packs {:.1} MB, cold folder {:.1} MB",
        mb(t(TierName::Hot)),
        mb(t(TierName::Warm)),
        mb(t(TierName::Cold)),
        mb(t(TierName::Hot) + t(TierName::Warm) + t(TierName::Cold)),
        mb(scipcache_bench::dir_bytes(&dir.join("meta"))),
        mb(scipcache_bench::dir_bytes(&dir.join("warm"))),
        mb(scipcache_bench::dir_bytes(&dir.join("cold")))
    );
}

async fn run_gc(store: &Store, grace: Duration) -> Result<GcReport> {
    let (tx, _rx) = watch::channel(Progress::default());
    let opts = GcOptions {
        tenant: None,
        grace,
        dry_run: false,
        compact_below: 0.5,
    };
    Ok(store.gc(opts, CancellationToken::new(), tx).await?)
}

/// Pushes `files` of each series into its namespace; returns (namespace, key, blob id).
async fn push_series(
    store: &Store,
    series: &[(&str, Vec<scipcache_bench::ScipFile>)],
    only_last: Option<usize>,
) -> Result<Vec<(Namespace, RefKey, BlobId)>> {
    let mut refs = Vec::new();
    for (name, files) in series {
        let ns: Namespace = format!("bench/gc/{name}").parse()?;
        let skip = only_last.map_or(0, |n| files.len().saturating_sub(n));
        for f in files.iter().skip(skip) {
            let key: RefKey = format!("commit/{}", f.name).parse()?;
            let r = store
                .write_blob(&ns, &key, &f.data[..], RefOptions::default())
                .await?;
            refs.push((ns.clone(), key, r.blob));
            // Distinct creation times, so "newest" is the push order.
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
    store.flush_cold().await?;
    Ok(refs)
}

async fn demote_all(store: &Store, refs: &[(Namespace, RefKey, BlobId)]) -> Result<()> {
    for (ns, key, _) in refs {
        let r = store.get_ref(ns, key).await?.context("ref")?;
        let m = store.manifest(ns.tenant(), r.manifest).await?;
        let ids: Vec<ChunkId> = m.entries().iter().map(|e| e.id).collect();
        store.demote(ns.tenant(), ids, false).await?;
    }
    Ok(())
}

async fn series() -> Result<()> {
    let Some(a) = scipcache_bench::require_data("series A", scipcache_bench::scip_series("A"))
    else {
        return Ok(());
    };
    let Some(b) = scipcache_bench::require_data("series B", scipcache_bench::scip_series("B"))
    else {
        return Ok(());
    };
    let both = [("a", a), ("b", b)];
    let dir = tempfile::tempdir()?;
    let mut c = StoreConfig::new(dir.path());
    c.lmdb_map_size = 16 << 30;
    c.retention = vec![RetentionRule {
        prefix: "commit/".into(),
        policy: RetentionPolicy::KeepLast(3),
    }];
    let store = Store::open(c).await?;
    let refs = push_series(&store, &both, None).await?;
    demote_all(&store, &refs).await?;
    println!(
        "pushed {} refs, cold flushed, every chunk also in warm",
        refs.len()
    );
    print_bytes("all pushes", dir.path(), &store.stats(None).await?);
    let started = Instant::now();
    let report = run_gc(&store, Duration::ZERO).await?;
    println!(
        "gc keeping the newest 3 per series: {:.2} s; {report:?}",
        started.elapsed().as_secs_f64()
    );
    let after = store.stats(None).await?;
    print_bytes("after gc", dir.path(), &after);
    let mut kept = 0;
    for (ns, key, blob) in &refs {
        let Some(r) = store.get_ref(ns, key).await? else {
            continue;
        };
        let m = store.manifest(ns.tenant(), r.manifest).await?;
        let mut out = Vec::new();
        store.read_blob_to(ns.tenant(), m, &mut out).await?;
        if BlobId::of(&out) != *blob {
            bail!("{ns} {key} read back different bytes after gc");
        }
        kept += 1;
    }
    println!("{kept} kept refs read back byte-identical");
    let cold_after = scipcache_bench::dir_bytes(&dir.path().join("cold"));
    let warm_after = scipcache_bench::dir_bytes(&dir.path().join("warm"));
    store.shutdown().await?;

    let fresh_dir = tempfile::tempdir()?;
    let mut c = StoreConfig::new(fresh_dir.path());
    c.lmdb_map_size = 16 << 30;
    let fresh = Store::open(c).await?;
    let fresh_refs = push_series(&fresh, &both, Some(3)).await?;
    demote_all(&fresh, &fresh_refs).await?;
    print_bytes(
        "fresh store of the 6 kept refs",
        fresh_dir.path(),
        &fresh.stats(None).await?,
    );
    let (cold_fresh, warm_fresh) = (
        scipcache_bench::dir_bytes(&fresh_dir.path().join("cold")),
        scipcache_bench::dir_bytes(&fresh_dir.path().join("warm")),
    );
    println!(
        "after gc / fresh: cold folder {:.2}×, warm packs {:.2}×",
        cold_after as f64 / cold_fresh.max(1) as f64,
        warm_after as f64 / warm_fresh.max(1) as f64
    );
    fresh.shutdown().await?;
    Ok(())
}

/// Peak resident set of this process so far, bytes (`VmHWM`).
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<u64>().ok())
        })
        .map_or(0, |kb| kb * 1024)
}

async fn million(n: usize) -> Result<()> {
    const LEN: usize = 256;
    const BLOBS: usize = 10;
    let dir = tempfile::tempdir()?;
    let mut c = StoreConfig::new(dir.path());
    c.lmdb_map_size = 16 << 30;
    c.hot_bytes = 4 << 30;
    let store = Store::open(c).await?;
    let ns: Namespace = "bench/gc/million".parse()?;
    let started = Instant::now();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let mut live: Vec<Vec<ManifestEntry>> = vec![Vec::new(); BLOBS];
    let mut blobs: Vec<blake3::Hasher> = (0..BLOBS).map(|_| blake3::Hasher::new()).collect();
    let mut batch = Vec::new();
    for i in 0..n {
        let mut chunk = vec![0u8; LEN];
        for b in chunk.chunks_mut(8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            b.copy_from_slice(&x.to_le_bytes());
        }
        let id = ChunkId::of(&chunk);
        if i % 2 == 0 {
            let blob = (i / 2) % BLOBS;
            live[blob].push(ManifestEntry {
                id,
                len: LEN as u32,
            });
            blobs[blob].update(&chunk);
        }
        batch.push((id, Frame::encode(&chunk, Compression::Lz4)?));
        if batch.len() == 10_000 || i + 1 == n {
            store
                .put_chunks(ns.tenant(), std::mem::take(&mut batch))
                .await?;
        }
    }
    for (i, (entries, hasher)) in live.into_iter().zip(blobs).enumerate() {
        let total = entries.len() as u64 * LEN as u64;
        let m = Manifest::new(
            store.chunker(),
            BlobId::from(hasher.finalize()),
            total,
            entries,
        )?;
        let key: RefKey = format!("blob/{i}").parse()?;
        store.commit(&ns, &key, m, RefOptions::default()).await?;
    }
    println!(
        "stored {n} chunks of {LEN} B ({} named by {BLOBS} live blobs) in {:.1} s",
        n / 2 + n % 2,
        started.elapsed().as_secs_f64()
    );
    let flushing = Instant::now();
    store.flush_cold().await?;
    println!(
        "cold tier flushed in {:.1} s",
        flushing.elapsed().as_secs_f64()
    );
    // Resets the peak to what is resident now (Linux `clear_refs`), so the peak after the run
    // is the run's own.
    std::fs::write("/proc/self/clear_refs", "5").ok();
    let rss_before = peak_rss();
    let started = Instant::now();
    let report = run_gc(&store, Duration::ZERO).await?;
    let secs = started.elapsed().as_secs_f64();
    let rss_after = peak_rss();
    println!("{report:?}");
    println!(
        "gc over {n} chunks: {secs:.2} s ({:.2} s per million chunks); peak RSS {:.0} MB before, \
         {:.0} MB after (+{:.0} MB)",
        secs * 1e6 / n as f64,
        mb(rss_before),
        mb(rss_after),
        mb(rss_after.saturating_sub(rss_before))
    );
    store.shutdown().await?;
    Ok(())
}
