//! Budgets, eviction, admission, pins, warm-up and cold durability, on real LMDB, real pack
//! files and a real local-folder cold tier.

use std::time::{Duration, Instant};

use super::evict::enforce;
use super::tests::{config, data, key, ns, read_all, tmp};
use super::types::Durability;
use super::{Stats, Store, StoreConfig, TierName};
use crate::error::{Error, Result};
use crate::names::{Namespace, RefKey};
use crate::refs::RefOptions;

fn tier(stats: &Stats, name: TierName) -> (u64, u64) {
    let t = stats.tier(name);
    (t.chunks, t.stored_bytes)
}

async fn chunk_ids(store: &Store, n: &Namespace, k: &RefKey) -> Result<Vec<crate::ids::ChunkId>> {
    let r = store
        .get_ref(n, k)
        .await?
        .ok_or_else(|| Error::NotFound("ref".into()))?;
    let m = store.manifest(n.tenant(), r.manifest).await?;
    Ok(m.entries().iter().map(|e| e.id).collect())
}

/// Stores each `(key, bytes)` blob, writes it to the cold tier and drops its hot and warm
/// copies.
async fn in_cold_only(store: &Store, n: &Namespace, blobs: &[(&str, &[u8])]) -> Result<()> {
    for (k, b) in blobs {
        store
            .write_blob(n, &key(k), *b, RefOptions::default())
            .await?;
    }
    store.flush_cold().await?;
    for (k, _) in blobs {
        let ids = chunk_ids(store, n, &key(k)).await?;
        store.evict_to_cold(n.tenant(), ids).await?;
    }
    Ok(())
}

/// Runs passes until both budgets hold (the background evictor runs too).
async fn settle(store: &Store, c: &StoreConfig) -> Result<Stats> {
    let e = store.engine()?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        enforce(&e).await?;
        let stats = store.stats(None).await?;
        let (hot, warm) = (
            tier(&stats, TierName::Hot).1,
            tier(&stats, TierName::Warm).1,
        );
        if hot < c.hot_bytes && warm < c.warm_bytes.max(1) {
            return Ok(stats);
        }
        assert!(Instant::now() < deadline, "budgets not reached: {stats:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_evictor_brings_hot_and_warm_under_budget_and_every_blob_still_reads_back() -> Result<()>
{
    let dir = tmp()?;
    let mut c = config(dir.path());
    c.hot_bytes = 256 << 10;
    c.warm_bytes = 1 << 20;
    c.warm_pack_limit = 64 << 10;
    let store = Store::open(c.clone()).await?;
    let n = ns("acme/web/app");
    let blobs: Vec<Vec<u8>> = (0..6).map(|i| data(400_000, 100 + i, false)).collect();
    for (i, b) in blobs.iter().enumerate() {
        store
            .write_blob(
                &n,
                &key(&format!("commit/{i}")),
                &b[..],
                RefOptions::default(),
            )
            .await?;
    }
    store.flush_cold().await?;
    let stats = settle(&store, &c).await?;
    assert!(stats.movement.demoted > 0, "{:?}", stats.movement);
    assert!(
        tier(&stats, TierName::Warm).0 > 0,
        "warm holds chunks: {stats:?}"
    );
    let packs_on_disk = std::fs::read_dir(dir.path().join("warm"))
        .map_err(|e| Error::io("listing warm", e))?
        .count();
    // 2.4 MB went through warm in 64 KiB packs; emptied packs are removed, so what stays on
    // disk is about the warm budget.
    assert!(packs_on_disk <= 24, "{packs_on_disk} warm pack files stay");
    for (i, b) in blobs.iter().enumerate() {
        assert_eq!(
            &read_all(&store, &n, &key(&format!("commit/{i}"))).await?,
            b
        );
    }
    settle(&store, &c).await?;
    store.shutdown().await?;
    // The removed packs do not trouble a restart, and every blob still reads.
    let store = Store::open(c).await?;
    for (i, b) in blobs.iter().enumerate() {
        assert_eq!(
            &read_all(&store, &n, &key(&format!("commit/{i}"))).await?,
            b
        );
    }
    store.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_warm_tier_hot_drops_only_chunks_the_cold_tier_holds() -> Result<()> {
    let dir = tmp()?;
    let mut c = config(dir.path());
    c.hot_bytes = 128 << 10;
    c.warm_bytes = 0;
    // The write-behind waits, so the chunks have no cold copy at first.
    c.cold_flush_after = Duration::from_secs(3600);
    c.cold_pack_target = 64 << 20;
    let store = Store::open(c.clone()).await?;
    let n = ns("acme/web/app");
    let blob = data(1_000_000, 7, false);
    store
        .write_blob(&n, &key("k"), &blob[..], RefOptions::default())
        .await?;
    let e = store.engine()?;
    assert!(
        !enforce(&e).await?,
        "hot cannot shrink before the cold copies exist"
    );
    let stats = store.stats(None).await?;
    assert!(tier(&stats, TierName::Hot).1 > c.hot_bytes, "{stats:?}");
    assert_eq!(tier(&stats, TierName::Warm).0, 0);
    store.flush_cold().await?;
    let stats = settle(&store, &c).await?;
    assert_eq!(tier(&stats, TierName::Warm).0, 0, "{stats:?}");
    assert_eq!(read_all(&store, &n, &key("k")).await?, blob);
    store.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pinned_refs_keep_their_chunks_in_hot_while_other_chunks_make_room() -> Result<()> {
    let dir = tmp()?;
    let mut c = config(dir.path());
    c.hot_bytes = 512 << 10;
    c.warm_bytes = 8 << 20;
    c.pin_prefixes = vec!["branch/".into()];
    let store = Store::open(c.clone()).await?;
    let n = ns("acme/web/app");
    let pinned = data(150_000, 1, false);
    store
        .write_blob(&n, &key("branch/main"), &pinned[..], RefOptions::default())
        .await?;
    for i in 0..4 {
        let b = data(400_000, 50 + i, false);
        store
            .write_blob(
                &n,
                &key(&format!("commit/{i}")),
                &b[..],
                RefOptions::default(),
            )
            .await?;
    }
    store.flush_cold().await?;
    settle(&store, &c).await?;
    let report = store.warm(&n, &key("branch/main")).await?;
    assert_eq!(report.promoted_chunks, 0, "{report:?}");
    assert_eq!(report.hot_chunks, report.chunks, "{report:?}");
    assert_eq!(read_all(&store, &n, &key("branch/main")).await?, pinned);
    store.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_large_read_enters_hot_only_when_read_again_and_small_reads_at_once() -> Result<()> {
    let dir = tmp()?;
    let mut c = config(dir.path());
    c.hot_bytes = 4 << 20;
    let store = Store::open(c.clone()).await?;
    let n = ns("acme/web/app");
    let (large, small) = (data(1_000_000, 3, false), data(200_000, 4, false));
    in_cold_only(&store, &n, &[("large", &large), ("small", &small)]).await?;
    assert_eq!(tier(&store.stats(None).await?, TierName::Hot).0, 0);

    // 1 MB is more than an eighth of the 4 MiB budget: the first read leaves hot alone.
    assert_eq!(read_all(&store, &n, &key("large")).await?, large);
    let stats = store.stats(None).await?;
    assert_eq!(tier(&stats, TierName::Hot).0, 0, "{stats:?}");
    assert!(stats.movement.not_admitted > 0, "{:?}", stats.movement);
    // The second read admits it.
    assert_eq!(read_all(&store, &n, &key("large")).await?, large);
    let large_chunks = chunk_ids(&store, &n, &key("large")).await?.len() as u64;
    assert_eq!(
        tier(&store.stats(None).await?, TierName::Hot).0,
        large_chunks
    );
    // A small blob is admitted on its first read.
    assert_eq!(read_all(&store, &n, &key("small")).await?, small);
    let small_chunks = chunk_ids(&store, &n, &key("small")).await?.len() as u64;
    assert_eq!(
        tier(&store.stats(None).await?, TierName::Hot).0,
        large_chunks + small_chunks
    );
    store.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_engines_own_scans_of_a_blob_move_no_chunk_between_tiers() -> Result<()> {
    use futures::StreamExt;
    let dir = tmp()?;
    let mut c = config(dir.path());
    c.hot_bytes = 4 << 20;
    let store = Store::open(c.clone()).await?;
    let n = ns("acme/web/app");
    // Small against the budget: a caller's first read of it would admit it at once.
    let small = data(200_000, 5, false);
    in_cold_only(&store, &n, &[("small", &small)]).await?;
    let r = store
        .get_ref(&n, &key("small"))
        .await?
        .ok_or_else(|| Error::NotFound("ref".into()))?;
    let m = store.manifest(n.tenant(), r.manifest).await?;

    let mut parts = super::read::scan_blob(store.engine()?, n.tenant().id(), m);
    let mut scanned = Vec::new();
    while let Some(part) = parts.next().await {
        match part? {
            super::BlobPart::Data(d) => scanned.extend_from_slice(&d),
            other => panic!("a scan returns restored bytes only, got {other:?}"),
        }
    }
    store.settle_reads().await?;
    assert_eq!(scanned, small);
    let stats = store.stats(None).await?;
    assert_eq!(tier(&stats, TierName::Hot).0, 0, "{stats:?}");
    assert_eq!(tier(&stats, TierName::Warm).0, 0, "{stats:?}");
    assert_eq!(stats.movement.not_admitted, 0, "{:?}", stats.movement);

    // The scan left no second-miss memory behind either: a caller's read decides as if the
    // scan had not happened (admitted, because the blob is small).
    assert_eq!(read_all(&store, &n, &key("small")).await?, small);
    let chunks = chunk_ids(&store, &n, &key("small")).await?.len() as u64;
    assert_eq!(tier(&store.stats(None).await?, TierName::Hot).0, chunks);
    store.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_promotes_a_refs_chunks_and_stops_at_the_hot_budget() -> Result<()> {
    let dir = tmp()?;
    let mut c = config(dir.path());
    c.hot_bytes = 1 << 20;
    let store = Store::open(c.clone()).await?;
    let n = ns("acme/web/app");
    let (fits, too_big) = (data(300_000, 5, false), data(3_000_000, 6, false));
    in_cold_only(&store, &n, &[("fits", &fits), ("too-big", &too_big)]).await?;
    let report = store.warm(&n, &key("fits")).await?;
    let chunks = chunk_ids(&store, &n, &key("fits")).await?.len() as u64;
    assert_eq!(report.chunks, chunks);
    assert_eq!(report.promoted_chunks, chunks, "{report:?}");
    assert_eq!(report.promoted_bytes, fits.len() as u64);
    assert_eq!(store.warm(&n, &key("fits")).await?.promoted_chunks, 0);

    let report = store.warm(&n, &key("too-big")).await?;
    assert!(report.promoted_chunks > 0, "{report:?}");
    assert!(report.hot_chunks < report.chunks, "{report:?}");
    // The evictor makes room by demoting the older chunks.
    settle(&store, &c).await?;
    let again = store.warm(&n, &key("too-big")).await?;
    assert!(
        again.hot_chunks + 2 >= report.hot_chunks,
        "the warmed chunks stay hot: {report:?} then {again:?}"
    );
    assert!(
        matches!(
            store.warm(&n, &key("absent")).await,
            Err(Error::NotFound(_))
        ),
        "a missing ref is not found"
    );
    store.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_cold_durability_a_commit_returns_once_the_cold_tier_holds_it_and_fails_whole_when_it_cannot()
-> Result<()> {
    let dir = tmp()?;
    let mut c = config(dir.path());
    c.durability = Durability::Cold;
    // The write-behind would take an hour: what is cold at commit came from the commit.
    c.cold_flush_after = Duration::from_secs(3600);
    c.cold_pack_target = 64 << 20;
    let store = Store::open(c.clone()).await?;
    let n = ns("acme/web/app");
    let blob = data(700_000, 9, true);
    store
        .write_blob(&n, &key("commit/1"), &blob[..], RefOptions::default())
        .await?;
    let stats = store.stats(None).await?;
    assert_eq!(
        tier(&stats, TierName::Cold).0,
        tier(&stats, TierName::Hot).0,
        "{stats:?}"
    );
    let cold_dir = dir.path().join("cold");
    for sub in ["packs", "manifests", "refs"] {
        assert!(cold_dir.join(sub).is_dir(), "{sub} written at commit");
    }

    // A cold tier that fails: its folder is a plain file now.
    std::fs::rename(&cold_dir, dir.path().join("cold-away")).map_err(|e| Error::io("mv", e))?;
    std::fs::write(&cold_dir, b"not a folder").map_err(|e| Error::io("write", e))?;
    let other = data(300_000, 10, false);
    let r = store
        .write_blob(&n, &key("commit/2"), &other[..], RefOptions::default())
        .await;
    match r {
        Err(Error::Unavailable(m)) => assert!(m.contains("was not set"), "{m}"),
        other => panic!("expected UNAVAILABLE, got {other:?}"),
    }
    assert!(store.get_ref(&n, &key("commit/2")).await?.is_none());
    assert_eq!(read_all(&store, &n, &key("commit/1")).await?, blob);
    store.shutdown().await
}

/// Cold pack objects on disk.
fn cold_pack_files(dir: &std::path::Path) -> usize {
    let root = dir.join("cold").join("packs");
    std::fs::read_dir(&root)
        .into_iter()
        .flatten()
        .flatten()
        .flat_map(|tenant| {
            std::fs::read_dir(tenant.path())
                .into_iter()
                .flatten()
                .flatten()
        })
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn packs_written_fast_under_a_backlog_are_recompressed_when_idle_and_still_read_back()
-> Result<()> {
    let dir = tmp()?;
    let mut c = config(dir.path());
    // Any backlog counts as one; the fast codec is lz4 (so the cold level surely stores
    // less); idle at once.
    c.cold_fast_backlog = 1;
    c.cold_fast_compression = crate::codec::Compression::Lz4;
    c.cold_idle_after = Duration::ZERO;
    let clock = crate::clock::Clock::manual(1_700_000_000_000);
    c.clock = clock.clone();
    let store = Store::open(c.clone()).await?;
    let n = ns("acme/web/app");
    let blob = data(2_000_000, 21, true);
    store
        .write_blob(&n, &key("k"), &blob[..], RefOptions::default())
        .await?;
    store.flush_cold().await?;
    let fast = store.stats(None).await?;
    assert!(fast.cold_recompress > 0, "fast packs are marked: {fast:?}");
    let fast_bytes = tier(&fast, TierName::Cold).1;

    let deadline = Instant::now() + Duration::from_secs(60);
    let done = loop {
        let stats = store.stats(None).await?;
        if stats.cold_recompress == 0 {
            break stats;
        }
        assert!(Instant::now() < deadline, "not recompressed: {stats:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let slow_bytes = tier(&done, TierName::Cold).1;
    assert!(
        slow_bytes < fast_bytes,
        "zstd 9 stores less than lz4: {slow_bytes} vs {fast_bytes}"
    );
    assert_eq!(tier(&done, TierName::Cold).0, tier(&fast, TierName::Cold).0);
    // Old and new objects both exist until the grace period is over.
    let before_delete = cold_pack_files(dir.path());
    clock.advance(crate::cold::recompress::DELETE_GRACE + Duration::from_secs(1));
    let deleted = store.engine()?.cold.delete_due().await?;
    assert!(deleted > 0);
    assert!(cold_pack_files(dir.path()) < before_delete);

    // From cold alone, after a restart, the blob reads back.
    let ids = chunk_ids(&store, &n, &key("k")).await?;
    store.evict_to_cold(n.tenant(), ids).await?;
    store.shutdown().await?;
    let store = Store::open(c).await?;
    assert_eq!(store.stats(None).await?.cold_recompress, 0);
    assert_eq!(read_all(&store, &n, &key("k")).await?, blob);
    store.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_put_beyond_the_backlog_limit_waits_until_the_write_behind_catches_up() -> Result<()> {
    let dir = tmp()?;
    let mut c = config(dir.path());
    c.cold_backlog_limit = 4;
    // Nothing is written behind until the test flushes.
    c.cold_flush_after = Duration::from_secs(3600);
    c.cold_pack_target = 64 << 20;
    let store = Store::open(c).await?;
    let n = ns("acme/web/app");
    let first = data(400_000, 31, false);
    store
        .write_blob(&n, &key("first"), &first[..], RefOptions::default())
        .await?;
    assert!(store.stats(None).await?.cold_queue > 4);

    let second = data(400_000, 32, false);
    let writer = store.clone();
    let n2 = n.clone();
    let blocked = tokio::spawn(async move {
        writer
            .write_blob(&n2, &key("second"), &second[..], RefOptions::default())
            .await
    });
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!blocked.is_finished(), "the put waits for the write-behind");
    store.flush_cold().await?;
    tokio::time::timeout(Duration::from_secs(5), blocked)
        .await
        .map_err(|_| Error::Unavailable("the put still waits".into()))?
        .map_err(|_| Error::ShuttingDown)??;
    assert!(store.get_ref(&n, &key("second")).await?.is_some());
    store.shutdown().await
}
