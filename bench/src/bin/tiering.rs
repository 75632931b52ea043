//! `tiering`: the tiers under budgets, on the shared SCIP series, in one process (the engine
//! without gRPC).
//!
//! ```text
//! cargo run --release -p scipcache-bench --bin tiering -- series [--hot BYTES] [--warm BYTES] \
//!     [--cold-block BYTES]
//! cargo run --release -p scipcache-bench --bin tiering -- backlog [--secs S] [--pushers N]
//! ```
//!
//! - `series`: pushes A (12 commits) and B (3) with the default budgets, flushes the cold
//!   tier, then reopens the data dir with small budgets (default hot 16 MiB, warm 64 MiB) and
//!   times the evictor bringing both under budget (eviction throughput); prints bytes per tier,
//!   checks that every ref reads back to its blob id, and times a pull of the last B commit
//!   whose chunks are only in the cold tier (a `file://` folder in the page cache) against the
//!   same pull from hot, three rounds, medians. `--cold-block` sets the cold tier's block
//!   target (`StoreConfig::cold_block_target`; `0` = one frame per chunk).
//! - `backlog`: `N` pushers (default 8) push B commits for `S` seconds (default 60), each with
//!   its commit SHA replaced by a fresh random one (what an unpinned scip-python gives: nearly
//!   every chunk new), with the default budgets and codecs; prints the cold backlog every 5 s,
//!   then the time until the write-behind has drained it and until the idle recompression has
//!   finished, and the stored bytes per tier at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use scipcache_tiers::names::{Namespace, RefKey};
use scipcache_tiers::refs::RefOptions;
use scipcache_tiers::store::{Stats, TierName};
use scipcache_tiers::{Store, StoreConfig};

const USAGE: &str = "usage: tiering series [--hot BYTES] [--warm BYTES] [--cold-block BYTES] | backlog [--secs S] \
     [--pushers N]";

/// The full commit SHAs of series B, oldest first (the data README).
const B_SHAS: [&str; 3] = [
    "eb5ef2ac708a6e70ec253d78955d04e20c3c9784",
    "e8f1c8fa814a9f5c37bb4c7497f632ab24380110",
    "9794e80a33c0e47ba4a7a98bffd6df0133b7aaca",
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let flag = |name: &str, default: u64| -> Result<u64> {
        match args.iter().position(|a| a == name) {
            Some(i) => args
                .get(i + 1)
                .context(USAGE)?
                .parse()
                .with_context(|| format!("{name} takes a number")),
            None => Ok(default),
        }
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match args.first().map(String::as_str) {
        Some("series") => rt.block_on(series(
            flag("--hot", 16 << 20)?,
            flag("--warm", 64 << 20)?,
            flag(
                "--cold-block",
                StoreConfig::new(".").cold_block_target as u64,
            )?,
        )),
        Some("backlog") => rt.block_on(backlog(flag("--secs", 60)?, flag("--pushers", 8)?)),
        _ => bail!(USAGE),
    }
}

fn mb(b: u64) -> f64 {
    b as f64 / 1e6
}

fn tier(stats: &Stats, name: TierName) -> (u64, u64) {
    let t = stats.tier(name);
    (t.chunks, t.stored_bytes)
}

fn print_tiers(label: &str, stats: &Stats) {
    let [h, w, c] = [TierName::Hot, TierName::Warm, TierName::Cold].map(|t| tier(stats, t));
    println!(
        "{label}: hot {} chunks {:.1} MB, warm {} chunks {:.1} MB, cold {} chunks {:.1} MB; \
         logical {:.1} MB in {} refs; cold queue {}, to recompress {}",
        h.0,
        mb(h.1),
        w.0,
        mb(w.1),
        c.0,
        mb(c.1),
        mb(stats.logical_bytes),
        stats.refs,
        stats.cold_queue,
        stats.cold_recompress
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

async fn series(hot: u64, warm: u64, cold_block: u64) -> Result<()> {
    let Some(a) = scipcache_bench::require_data("series A", scipcache_bench::scip_series("A"))
    else {
        return Ok(());
    };
    let Some(b) = scipcache_bench::require_data("series B", scipcache_bench::scip_series("B"))
    else {
        return Ok(());
    };
    let dir = tempfile::tempdir()?;
    let mut c = StoreConfig::new(dir.path());
    c.lmdb_map_size = 16 << 30;
    c.cold_block_target = usize::try_from(cold_block)?;
    let store = Store::open(c.clone()).await?;
    let ns: Namespace = "bench/tiers/series".parse()?;
    let mut refs = Vec::new();
    let started = Instant::now();
    for (series, files) in [("a", &a), ("b", &b)] {
        for f in files.iter() {
            let key: RefKey = format!("commit/{series}-{}", f.name).parse()?;
            store
                .write_blob(&ns, &key, &f.data[..], RefOptions::default())
                .await?;
            refs.push(key);
        }
    }
    store.flush_cold().await?;
    println!(
        "pushed {} refs in {:.1} s (default budgets), cold flushed",
        refs.len(),
        started.elapsed().as_secs_f64()
    );
    print_tiers("before", &store.stats(None).await?);
    store.shutdown().await?;

    c.hot_bytes = hot;
    c.warm_bytes = warm;
    let opened = Instant::now();
    let store = Store::open(c.clone()).await?;
    let before = store.stats(None).await?;
    let hot_before = tier(&before, TierName::Hot).1;
    let settled = loop {
        let s = store.stats(None).await?;
        if tier(&s, TierName::Hot).1 < hot && tier(&s, TierName::Warm).1 < warm {
            break s;
        }
        if opened.elapsed() > Duration::from_secs(600) {
            print_tiers("stuck", &s);
            bail!("the budgets were not reached in 10 minutes");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let secs = opened.elapsed().as_secs_f64();
    let moved = hot_before - tier(&settled, TierName::Hot).1;
    println!(
        "budgets hot {:.1} MB, warm {:.1} MB: under both {secs:.2} s after open; hot shed \
         {:.1} MB ({:.0} MB/s, {:.0} chunks/s demoted), {} passes",
        mb(hot),
        mb(warm),
        mb(moved),
        mb(moved) / secs,
        settled.movement.demoted as f64 / secs,
        settled.movement.passes
    );
    print_tiers("after", &settled);
    println!(
        "on disk: meta {:.1} MB (LMDB keeps its file), warm packs {:.1} MB, cold {:.1} MB",
        mb(scipcache_bench::dir_bytes(&dir.path().join("meta"))),
        mb(scipcache_bench::dir_bytes(&dir.path().join("warm"))),
        mb(scipcache_bench::dir_bytes(&dir.path().join("cold")))
    );

    // Every ref reads back to its blob id, from whichever tier holds it.
    for key in &refs {
        let record = store.get_ref(&ns, key).await?.context("ref vanished")?;
        let manifest = store.manifest(ns.tenant(), record.manifest).await?;
        let mut hasher = HashWriter(blake3::Hasher::new());
        store
            .read_blob_to(ns.tenant(), manifest, &mut hasher)
            .await?;
        if hasher.0.finalize().as_bytes() != record.blob.as_bytes() {
            bail!("ref {key} read back different bytes");
        }
    }
    println!("all {} refs read back byte-identical", refs.len());
    store.shutdown().await?;

    // The last B commit from cold only against from hot, with the default budgets.
    c.hot_bytes = 1 << 30;
    c.warm_bytes = 10 << 30;
    let store = Store::open(c).await?;
    let key = refs.last().context("no refs")?.clone();
    let record = store.get_ref(&ns, &key).await?.context("ref vanished")?;
    let manifest = store.manifest(ns.tenant(), record.manifest).await?;
    let ids: Vec<_> = manifest.entries().iter().map(|e| e.id).collect();
    let (mut cold, mut hot_pull) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        store.evict_to_cold(ns.tenant(), ids.clone()).await?;
        let t = Instant::now();
        store
            .read_blob_to(ns.tenant(), manifest.clone(), tokio::io::sink())
            .await?;
        cold.push(t.elapsed().as_secs_f64());
        let t = Instant::now();
        store
            .read_blob_to(ns.tenant(), manifest.clone(), tokio::io::sink())
            .await?;
        hot_pull.push(t.elapsed().as_secs_f64());
    }
    let (cold, hot_pull) = (median(cold), median(hot_pull));
    println!(
        "pull of {key} ({:.1} MB): from cold only {:.0} ms ({:.0} MB/s, promoting into hot), \
         from hot {:.0} ms ({:.0} MB/s): cold/hot = {:.2}x (medians of 3)",
        mb(record.size),
        cold * 1e3,
        mb(record.size) / cold,
        hot_pull * 1e3,
        mb(record.size) / hot_pull,
        cold / hot_pull
    );
    store.shutdown().await?;
    Ok(())
}

/// A writer that hashes what it is given.
struct HashWriter(blake3::Hasher);

impl tokio::io::AsyncWrite for HashWriter {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        self.0.update(buf);
        std::task::Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
    fn poll_shutdown(
        self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::task::Poll::Ready(Ok(()))
    }
}

/// Where the commit SHA occurs in a B file.
fn sha_positions(data: &[u8], sha: &str) -> Vec<usize> {
    let needle = sha.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i + needle.len() <= data.len() {
        if data[i] == needle[0] && &data[i..i + needle.len()] == needle {
            out.push(i);
            i += needle.len();
        } else {
            i += 1;
        }
    }
    out
}

async fn backlog(secs: u64, pushers: u64) -> Result<()> {
    let Some(b) = scipcache_bench::require_data("series B", scipcache_bench::scip_series("B"))
    else {
        return Ok(());
    };
    let files: Vec<(Vec<u8>, Vec<usize>)> = b
        .into_iter()
        .zip(B_SHAS)
        .map(|(f, sha)| {
            let at = sha_positions(&f.data, sha);
            (f.data, at)
        })
        .collect();
    let files = Arc::new(files);
    let dir = tempfile::tempdir()?;
    let mut c = StoreConfig::new(dir.path());
    c.lmdb_map_size = 64 << 30;
    let store = Store::open(c).await?;
    let ns: Namespace = "bench/tiers/backlog".parse()?;
    let stop = Arc::new(AtomicBool::new(false));
    let pushed = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for p in 0..pushers {
        let (store, ns, files, stop, pushed) = (
            store.clone(),
            ns.clone(),
            files.clone(),
            stop.clone(),
            pushed.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let (data, at) = &files[((p + n) % 3) as usize];
                let mut data = data.clone();
                let sha = blake3::hash(format!("{p}/{n}").as_bytes()).to_hex();
                for i in at {
                    data[*i..*i + 40].copy_from_slice(&sha.as_bytes()[..40]);
                }
                let key: RefKey = format!("commit/{p}-{n}").parse()?;
                store
                    .write_blob(&ns, &key, &data[..], RefOptions::default())
                    .await?;
                pushed.fetch_add(data.len() as u64, Ordering::Relaxed);
                n += 1;
            }
            anyhow::Ok(())
        }));
    }
    let started = Instant::now();
    let mut peak = 0;
    let mut last_print = 0;
    while started.elapsed() < Duration::from_secs(secs) {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let s = store.stats(None).await?;
        peak = peak.max(s.cold_queue);
        let t = started.elapsed().as_secs();
        if t >= last_print + 5 {
            last_print = t;
            println!(
                "t={t:>3}s pushed {:>6.0} MB, cold queue {:>6} entries, cold {:>6} chunks, \
                 to recompress {} packs",
                mb(pushed.load(Ordering::Relaxed)),
                s.cold_queue,
                tier(&s, TierName::Cold).0,
                s.cold_recompress
            );
        }
    }
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await??;
    }
    let pushed_secs = started.elapsed().as_secs_f64();
    let s = store.stats(None).await?;
    print_tiers("pushers stopped", &s);
    println!(
        "{pushers} pushers: {:.0} MB in {pushed_secs:.0} s ({:.0} MB/s); peak cold queue {peak} \
         entries",
        mb(pushed.load(Ordering::Relaxed)),
        mb(pushed.load(Ordering::Relaxed)) / pushed_secs
    );
    let stopped = Instant::now();
    let mut drained = None;
    loop {
        let s = store.stats(None).await?;
        if drained.is_none() && s.cold_queue == 0 {
            drained = Some(stopped.elapsed().as_secs_f64());
        }
        if drained.is_some() && s.cold_recompress == 0 {
            break;
        }
        if stopped.elapsed() > Duration::from_secs(1800) {
            print_tiers("not done", &s);
            bail!("not drained and recompressed in 30 minutes");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let done = stopped.elapsed().as_secs_f64();
    let s = store.stats(None).await?;
    println!(
        "after the pushers stopped: queue drained in {:.1} s, recompression done {done:.1} s \
         after they stopped",
        drained.unwrap_or(0.0)
    );
    print_tiers("drained", &s);
    println!(
        "cold objects on disk {:.1} MB (replaced packs are deleted a minute after)",
        mb(scipcache_bench::dir_bytes(&dir.path().join("cold")))
    );
    store.shutdown().await?;
    Ok(())
}
