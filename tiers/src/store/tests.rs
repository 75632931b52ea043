//! Store tests: real LMDB, real pack files, a real local-folder object store.

use std::time::Duration;

use proptest::prelude::*;

use crate::clock::Clock;
use crate::codec::{Compression, Frame};
use crate::error::{Error, Result};
use crate::ids::{BlobId, ChunkId};
use crate::manifest::{Manifest, ManifestEntry};
use crate::meta::ChunkKey;
use crate::names::{KeyPrefix, Namespace, RefKey, Tenant};
use crate::refs::RefOptions;
use crate::store::{BlobPart, ReadForm, Store, StoreConfig, TierName};
use crate::tier::ChunkTier;

pub(super) fn config(dir: &std::path::Path) -> StoreConfig {
    let mut c = StoreConfig::new(dir);
    c.lmdb_map_size = 2 << 30;
    c.cold_pack_target = 256 << 10;
    c.cold_flush_after = Duration::from_millis(50);
    c
}

pub(super) fn tmp() -> Result<tempfile::TempDir> {
    tempfile::tempdir().map_err(|e| Error::io("tempdir", e))
}

pub(super) fn ns(s: &str) -> Namespace {
    s.parse().expect("test namespace")
}

pub(super) fn key(s: &str) -> RefKey {
    s.parse().expect("test key")
}

/// Deterministic data: `repetitive` gives SCIP-like compressible text, otherwise noise.
pub(super) fn data(len: usize, seed: u64, repetitive: bool) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        if repetitive {
            out.extend_from_slice(
                format!(
                    "symbol scip-typescript npm pkg 1.0.{} src/`f{}`.ts ",
                    x % 7,
                    x % 97
                )
                .as_bytes(),
            );
        } else {
            out.extend_from_slice(&x.to_le_bytes());
        }
    }
    out.truncate(len);
    out
}

pub(super) async fn read_all(store: &Store, ns: &Namespace, k: &RefKey) -> Result<Vec<u8>> {
    let r = store
        .get_ref(ns, k)
        .await?
        .ok_or_else(|| Error::NotFound("ref".into()))?;
    let m = store.manifest(ns.tenant(), r.manifest).await?;
    let mut out = Vec::new();
    store.read_blob_to(ns.tenant(), m, &mut out).await?;
    // Promotions and repairs follow the read off its path: tests look at them next.
    store.settle_reads().await?;
    Ok(out)
}

#[test]
fn arbitrary_blobs_round_trip_byte_identical() -> Result<()> {
    let rt = tokio::runtime::Runtime::new().map_err(|e| Error::io("runtime", e))?;
    let dir = tmp()?;
    let store = rt.block_on(Store::open(config(dir.path())))?;
    let n = ns("acme/web/app");
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(12));
    let strategy = (
        0usize..3_000_000,
        any::<u64>(),
        any::<bool>(),
        0u64..4096,
        0u64..200_000,
    );
    runner
        .run(&strategy, |(len, seed, repetitive, offset, length)| {
            let blob = data(len, seed, repetitive);
            let out: Result<()> = rt.block_on(async {
                let k = key(&format!("commit/{seed:x}"));
                let record = store
                    .write_blob(&n, &k, &blob[..], RefOptions::default())
                    .await?;
                assert_eq!(record.blob, BlobId::of(&blob));
                assert_eq!(record.size, len as u64);
                assert_eq!(read_all(&store, &n, &k).await?, blob);
                // A byte range comes back exactly.
                let m = store.manifest(n.tenant(), record.manifest).await?;
                let mut parts =
                    store.read_blob(n.tenant(), m, offset, Some(length), ReadForm::Frames);
                let mut got = Vec::new();
                use futures::StreamExt;
                while let Some(p) = parts.next().await {
                    match p? {
                        BlobPart::Data(d) => got.extend_from_slice(&d),
                        BlobPart::Frame(id, f) => {
                            got.extend_from_slice(&f.decode_verified(&id, 1 << 24)?)
                        }
                        BlobPart::Normalized(id, _) => {
                            return Err(Error::Format(format!(
                                "{id} of a plain blob came normalized"
                            )));
                        }
                    }
                }
                let s = (offset as usize).min(len);
                let e = (s + length as usize).min(len);
                assert_eq!(got, &blob[s..e]);
                Ok(())
            });
            out.map_err(|e| TestCaseError::fail(e.to_string()))
        })
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
    rt.block_on(store.shutdown())
}

#[tokio::test]
async fn a_frame_that_does_not_match_its_id_is_refused_and_nothing_is_stored() -> Result<()> {
    let dir = tmp()?;
    let store = Store::open(config(dir.path())).await?;
    let tenant: Tenant = "acme".parse()?;
    let good = data(10_000, 1, true);
    let liar = ChunkId::of(b"something else");
    let frame = Frame::encode(&good, Compression::Lz4)?;
    let result = store
        .put_chunks(
            &tenant,
            vec![(ChunkId::of(&good), frame.clone()), (liar, frame)],
        )
        .await;
    assert!(matches!(result, Err(Error::Corrupt { .. })), "{result:?}");
    let missing = store
        .find_missing(&tenant, vec![ChunkId::of(&good), liar])
        .await?;
    assert_eq!(missing.len(), 2, "a rejected batch stores nothing");
    store.shutdown().await
}

#[tokio::test]
async fn chunks_are_per_tenant_and_find_missing_never_sees_another_tenants_chunks() -> Result<()> {
    let dir = tmp()?;
    let store = Store::open(config(dir.path())).await?;
    let (a, b): (Tenant, Tenant) = ("acme".parse()?, "globex".parse()?);
    let raw = data(20_000, 2, true);
    let id = ChunkId::of(&raw);
    let s = store
        .put_chunks(&a, vec![(id, Frame::encode(&raw, Compression::Lz4)?)])
        .await?;
    assert_eq!(s.stored, 1);
    assert!(store.find_missing(&a, vec![id]).await?.is_empty());
    assert_eq!(store.find_missing(&b, vec![id]).await?, vec![id]);
    assert!(matches!(
        store.get_chunk(&b, id).await,
        Err(Error::NotFound(_))
    ));
    // The same bytes pushed by the second tenant are a second entry.
    let s = store
        .put_chunks(&b, vec![(id, Frame::encode(&raw, Compression::Raw)?)])
        .await?;
    assert_eq!((s.stored, s.already_present), (1, 0));
    let s = store
        .put_chunks(&b, vec![(id, Frame::encode(&raw, Compression::Raw)?)])
        .await?;
    assert_eq!((s.stored, s.already_present), (0, 1));
    let stats = store.stats(Some(&a)).await?;
    assert_eq!(stats.tiers[0].1.chunks, 1);
    store.shutdown().await
}

#[tokio::test]
async fn commit_refuses_absent_chunks_and_a_wrong_blob_id() -> Result<()> {
    let dir = tmp()?;
    let store = Store::open(config(dir.path())).await?;
    let n = ns("acme/web/app");
    let raw = data(30_000, 3, true);
    let id = ChunkId::of(&raw);
    let entry = ManifestEntry {
        id,
        len: raw.len() as u32,
    };
    let manifest = Manifest::new(
        store.chunker(),
        BlobId::of(&raw),
        raw.len() as u64,
        vec![entry],
    )?;
    match store
        .commit(&n, &key("k"), manifest.clone(), RefOptions::default())
        .await
    {
        Err(Error::MissingChunks { listed, total }) => {
            assert_eq!((listed, total), (vec![id], 1));
        }
        other => panic!("expected MissingChunks, got {other:?}"),
    }
    store
        .put_chunks(
            n.tenant(),
            vec![(id, Frame::encode(&raw, Compression::Lz4)?)],
        )
        .await?;
    let lying = Manifest::new(
        store.chunker(),
        BlobId::of(b"not it"),
        raw.len() as u64,
        vec![entry],
    )?;
    assert!(matches!(
        store
            .commit(&n, &key("k"), lying, RefOptions::default())
            .await,
        Err(Error::InvalidArgument(_))
    ));
    assert!(store.get_ref(&n, &key("k")).await?.is_none());
    let r = store
        .commit(&n, &key("k"), manifest, RefOptions::default())
        .await?;
    assert_eq!(r.blob, BlobId::of(&raw));
    assert_eq!(read_all(&store, &n, &key("k")).await?, raw);
    store.shutdown().await
}

#[tokio::test]
async fn refs_list_newest_first_resolve_fallbacks_expire_and_delete() -> Result<()> {
    let dir = tmp()?;
    let clock = Clock::manual(1_700_000_000_000);
    let mut c = config(dir.path());
    c.clock = clock.clone();
    let store = Store::open(c).await?;
    let n = ns("acme/web/app");
    for (i, k) in ["commit/a", "commit/b", "branch/main"].iter().enumerate() {
        store
            .write_blob(
                &n,
                &key(k),
                &data(1000 + i, i as u64, true)[..],
                RefOptions::default(),
            )
            .await?;
        clock.advance(Duration::from_millis(5));
    }
    let (refs, truncated) = store
        .list_refs(&n, &"commit/".parse::<KeyPrefix>()?, 10)
        .await?;
    let keys: Vec<&str> = refs.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!((keys, truncated), (vec!["commit/b", "commit/a"], false));
    let fallbacks = ["pr/".parse::<KeyPrefix>()?, "commit/".parse()?];
    let (resolved, _) = store
        .resolve(&n, &key("commit/missing"), &fallbacks)
        .await?
        .ok_or_else(|| Error::NotFound("x".into()))?;
    assert_eq!(resolved.as_str(), "commit/b");
    // Other namespaces see nothing.
    assert!(
        store
            .list_refs(&ns("acme/web/other"), &KeyPrefix::default(), 10)
            .await?
            .0
            .is_empty()
    );
    // An expired ref stops resolving at once: live 1 ms before its TTL, gone at it.
    let opts = RefOptions {
        ttl: Some(Duration::from_millis(50)),
        labels: vec![("ci".into(), "yes".into())],
    };
    store
        .write_blob(&n, &key("tmp"), &b"short-lived"[..], opts)
        .await?;
    clock.advance(Duration::from_millis(49));
    assert!(store.get_ref(&n, &key("tmp")).await?.is_some());
    clock.advance(Duration::from_millis(1));
    assert!(store.get_ref(&n, &key("tmp")).await?.is_none());
    assert!(store.delete_ref(&n, &key("commit/a")).await?);
    assert!(!store.delete_ref(&n, &key("commit/a")).await?);
    assert!(store.get_ref(&n, &key("commit/a")).await?.is_none());
    store.shutdown().await
}

async fn first_chunk(store: &Store, n: &Namespace, k: &RefKey) -> Result<(ChunkId, ChunkKey)> {
    let r = store
        .get_ref(n, k)
        .await?
        .ok_or_else(|| Error::NotFound("ref".into()))?;
    let m = store.manifest(n.tenant(), r.manifest).await?;
    let id = m.entries()[0].id;
    Ok((id, ChunkKey::new(n.tenant().id(), &id)))
}

pub(super) async fn damage_hot(store: &Store, k: ChunkKey) -> Result<()> {
    store
        .engine()?
        .meta
        .write(move |t, txn| {
            let mut v = t
                .hot
                .get(txn, k.as_bytes())?
                .ok_or_else(|| Error::NotFound("hot".into()))?
                .to_vec();
            let last = v.len() - 1;
            v[last] ^= 0xff;
            t.hot.put(txn, k.as_bytes(), &v)?;
            Ok(())
        })
        .await
}

/// Flips the last byte of a chunk's frame in its cold pack object.
pub(super) async fn damage_cold(store: &Store, k: ChunkKey) -> Result<()> {
    let (object, at) = store
        .engine()?
        .cold
        .locate(k)
        .await?
        .ok_or_else(|| Error::NotFound("cold".into()))?;
    flip_byte(&object, at)
}

pub(super) fn flip_byte(path: &std::path::Path, at: u64) -> Result<()> {
    use std::os::unix::fs::FileExt;
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(|e| Error::io("open", e))?;
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, at)
        .map_err(|e| Error::io("read", e))?;
    b[0] ^= 0xff;
    f.write_all_at(&b, at).map_err(|e| Error::io("write", e))
}

#[tokio::test]
async fn corrupt_copies_are_detected_served_from_another_tier_and_repaired() -> Result<()> {
    let dir = tmp()?;
    let store = Store::open(config(dir.path())).await?;
    let n = ns("acme/web/app");
    let blob = data(200_000, 9, true);
    store
        .write_blob(&n, &key("k"), &blob[..], RefOptions::default())
        .await?;
    let (id, ck) = first_chunk(&store, &n, &key("k")).await?;
    store.flush_cold().await?;
    store.demote(n.tenant(), vec![id], false).await?;

    // A damaged hot value: the read is served from warm and the hot copy is repaired.
    damage_hot(&store, ck).await?;
    assert_eq!(read_all(&store, &n, &key("k")).await?, blob);
    assert!(
        store.scrub_chunk(n.tenant(), id).await?.is_empty(),
        "hot copy was repaired"
    );

    // A damaged warm pack and a damaged hot copy: served from cold, both repaired.
    let warm_loc = store
        .engine()?
        .meta
        .read(move |t, txn| Ok(t.warm.get(txn, ck.as_bytes())?.map(<[u8]>::to_vec)))
        .await?;
    let warm_loc = warm_loc.ok_or_else(|| Error::NotFound("warm".into()))?;
    let pack = u32::from_le_bytes([warm_loc[0], warm_loc[1], warm_loc[2], warm_loc[3]]);
    let off = u64::from_le_bytes(
        warm_loc[4..12]
            .try_into()
            .map_err(|_| Error::Format("loc".into()))?,
    );
    let len = u32::from_le_bytes(
        warm_loc[12..16]
            .try_into()
            .map_err(|_| Error::Format("loc".into()))?,
    );
    flip_byte(
        &dir.path().join(format!("warm/pack-{pack:08}.pack")),
        off + u64::from(len) - 1,
    )?;
    damage_hot(&store, ck).await?;
    assert_eq!(read_all(&store, &n, &key("k")).await?, blob);
    assert!(
        store.scrub_chunk(n.tenant(), id).await?.is_empty(),
        "hot and warm were repaired"
    );

    // A damaged cold object: a scrub finds it and writes a good copy again.
    damage_cold(&store, ck).await?;
    assert_eq!(
        store.scrub_chunk(n.tenant(), id).await?,
        vec![TierName::Cold]
    );
    store.flush_cold().await?;
    assert!(
        store.scrub_chunk(n.tenant(), id).await?.is_empty(),
        "cold copy was rewritten"
    );

    // Every copy bad: data loss, never wrong bytes.
    damage_cold(&store, ck).await?;
    store.engine()?.warm.delete(vec![ck]).await?;
    damage_hot(&store, ck).await?;
    assert!(matches!(
        store.get_chunk(n.tenant(), id).await,
        Err(Error::DataLoss { .. })
    ));
    store.shutdown().await
}

#[tokio::test]
async fn cold_copies_are_written_behind_and_serve_reads_after_eviction() -> Result<()> {
    let dir = tmp()?;
    let n = ns("acme/web/app");
    let blob = data(2_000_000, 11, true);
    // On a clock that stands still the last partial pack never falls due by itself.
    let mut c = config(dir.path());
    c.clock = Clock::manual(1_700_000_000_000);
    {
        let store = Store::open(c.clone()).await?;
        store
            .write_blob(&n, &key("k"), &blob[..], RefOptions::default())
            .await?;
        // Stop before the uploader is due: the queue must survive the restart.
        store.shutdown().await?;
    }
    let store = Store::open(c).await?;
    assert!(
        store.stats(None).await?.cold_queue > 0,
        "queue persisted across restart"
    );
    store.flush_cold().await?;
    let stats = store.stats(None).await?;
    assert_eq!(stats.cold_queue, 0);
    let (hot, cold) = (&stats.tiers[0].1, &stats.tiers[2].1);
    assert_eq!(hot.chunks, cold.chunks, "every chunk has a cold copy");
    assert!(
        cold.stored_bytes < hot.stored_bytes,
        "cold zstd beats hot lz4"
    );
    let objects = walk(&dir.path().join("cold"))?;
    assert!(
        (2..20).contains(&objects),
        "packs, not one object per chunk: {objects}"
    );
    // Evict everything to cold; reads come back through cold and promote to hot.
    let r = store
        .get_ref(&n, &key("k"))
        .await?
        .ok_or_else(|| Error::NotFound("ref".into()))?;
    let m = store.manifest(n.tenant(), r.manifest).await?;
    let ids: Vec<ChunkId> = m.entries().iter().map(|e| e.id).collect();
    store.evict_to_cold(n.tenant(), ids.clone()).await?;
    assert_eq!(store.stats(None).await?.tiers[0].1.chunks, 0);
    assert_eq!(read_all(&store, &n, &key("k")).await?, blob);
    let stats = store.stats(None).await?;
    assert!(
        stats.tiers[2].1.hits > 0 && stats.tiers[0].1.chunks > 0,
        "cold hits promoted to hot"
    );
    store.shutdown().await
}

fn walk(dir: &std::path::Path) -> Result<usize> {
    let mut n = 0;
    for e in std::fs::read_dir(dir).map_err(|e| Error::io("ls", e))? {
        let e = e.map_err(|e| Error::io("ls", e))?;
        if e.file_type().map_err(|e| Error::io("ls", e))?.is_dir() {
            n += walk(&e.path())?;
        } else {
            n += 1;
        }
    }
    Ok(n)
}

#[tokio::test]
async fn a_second_store_on_the_same_data_dir_is_refused() -> Result<()> {
    let dir = tmp()?;
    let store = Store::open(config(dir.path())).await?;
    assert!(matches!(
        Store::open(config(dir.path())).await,
        Err(Error::Locked { .. })
    ));
    store.shutdown().await
}

#[tokio::test]
async fn reopening_a_store_with_100k_chunks_keeps_them_all_and_is_fast() -> Result<()> {
    let dir = tmp()?;
    let tenant: Tenant = "acme".parse()?;
    let mut ids = Vec::new();
    {
        let store = Store::open(config(dir.path())).await?;
        for batch in 0..100u64 {
            let chunks: Vec<(ChunkId, Frame)> = (0..1024u64)
                .map(|i| {
                    let raw = (batch * 1024 + i).to_le_bytes().repeat(8);
                    Ok((ChunkId::of(&raw), Frame::encode(&raw, Compression::Raw)?))
                })
                .collect::<Result<_>>()?;
            ids.extend(chunks.iter().map(|(id, _)| *id));
            store.put_chunks(&tenant, chunks).await?;
        }
        store.shutdown().await?;
    }
    let started = std::time::Instant::now();
    let store = Store::open(config(dir.path())).await?;
    let reopen = started.elapsed();
    eprintln!("reopened a store of {} chunks in {reopen:?}", ids.len());
    assert!(store.find_missing(&tenant, ids).await?.is_empty());
    store.shutdown().await
}

#[tokio::test]
async fn a_full_lmdb_map_is_reported_as_storage_full_and_loses_nothing_acknowledged() -> Result<()>
{
    let dir = tmp()?;
    let mut c = config(dir.path());
    c.lmdb_map_size = 4 << 20;
    let store = Store::open(c).await?;
    let tenant: Tenant = "acme".parse()?;
    let mut acknowledged = Vec::new();
    let mut full = None;
    for i in 0..200u64 {
        let raw = data(64 * 1024, i + 100, false);
        let id = ChunkId::of(&raw);
        match store
            .put_chunks(&tenant, vec![(id, Frame::encode(&raw, Compression::Lz4)?)])
            .await
        {
            Ok(_) => acknowledged.push((id, raw)),
            Err(e) => {
                full = Some(e);
                break;
            }
        }
    }
    assert!(matches!(full, Some(Error::Full(_))), "{full:?}");
    for (id, raw) in &acknowledged {
        let frame = store.get_chunk(&tenant, *id).await?;
        assert_eq!(&frame.decode_verified(id, 1 << 20)?[..], &raw[..]);
    }
    store.shutdown().await
}

#[tokio::test]
async fn with_hot_verification_off_frames_and_ranges_still_read_back_exactly() -> Result<()> {
    use futures::StreamExt;
    let dir = tmp()?;
    let mut c = config(dir.path());
    c.verify_hot_reads = false;
    let store = Store::open(c).await?;
    let n = ns("acme/web/app");
    let blob = data(900_000, 21, true);
    let r = store
        .write_blob(&n, &key("k"), &blob[..], RefOptions::default())
        .await?;
    let m = store.manifest(n.tenant(), r.manifest).await?;
    for (offset, length) in [
        (0u64, None),
        (12_345, Some(300_000u64)),
        (899_000, Some(5_000)),
    ] {
        let mut parts = store.read_blob(n.tenant(), m.clone(), offset, length, ReadForm::Frames);
        let mut got = Vec::new();
        while let Some(p) = parts.next().await {
            match p? {
                BlobPart::Data(d) => got.extend_from_slice(&d),
                BlobPart::Frame(id, f) => {
                    got.extend_from_slice(&f.decode_verified(&id, 1 << 24)?);
                }
                BlobPart::Normalized(id, _) => panic!("{id} of a plain blob came normalized"),
            }
        }
        let s = offset as usize;
        let e = length.map_or(blob.len(), |l| (s + l as usize).min(blob.len()));
        assert_eq!(got, &blob[s..e], "offset {offset} length {length:?}");
    }
    store.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_give_each_tiers_raw_bytes_and_so_its_compression_ratio() -> Result<()> {
    let dir = tmp()?;
    let store = Store::open(config(dir.path())).await?;
    let n = ns("acme/web/app");
    let noise = data(500_000, 77, false);
    let text = data(700_000, 78, true);
    store
        .write_blob(&n, &key("noise"), &noise[..], RefOptions::default())
        .await?;
    store.flush_cold().await?;
    let s = store.stats(None).await?;
    assert_eq!(s.tier(TierName::Hot).raw_bytes, noise.len() as u64);
    assert_eq!(s.tier(TierName::Cold).raw_bytes, noise.len() as u64);
    assert_eq!(s.tier(TierName::Warm).raw_bytes, 0);
    // A tenant's own figures are scanned apart from everyone's.
    let other = ns("beta/web/app");
    store
        .write_blob(&other, &key("text"), &text[..], RefOptions::default())
        .await?;
    let beta = store.stats(Some(other.tenant())).await?.tier(TierName::Hot);
    assert!(beta.raw_bytes > 0 && beta.raw_bytes <= text.len() as u64);
    assert!(
        beta.raw_bytes > 4 * beta.stored_bytes,
        "SCIP-like text compresses: {beta:?}"
    );
    store.shutdown().await
}
