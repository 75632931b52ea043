//! Garbage collection, retention, fsck and quotas on a real store (LMDB, pack files, a local
//! folder as the cold tier), pushed to the way a client pushes: FindMissing, upload, commit.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::tests::{config, data, key, ns, read_all, tmp};
use crate::clock::Clock;
use crate::codec::{Compression, Frame};
use crate::error::{Error, Result};
use crate::ids::{BlobId, ChunkId};
use crate::manifest::{Manifest, ManifestEntry};
use crate::names::{KeyPrefix, Namespace, RefKey};
use crate::refs::RefOptions;
use crate::store::{
    FsckReport, GcOptions, GcReport, Progress, RetentionPolicy, RetentionRule, Store, StoreConfig,
    TierName,
};

/// A blob cut as a client cuts it.
struct Cut {
    manifest: Manifest,
    chunks: HashMap<ChunkId, Vec<u8>>,
}

fn cut(store: &Store, blob: &[u8]) -> Result<Cut> {
    let spec = store.chunker();
    let cdc = spec.splitter()?;
    let mut chunks = HashMap::new();
    let mut entries = Vec::new();
    for r in cdc.cut_all(blob) {
        let c = blob[r].to_vec();
        let id = ChunkId::of(&c);
        entries.push(ManifestEntry {
            id,
            len: c.len() as u32,
        });
        chunks.insert(id, c);
    }
    let manifest = Manifest::new(spec, BlobId::of(blob), blob.len() as u64, entries)?;
    Ok(Cut { manifest, chunks })
}

async fn upload(store: &Store, n: &Namespace, c: &Cut, ids: Vec<ChunkId>) -> Result<()> {
    let frames = ids
        .into_iter()
        .map(|id| Ok((id, Frame::encode(&c.chunks[&id], Compression::Lz4)?)))
        .collect::<Result<Vec<_>>>()?;
    store.put_chunks(n.tenant(), frames).await?;
    Ok(())
}

/// FindMissing, upload, commit; a commit refused for missing chunks uploads those and
/// commits again. Returns how many commits were refused.
async fn push(
    store: &Store,
    n: &Namespace,
    k: &RefKey,
    blob: &[u8],
    opts: RefOptions,
) -> Result<u32> {
    let c = cut(store, blob)?;
    let ids: Vec<ChunkId> = c.manifest.entries().iter().map(|e| e.id).collect();
    let mut missing = store.find_missing(n.tenant(), ids.clone()).await?;
    for refused in 0..20 {
        upload(store, n, &c, missing).await?;
        match store.commit(n, k, c.manifest.clone(), opts.clone()).await {
            Ok(_) => return Ok(refused),
            Err(Error::MissingChunks { .. }) => {
                missing = store.find_missing(n.tenant(), ids.clone()).await?;
            }
            Err(e) => return Err(e),
        }
    }
    Err(Error::Conflict(
        "a push was refused 20 times in a row".into(),
    ))
}

fn opts(grace: Duration) -> GcOptions {
    GcOptions {
        tenant: None,
        grace,
        dry_run: false,
        compact_below: 0.5,
    }
}

async fn gc(store: &Store, o: GcOptions) -> Result<GcReport> {
    let (tx, _rx) = watch::channel(Progress::default());
    store.gc(o, CancellationToken::new(), tx).await
}

async fn fsck(store: &Store, repair: bool) -> Result<FsckReport> {
    let (tx, _rx) = watch::channel(Progress::default());
    store.fsck(repair, CancellationToken::new(), tx).await
}

/// Bytes of the files under `dir` whose names end with `.pack`.
fn pack_bytes(dir: &Path) -> u64 {
    let mut total = 0;
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    for entry in entries.flatten() {
        let p = entry.path();
        if p.is_dir() {
            total += pack_bytes(&p);
        } else if p.extension().is_some_and(|e| e == "pack") {
            total += entry.metadata().map_or(0, |m| m.len());
        }
    }
    total
}

fn manual(c: &mut StoreConfig) -> Clock {
    let clock = Clock::manual(1_800_000_000_000);
    c.clock = clock.clone();
    clock
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_sweeps_a_deleted_refs_chunks_from_every_tier_and_keeps_the_live_blob() -> Result<()> {
    let dir = tmp()?;
    let store = Store::open(config(dir.path())).await?;
    let n = ns("acme/web/app");
    let kept = data(600_000, 1, false);
    let gone = data(600_000, 2, false);
    push(&store, &n, &key("kept"), &kept, RefOptions::default()).await?;
    push(&store, &n, &key("gone"), &gone, RefOptions::default()).await?;
    store.flush_cold().await?;
    // Some of the doomed blob's chunks also in warm.
    let c = cut(&store, &gone)?;
    let ids: Vec<ChunkId> = c.manifest.entries().iter().map(|e| e.id).collect();
    store.demote(n.tenant(), ids.clone(), false).await?;
    let before = store.stats(None).await?;
    assert!(store.delete_ref(&n, &key("gone")).await?);

    let dry = gc(
        &store,
        GcOptions {
            dry_run: true,
            ..opts(Duration::ZERO)
        },
    )
    .await?;
    assert!(dry.swept_chunks > 0 && dry.swept_bytes > 0, "{dry:?}");
    assert_eq!(
        store.stats(None).await?.tier(TierName::Hot),
        before.tier(TierName::Hot)
    );

    let report = gc(&store, opts(Duration::ZERO)).await?;
    assert_eq!(report.swept_chunks, dry.swept_chunks, "{report:?}");
    assert_eq!(report.swept_bytes, dry.swept_bytes);
    assert_eq!(report.live_refs, 1);
    assert_eq!(report.swept_manifests, 1);
    assert!(store.find_missing(n.tenant(), ids.clone()).await?.len() == ids.len());
    let after = store.stats(None).await?;
    for tier in [TierName::Hot, TierName::Warm, TierName::Cold] {
        assert!(
            after.tier(tier).chunks < before.tier(tier).chunks,
            "{tier:?}: {:?} → {:?}",
            before.tier(tier),
            after.tier(tier)
        );
    }
    assert_eq!(
        after.tier(TierName::Warm).chunks,
        0,
        "only the swept blob was warm"
    );
    assert_eq!(read_all(&store, &n, &key("kept")).await?, kept);
    // What the cold tier held of the swept blob is gone from the folder too.
    let live_cold = after.tier(TierName::Cold).stored_bytes;
    assert!(pack_bytes(&dir.path().join("cold")) <= live_cold + live_cold / 4 + 4096);
    let again = gc(&store, opts(Duration::ZERO)).await?;
    assert_eq!((again.swept_chunks, again.swept_bytes), (0, 0));
    assert!(!fsck(&store, false).await?.has_unrepaired());
    store.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreferenced_chunks_younger_than_the_grace_period_are_kept_until_it_passes() -> Result<()>
{
    let dir = tmp()?;
    let mut c = config(dir.path());
    let clock = manual(&mut c);
    let store = Store::open(c).await?;
    let n = ns("acme/web/app");
    let blob = data(300_000, 3, false);
    let cut = cut(&store, &blob)?;
    let ids: Vec<ChunkId> = cut.chunks.keys().copied().collect();
    // Uploaded, not committed: a push in flight.
    upload(&store, &n, &cut, ids.clone()).await?;
    let grace = Duration::from_secs(3600);
    let first = gc(&store, opts(grace)).await?;
    assert_eq!(first.swept_chunks, 0);
    assert_eq!(first.kept_young_chunks, ids.len() as u64);
    clock.advance(Duration::from_secs(3599));
    assert_eq!(gc(&store, opts(grace)).await?.swept_chunks, 0);
    clock.advance(Duration::from_secs(2));
    assert_eq!(
        gc(&store, opts(grace)).await?.swept_chunks,
        ids.len() as u64
    );
    // The late commit is refused, names what is missing, and succeeds after the upload.
    match store
        .commit(
            &n,
            &key("late"),
            cut.manifest.clone(),
            RefOptions::default(),
        )
        .await
    {
        Err(Error::MissingChunks { total, .. }) => assert_eq!(total, ids.len() as u64),
        other => panic!("expected MissingChunks, got {other:?}"),
    }
    assert_eq!(
        push(&store, &n, &key("late"), &blob, RefOptions::default()).await?,
        0
    );
    assert_eq!(read_all(&store, &n, &key("late")).await?, blob);
    store.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_keeps_the_newest_refs_expires_ttls_and_leaves_forever_prefixes() -> Result<()> {
    let dir = tmp()?;
    let mut c = config(dir.path());
    let clock = manual(&mut c);
    c.retention = vec![
        RetentionRule {
            prefix: "commit/".into(),
            policy: RetentionPolicy::KeepLast(2),
        },
        RetentionRule {
            prefix: "commit/release-".into(),
            policy: RetentionPolicy::Forever,
        },
        RetentionRule {
            prefix: "pr/".into(),
            policy: RetentionPolicy::Ttl(Duration::from_secs(3600)),
        },
    ];
    let store = Store::open(c).await?;
    let (a, b) = (ns("acme/web/app"), ns("acme/web/other"));
    for i in 0..4 {
        for n in [&a, &b] {
            let blob = data(20_000, i, true);
            push(
                &store,
                n,
                &key(&format!("commit/{i}")),
                &blob,
                RefOptions::default(),
            )
            .await?;
        }
        clock.advance(Duration::from_secs(1));
    }
    push(
        &store,
        &a,
        &key("commit/release-1"),
        &data(9_000, 9, true),
        RefOptions::default(),
    )
    .await?;
    push(
        &store,
        &a,
        &key("pr/7"),
        &data(9_000, 7, true),
        RefOptions::default(),
    )
    .await?;
    let short = RefOptions {
        ttl: Some(Duration::from_secs(60)),
        ..RefOptions::default()
    };
    push(&store, &a, &key("tmp/x"), &data(9_000, 8, true), short).await?;
    // The rule's TTL is the default for refs pushed without one.
    let pr = store.get_ref(&a, &key("pr/7")).await?.expect("pr ref");
    assert_eq!(pr.expires_at_ms, Some(pr.created_at_ms + 3_600_000));

    clock.advance(Duration::from_secs(61));
    assert!(
        store.get_ref(&a, &key("tmp/x")).await?.is_none(),
        "expired refs stop resolving"
    );
    let report = gc(&store, opts(Duration::ZERO)).await?;
    assert_eq!(report.expired_refs, 1, "{report:?}");
    let by_prefix: HashMap<&str, u64> = report
        .retention
        .iter()
        .map(|o| (o.prefix.as_str(), o.deleted))
        .collect();
    assert_eq!(by_prefix["commit/"], 4, "two of four in each namespace");
    assert_eq!(by_prefix["commit/release-"], 0);
    for n in [&a, &b] {
        let (left, _) = store
            .list_refs(n, &"commit/".parse::<KeyPrefix>()?, 100)
            .await?;
        let mut keys: Vec<String> = left.iter().map(|(k, _)| k.as_str().to_owned()).collect();
        keys.sort();
        let mut want = vec!["commit/2".to_owned(), "commit/3".to_owned()];
        if *n == a {
            want.push("commit/release-1".into());
        }
        want.sort();
        assert_eq!(keys, want);
    }
    clock.advance(Duration::from_secs(3600));
    let later = gc(&store, opts(Duration::ZERO)).await?;
    assert_eq!(later.expired_refs, 1, "the pr ref, by its default TTL");
    assert!(store.get_ref(&a, &key("commit/3")).await?.is_some());
    store.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_prefix_removes_every_ref_under_it_and_counts_them() -> Result<()> {
    let dir = tmp()?;
    let store = Store::open(config(dir.path())).await?;
    let n = ns("acme/web/app");
    for k in ["pr/1", "pr/2", "pr/3/x", "branch/main", "prx"] {
        push(
            &store,
            &n,
            &key(k),
            &data(5_000, 1, true),
            RefOptions::default(),
        )
        .await?;
    }
    assert_eq!(
        store
            .delete_prefix(&n, &"pr/".parse::<KeyPrefix>()?)
            .await?,
        3
    );
    assert_eq!(
        store
            .delete_prefix(&n, &"pr/".parse::<KeyPrefix>()?)
            .await?,
        0
    );
    let (left, _) = store.list_refs(&n, &"".parse::<KeyPrefix>()?, 10).await?;
    let mut keys: Vec<&str> = left.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, vec!["branch/main", "prx"]);
    store.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_gc_while_one_runs_is_refused_and_a_cancelled_gc_stops() -> Result<()> {
    let dir = tmp()?;
    let store = Store::open(config(dir.path())).await?;
    let n = ns("acme/web/app");
    push(
        &store,
        &n,
        &key("k"),
        &data(200_000, 4, false),
        RefOptions::default(),
    )
    .await?;
    let (tx, mut rx) = watch::channel(Progress::default());
    let cancel = CancellationToken::new();
    // Held at its first step: a cancelled token is checked as the run starts each step.
    let slow = {
        let (store, cancel) = (store.clone(), cancel.clone());
        tokio::spawn(async move { store.gc(opts(Duration::ZERO), cancel, tx).await })
    };
    rx.changed().await.ok();
    let second = gc(&store, opts(Duration::ZERO)).await;
    cancel.cancel();
    let first = slow.await.map_err(|_| Error::ShuttingDown)?;
    // Either the second ran into the first, or the first had already finished.
    match (&first, &second) {
        (_, Err(Error::GcRunning { .. })) | (Ok(_), Ok(_)) => {}
        (Err(Error::Cancelled(_)), Ok(_)) => {}
        other => panic!("unexpected outcome {other:?}"),
    }
    let cancel = CancellationToken::new();
    cancel.cancel();
    let (tx, _rx) = watch::channel(Progress::default());
    assert!(matches!(
        store.gc(opts(Duration::ZERO), cancel, tx).await,
        Err(Error::Cancelled(_))
    ));
    // A run after a cancelled one works.
    gc(&store, opts(Duration::ZERO)).await?;
    store.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compaction_rewrites_mostly_dead_warm_and_cold_packs_and_gives_the_space_back() -> Result<()>
{
    let dir = tmp()?;
    let mut c = config(dir.path());
    c.warm_pack_limit = 512 << 10;
    // One cold pack for everything: flushed once, at the end.
    c.cold_pack_target = 16 << 20;
    c.cold_flush_after = Duration::from_secs(3600);
    let store = Store::open(c).await?;
    let n = ns("acme/web/app");
    let blobs: Vec<Vec<u8>> = (0..8).map(|i| data(400_000, 100 + i, false)).collect();
    for (i, blob) in blobs.iter().enumerate() {
        push(
            &store,
            &n,
            &key(&format!("b{i}")),
            blob,
            RefOptions::default(),
        )
        .await?;
    }
    store.flush_cold().await?;
    let mut per_blob = Vec::new();
    for blob in &blobs {
        let ids: Vec<ChunkId> = cut(&store, blob)?
            .manifest
            .entries()
            .iter()
            .map(|e| e.id)
            .collect();
        per_blob.push(ids);
    }
    // Round-robin across blobs into warm, so every pack mixes them.
    let longest = per_blob.iter().map(Vec::len).max().unwrap_or(0);
    for i in 0..longest {
        let step: Vec<ChunkId> = per_blob
            .iter()
            .filter_map(|ids| ids.get(i).copied())
            .collect();
        store.demote(n.tenant(), step, true).await?;
    }
    let warm_before = pack_bytes(&dir.path().join("warm"));
    let cold_before = pack_bytes(&dir.path().join("cold"));
    for i in 0..6 {
        store.delete_ref(&n, &key(&format!("b{i}"))).await?;
    }
    let report = gc(&store, opts(Duration::ZERO)).await?;
    assert!(report.compacted_packs > 0, "{report:?}");
    let warm_after = pack_bytes(&dir.path().join("warm"));
    let cold_after = pack_bytes(&dir.path().join("cold"));
    // Two of eight blobs stay: within 2× of what they take alone (a quarter).
    assert!(
        warm_after <= warm_before / 2,
        "warm {warm_before} → {warm_after}"
    );
    assert!(
        cold_after <= cold_before / 2,
        "cold {cold_before} → {cold_after}"
    );
    for (i, blob) in blobs.iter().enumerate().skip(6) {
        assert_eq!(&read_all(&store, &n, &key(&format!("b{i}"))).await?, blob);
    }
    let check = fsck(&store, false).await?;
    assert!(!check.has_unrepaired(), "{check:?}");
    assert_eq!(check.garbage, 0, "{check:?}");
    store.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_push_over_its_tenants_quota_is_refused_and_stores_nothing_visible() -> Result<()> {
    let dir = tmp()?;
    let mut c = config(dir.path());
    c.quotas.insert("acme".into(), 1 << 20);
    let store = Store::open(c).await?;
    let n = ns("acme/web/app");
    let other = ns("beta/web/app");
    push(
        &store,
        &n,
        &key("small"),
        &data(400_000, 5, false),
        RefOptions::default(),
    )
    .await?;
    let used = store.tenant_usage(n.tenant()).await?;
    assert!(used > 390_000 && used < 1 << 20, "{used}");
    let big = data(900_000, 6, false);
    match push(&store, &n, &key("big"), &big, RefOptions::default()).await {
        Err(Error::QuotaExceeded {
            tenant,
            quota,
            usage,
            adding,
        }) => {
            assert_eq!((tenant.as_str(), quota), ("acme", 1 << 20));
            assert_eq!(usage, used);
            assert!(adding > 0);
        }
        other => panic!("expected QuotaExceeded, got {other:?}"),
    }
    assert!(store.get_ref(&n, &key("big")).await?.is_none());
    // Another tenant is not limited by it.
    push(&store, &other, &key("big"), &big, RefOptions::default()).await?;
    // Deleting and collecting gives the room back.
    store.delete_ref(&n, &key("small")).await?;
    gc(&store, opts(Duration::ZERO)).await?;
    push(&store, &n, &key("big"), &big, RefOptions::default()).await?;
    store.shutdown().await
}

/// The GC safety test: rounds of concurrent pushes (FindMissing → upload → commit), deletes,
/// expiring refs and GC runs with small grace periods on the injected clock. After every round
/// every live ref reads back byte-identical; at the end, with every ref deleted, nothing is
/// left in any tier, on disk or in the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gc_interleaved_with_pushes_deletes_and_expiries_never_loses_a_live_chunk() -> Result<()> {
    let dir = tmp()?;
    let mut c = config(dir.path());
    let clock = manual(&mut c);
    c.hot_bytes = 512 << 10;
    c.warm_bytes = 1 << 20;
    c.warm_pack_limit = 256 << 10;
    let store = Store::open(c).await?;
    let spaces = [ns("acme/web/app"), ns("beta/api/core")];
    // A pool of blobs sharing much of their content, as consecutive indexes do.
    let base = data(400_000, 42, false);
    let pool: Arc<Vec<Vec<u8>>> = Arc::new(
        (0..24u64)
            .map(|i| {
                let mut b = base.clone();
                let at = (i as usize * 16_411) % (b.len() - 20_000);
                b[at..at + 20_000].copy_from_slice(&data(20_000, i + 1, false));
                b.truncate(200_000 + (i as usize * 7_919) % 200_000);
                b
            })
            .collect(),
    );
    let mut rng = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut operations = 0;
    let mut refused_commits = 0;
    for round in 0..100 {
        let mut tasks = Vec::new();
        for p in 0..8 {
            let (store, pool) = (store.clone(), pool.clone());
            let n = spaces[(next() % 2) as usize].clone();
            let k = key(&format!("k{}", next() % 12));
            let which = (next() % pool.len() as u64) as usize;
            let ttl = (next() % 5 == 0).then(|| Duration::from_secs(30));
            tasks.push(tokio::spawn(async move {
                let opts = RefOptions {
                    ttl,
                    ..RefOptions::default()
                };
                push(&store, &n, &k, &pool[which], opts)
                    .await
                    .map(|r| (p, r))
            }));
        }
        let deleter = {
            let store = store.clone();
            let n = spaces[(next() % 2) as usize].clone();
            let k = key(&format!("k{}", next() % 12));
            tokio::spawn(async move { store.delete_ref(&n, &k).await.map(|_| (99, 0)) })
        };
        let collector = {
            let store = store.clone();
            let grace = Duration::from_secs(next() % 3 * 10);
            tokio::spawn(async move {
                let mut refused = 0;
                loop {
                    match gc(&store, opts(grace)).await {
                        Ok(_) => return Ok((98, refused)),
                        Err(Error::GcRunning { .. }) => refused += 1,
                        Err(e) => return Err(e),
                    }
                }
            })
        };
        tasks.push(deleter);
        tasks.push(collector);
        for t in tasks {
            let (who, refused) = t.await.map_err(|_| Error::ShuttingDown)??;
            if who < 90 {
                refused_commits += refused;
            }
            operations += 1;
        }
        clock.advance(Duration::from_secs(next() % 20));
        // Every live ref reads back whole: its blob is one of the pool's.
        for n in &spaces {
            let (refs, _) = store.list_refs(n, &"".parse::<KeyPrefix>()?, 100).await?;
            for (k, r) in refs {
                let got = read_all(&store, n, &k).await?;
                assert_eq!(BlobId::of(&got), r.blob, "round {round}: {n} {k}");
                assert!(pool.iter().any(|b| BlobId::of(b) == r.blob));
            }
        }
        let check = fsck(&store, false).await?;
        assert!(!check.has_unrepaired(), "round {round}: {check:?}");
    }
    assert!(operations >= 1000, "{operations}");
    // Some commits raced a sweep and were retried (not asserted: timing decides how many).
    eprintln!("{operations} operations, {refused_commits} commits refused and retried");
    for n in &spaces {
        store.delete_prefix(n, &"".parse::<KeyPrefix>()?).await?;
    }
    clock.advance(Duration::from_secs(3600));
    gc(&store, opts(Duration::ZERO)).await?;
    let last = gc(
        &store,
        GcOptions {
            compact_below: 1.0,
            ..opts(Duration::from_secs(0))
        },
    )
    .await?;
    assert_eq!(last.live_chunks, 0);
    let stats = store.stats(None).await?;
    for tier in [TierName::Hot, TierName::Warm, TierName::Cold] {
        assert_eq!(
            stats.tier(tier).chunks,
            0,
            "{tier:?}: {:?}",
            stats.tier(tier)
        );
        assert_eq!(stats.tier(tier).stored_bytes, 0, "{tier:?}");
    }
    assert_eq!(
        pack_bytes(&dir.path().join("cold")),
        0,
        "no pack left in the bucket"
    );
    // The warm folder keeps at most its (empty) active pack.
    assert!(
        pack_bytes(&dir.path().join("warm")) <= 16,
        "warm packs left"
    );
    let objects = count_files(&dir.path().join("cold"));
    assert_eq!(objects, 0, "no manifest or ref object left in the bucket");
    store.shutdown().await
}

fn count_files(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() { count_files(&p) } else { 1 }
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fsck_finds_each_injected_fault_and_repair_fixes_those_with_a_good_copy() -> Result<()> {
    use super::tests::{damage_cold, damage_hot, flip_byte};
    use crate::meta::ChunkKey;
    let dir = tmp()?;
    let store = Store::open(config(dir.path())).await?;
    let n = ns("acme/web/app");
    let a = data(600_000, 11, false);
    push(&store, &n, &key("a"), &a, RefOptions::default()).await?;
    store.flush_cold().await?;
    let ids: Vec<ChunkId> = cut(&store, &a)?
        .manifest
        .entries()
        .iter()
        .map(|e| e.id)
        .collect();
    store.demote(n.tenant(), ids.clone(), false).await?;
    let clean = fsck(&store, false).await?;
    assert_eq!(
        (clean.missing, clean.corrupt, clean.garbage),
        (0, 0, 0),
        "{clean:?}"
    );
    assert_eq!(clean.checked_chunks, ids.len() as u64);
    assert_eq!(clean.checked_manifests, 1);

    let tid = n.tenant().id();
    let k = |i: usize| ChunkKey::new(tid, &ids[i]);
    // A flipped byte in each tier, each in another chunk.
    damage_hot(&store, k(0)).await?;
    let (pack, at) = store.engine()?.warm.locate(k(1))?.expect("warm copy");
    flip_byte(&pack, at)?;
    // The last chunk's cold block: every chunk sharing it turns corrupt in the cold tier
    // (blocks of several chunks, `cold_block.rs`); it holds neither chunk 0 nor chunk 1.
    let last = ids.len() - 1;
    let block_of = |loc: Option<crate::cold::Location>| loc.map(|l| (l.pack, l.offset));
    let damaged_block = block_of(store.engine()?.cold.location(k(last)).await?);
    let mut in_block = 0u64;
    for i in 0..ids.len() {
        if block_of(store.engine()?.cold.location(k(i)).await?) == damaged_block {
            assert!(i > 1, "chunk {i} shares the damaged cold block");
            in_block += 1;
        }
    }
    damage_cold(&store, k(last)).await?;
    // A second blob whose cold pack object is deleted.
    let b = data(300_000, 22, false);
    push(&store, &n, &key("b"), &b, RefOptions::default()).await?;
    store.flush_cold().await?;
    let b_ids: Vec<ChunkId> = cut(&store, &b)?
        .manifest
        .entries()
        .iter()
        .map(|e| e.id)
        .collect();
    let (object, _) = store
        .engine()?
        .cold
        .locate(ChunkKey::new(tid, &b_ids[0]))
        .await?
        .expect("cold copy");
    let mut in_object = 0u64;
    for id in &b_ids {
        let at = store.engine()?.cold.locate(ChunkKey::new(tid, id)).await?;
        in_object += u64::from(at.is_some_and(|(o, _)| o == object));
    }
    std::fs::remove_file(&object).map_err(|e| Error::io("removing a pack object", e))?;
    // A third whose manifest names a chunk no tier holds.
    let c = data(200_000, 35, false);
    push(&store, &n, &key("c"), &c, RefOptions::default()).await?;
    store.flush_cold().await?;
    let lost = ChunkKey::new(tid, &cut(&store, &c)?.manifest.entries()[0].id);
    store
        .engine()?
        .meta
        .write(move |t, txn| {
            crate::hot::delete_in_txn(t, txn, lost)?;
            crate::cold::delete_in_txn(t, txn, lost)?;
            t.chunks.delete(txn, lost.as_bytes())?;
            Ok(())
        })
        .await?;

    let found = fsck(&store, false).await?;
    assert_eq!(found.corrupt, 2 + in_block, "{found:#?}");
    assert_eq!(found.missing, in_object + 1, "{found:#?}");
    assert_eq!(found.repaired, 0);
    assert!(found.has_unrepaired());
    let named = |what: &str| {
        found
            .problems
            .iter()
            .filter(|p| p.what.contains(what))
            .flat_map(|p| p.refs.clone())
            .collect::<Vec<_>>()
    };
    assert!(named("the hot copy is corrupt").contains(&"acme/web/app a".to_owned()));
    assert!(named("the warm copy is corrupt").contains(&"acme/web/app a".to_owned()));
    assert!(named("the cold copy is corrupt").contains(&"acme/web/app a".to_owned()));
    assert!(named("the cold copy is missing").contains(&"acme/web/app b".to_owned()));
    assert_eq!(named("stored nowhere"), vec!["acme/web/app c".to_owned()]);

    let repaired = fsck(&store, true).await?;
    assert_eq!(repaired.repaired, 2 + in_block + in_object, "{repaired:#?}");
    assert!(
        repaired.has_unrepaired(),
        "the lost chunk has no good copy: {repaired:#?}"
    );
    // The dropped cold copies are uploaded again from the good local ones.
    store.flush_cold().await?;
    let after = fsck(&store, false).await?;
    assert_eq!((after.corrupt, after.missing), (0, 1), "{after:#?}");
    assert_eq!(read_all(&store, &n, &key("a")).await?, a);
    assert_eq!(read_all(&store, &n, &key("b")).await?, b);
    // Pushing the blob again restores the lost chunk; fsck is clean.
    push(&store, &n, &key("c"), &c, RefOptions::default()).await?;
    let last = fsck(&store, false).await?;
    assert!(!last.has_unrepaired(), "{last:#?}");
    store.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_after_gc_restores_exactly_the_live_refs_from_a_bucket_without_garbage()
-> Result<()> {
    let dir = tmp()?;
    let mut c = config(dir.path());
    let clock = manual(&mut c);
    let store = Store::open(c.clone()).await?;
    let n = ns("acme/web/app");
    let blobs: Vec<Vec<u8>> = (0..4).map(|i| data(250_000, 300 + i * 2, false)).collect();
    for (i, b) in blobs.iter().enumerate() {
        push(
            &store,
            &n,
            &key(&format!("commit/{i}")),
            b,
            RefOptions::default(),
        )
        .await?;
    }
    let short = RefOptions {
        ttl: Some(Duration::from_secs(60)),
        ..RefOptions::default()
    };
    push(&store, &n, &key("tmp"), &data(100_000, 401, false), short).await?;
    store.delete_ref(&n, &key("commit/0")).await?;
    store
        .delete_prefix(&n, &"commit/1".parse::<KeyPrefix>()?)
        .await?;
    clock.advance(Duration::from_secs(61));
    let report = gc(&store, opts(Duration::ZERO)).await?;
    assert_eq!(
        (report.live_refs, report.expired_refs),
        (2, 1),
        "{report:?}"
    );
    store.shutdown().await?;
    // Only live refs' objects are left in the bucket: no tombstone, no old version.
    let refs_dir = dir.path().join("cold").join("refs");
    assert_eq!(count_files(&refs_dir), 2, "one object per live ref");
    assert_eq!(count_files(&dir.path().join("cold").join("manifests")), 2);

    std::fs::remove_dir_all(dir.path().join("meta")).map_err(|e| Error::io("rm meta", e))?;
    let rebuilt = Store::rebuild(c.clone()).await?;
    assert_eq!(
        (
            rebuilt.refs_restored,
            rebuilt.refs_deleted,
            rebuilt.refs_expired
        ),
        (2, 0, 0),
        "{rebuilt}"
    );
    let store = Store::open(c).await?;
    let (left, _) = store.list_refs(&n, &"".parse::<KeyPrefix>()?, 10).await?;
    let mut keys: Vec<&str> = left.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    assert_eq!(keys, vec!["commit/2", "commit/3"]);
    for (i, blob) in blobs.iter().enumerate().skip(2) {
        assert_eq!(
            &read_all(&store, &n, &key(&format!("commit/{i}"))).await?,
            blob
        );
    }
    assert!(!fsck(&store, false).await?.has_unrepaired());
    store.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chunks_swept_while_their_cold_copies_are_on_the_way_are_not_indexed_after_the_sweep()
-> Result<()> {
    let dir = tmp()?;
    let store = Store::open(config(dir.path())).await?;
    let n = ns("acme/web/app");
    let kept = data(400_000, 501, false);
    push(&store, &n, &key("kept"), &kept, RefOptions::default()).await?;
    for round in 0..5u64 {
        // Swept at once, while the write-behind is busy with its chunks.
        let k = key(&format!("gone/{round}"));
        push(
            &store,
            &n,
            &k,
            &data(800_000, 600 + round * 2, false),
            RefOptions::default(),
        )
        .await?;
        store.delete_ref(&n, &k).await?;
        gc(&store, opts(Duration::ZERO)).await?;
    }
    store.flush_cold().await?;
    let live = cut(&store, &kept)?.chunks.len() as u64;
    let stats = store.stats(None).await?;
    assert_eq!(stats.tier(TierName::Cold).chunks, live, "{stats:?}");
    assert_eq!(stats.tier(TierName::Hot).chunks, live);
    let again = gc(&store, opts(Duration::ZERO)).await?;
    assert_eq!(again.swept_chunks, 0, "{again:?}");
    assert_eq!(read_all(&store, &n, &key("kept")).await?, kept);
    store.shutdown().await
}
