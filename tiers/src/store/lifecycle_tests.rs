//! Store tests of its lifecycle and of commit's checks: reopening after shutdown or drop,
//! chunks that go away during a commit, declared lengths, concurrent cold reads.

use std::time::Duration;

use super::tests::{config, data, key, ns, read_all, tmp};
use crate::codec::{Compression, Frame};
use crate::error::{Error, Result};
use crate::ids::{BlobId, ChunkId};
use crate::manifest::{Manifest, ManifestEntry};
use crate::meta::ChunkKey;
use crate::names::Tenant;
use crate::refs::RefOptions;
use crate::store::Store;
use crate::tier::ChunkTier;

#[tokio::test]
async fn after_shutdown_the_same_data_dir_opens_again_in_the_same_process() -> Result<()> {
    let dir = tmp()?;
    let n = ns("acme/web/app");
    let store = Store::open(config(dir.path())).await?;
    store
        .write_blob(
            &n,
            &key("k"),
            &b"kept across reopen"[..],
            RefOptions::default(),
        )
        .await?;
    store.shutdown().await?;
    assert!(matches!(
        store.get_ref(&n, &key("k")).await,
        Err(Error::ShuttingDown)
    ));
    // The first handle is still alive: shutdown alone released the lock and LMDB.
    let again = Store::open(config(dir.path())).await?;
    assert_eq!(
        read_all(&again, &n, &key("k")).await?,
        b"kept across reopen"
    );
    again.shutdown().await
}

#[tokio::test]
async fn dropping_the_last_handle_stops_background_work_and_frees_the_data_dir() -> Result<()> {
    let dir = tmp()?;
    let n = ns("acme/web/app");
    let store = Store::open(config(dir.path())).await?;
    store
        .write_blob(
            &n,
            &key("k"),
            &data(300_000, 5, true)[..],
            RefOptions::default(),
        )
        .await?;
    let clone = store.clone();
    drop(store);
    // A clone keeps it open.
    assert!(matches!(
        Store::open(config(dir.path())).await,
        Err(Error::Locked { .. })
    ));
    drop(clone);
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    let again = loop {
        match Store::open(config(dir.path())).await {
            Ok(s) => break s,
            Err(Error::Locked { .. }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            Err(e) => return Err(e),
        }
    };
    assert_eq!(
        read_all(&again, &n, &key("k")).await?,
        data(300_000, 5, true)
    );
    again.shutdown().await
}

/// A blob of `len` bytes stored as chunks (not committed): its manifest.
async fn stored_manifest(store: &Store, tenant: &Tenant, blob: &[u8]) -> Result<Manifest> {
    let spec = store.chunker();
    let splitter = spec.splitter()?;
    let mut entries = Vec::new();
    let mut chunks = Vec::new();
    for r in splitter.cut_all(blob) {
        let c = &blob[r];
        entries.push(ManifestEntry {
            id: ChunkId::of(c),
            len: c.len() as u32,
        });
        chunks.push((ChunkId::of(c), Frame::encode(c, Compression::Lz4)?));
    }
    store.put_chunks(tenant, chunks).await?;
    Manifest::new(spec, BlobId::of(blob), blob.len() as u64, entries)
}

#[tokio::test]
async fn a_chunk_deleted_after_verification_fails_the_commit_with_missing_chunks_and_no_ref()
-> Result<()> {
    let dir = tmp()?;
    let store = Store::open(config(dir.path())).await?;
    let n = ns("acme/web/app");
    let blob = data(400_000, 31, true);
    let manifest = stored_manifest(&store, n.tenant(), &blob).await?;
    assert!(manifest.entries().len() > 2);
    let victim = manifest.entries()[1].id;
    let hot = store.engine()?.hot.clone();
    let gone = ChunkKey::new(n.tenant().id(), &victim);
    *super::background::lock(&store.engine()?.commit_hook) = Some(Box::new(move || {
        let delete: futures::future::BoxFuture<'static, ()> = Box::pin(async move {
            hot.delete(vec![gone])
                .await
                .expect("deleting through the hot tier");
        });
        delete
    }));
    match store
        .commit(&n, &key("k"), manifest.clone(), RefOptions::default())
        .await
    {
        Err(Error::MissingChunks { listed, total }) => {
            assert_eq!((listed, total), (vec![victim], 1));
        }
        other => panic!("expected MissingChunks, got {other:?}"),
    }
    assert!(store.get_ref(&n, &key("k")).await?.is_none(), "no ref");
    let mid = manifest.id();
    let mkey = crate::meta::manifest_key(n.tenant().id(), &mid);
    let stored = store
        .engine()?
        .meta
        .read(move |t, txn| Ok(t.manifests.get(txn, &mkey)?.is_some()))
        .await?;
    assert!(!stored, "no manifest either");
    // Once the chunk is uploaded again the same commit succeeds.
    assert_eq!(
        store.find_missing(n.tenant(), vec![victim]).await?,
        vec![victim]
    );
    stored_manifest(&store, n.tenant(), &blob).await?;
    store
        .commit(&n, &key("k"), manifest, RefOptions::default())
        .await?;
    assert_eq!(read_all(&store, &n, &key("k")).await?, blob);
    store.shutdown().await
}

#[tokio::test]
async fn a_manifest_entry_whose_length_differs_from_the_stored_chunk_is_invalid() -> Result<()> {
    let dir = tmp()?;
    let store = Store::open(config(dir.path())).await?;
    let n = ns("acme/web/app");
    let (a, b) = (data(5_000, 41, true), data(7_000, 42, true));
    store
        .put_chunks(
            n.tenant(),
            vec![
                (ChunkId::of(&a), Frame::encode(&a, Compression::Lz4)?),
                (ChunkId::of(&b), Frame::encode(&b, Compression::Lz4)?),
            ],
        )
        .await?;
    // The lengths are swapped but add up: only the per-entry check can see it.
    let entries = vec![
        ManifestEntry {
            id: ChunkId::of(&a),
            len: 7_000,
        },
        ManifestEntry {
            id: ChunkId::of(&b),
            len: 5_000,
        },
    ];
    let blob = [a, b].concat();
    let lying = Manifest::new(store.chunker(), BlobId::of(&blob), 12_000, entries)?;
    let result = store
        .commit(&n, &key("k"), lying, RefOptions::default())
        .await;
    assert!(
        matches!(&result, Err(Error::InvalidArgument(m)) if m.contains("length")),
        "{result:?}"
    );
    assert!(store.get_ref(&n, &key("k")).await?.is_none());
    store.shutdown().await
}

#[tokio::test]
async fn concurrent_reads_of_a_cold_only_blob_fetch_it_and_promote_it_once() -> Result<()> {
    let dir = tmp()?;
    let store = Store::open(config(dir.path())).await?;
    let n = ns("acme/web/app");
    let blob = data(3_000_000, 51, true);
    let r = store
        .write_blob(&n, &key("k"), &blob[..], RefOptions::default())
        .await?;
    store.flush_cold().await?;
    let m = store.manifest(n.tenant(), r.manifest).await?;
    let ids: Vec<ChunkId> = m.entries().iter().map(|e| e.id).collect();
    store.evict_to_cold(n.tenant(), ids.clone()).await?;
    let before = store.stats(None).await?.tiers[2].1.hits;
    let k = key("k");
    let (x, y) = tokio::join!(read_all(&store, &n, &k), read_all(&store, &n, &k));
    assert_eq!(x?, blob);
    assert_eq!(y?, blob);
    let stats = store.stats(None).await?;
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(
        stats.tiers[2].1.hits - before,
        distinct.len() as u64,
        "each chunk came from cold once; the other reader found it promoted"
    );
    assert_eq!(stats.tiers[0].1.chunks, distinct.len() as u64);
    assert!(
        store.engine()?.inflight_is_empty(),
        "no single-flight gate is left behind"
    );
    store.shutdown().await
}
