//! Blobs cut SCIP-aware on a real store: normalized chunks shared across versions, every read
//! restored, the commit's blob check over restored bytes, GC and fsck over format-2 manifests.

use std::collections::HashMap;
use std::time::Duration;

use futures::StreamExt;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::tests::{config, key, ns, read_all, tmp};
use crate::codec::{Compression, Frame, MAX_CHUNK_LEN};
use crate::error::{Error, Result};
use crate::ids::{BlobId, ChunkId};
use crate::manifest::{Manifest, ManifestEntry};
use crate::names::Namespace;
use crate::refs::RefOptions;
use crate::scip::synthetic::index;
use crate::scip::{CutMode, Cutter, SPLITTER_VERSION, VersionTable};
use crate::store::{BlobPart, GcOptions, Progress, ReadForm, Store};

const SHA_1: &str = "eb5ef2ac708a6e70ec253d78955d04e20c3c9784";
const SHA_2: &str = "e8f1c8fa814a9f5c37bb4c7497f632ab24380110";

/// A blob cut as the CLI cuts it, with its stored chunks.
struct Cut {
    manifest: Manifest,
    chunks: HashMap<ChunkId, Vec<u8>>,
}

fn cut(store: &Store, blob: &[u8], mode: CutMode) -> Result<Cut> {
    let mut cutter = Cutter::new(store.chunker(), mode)?;
    cutter.push(blob);
    let (mut entries, mut flags, mut chunks) = (Vec::new(), Vec::new(), HashMap::new());
    while let Some(c) = cutter.next_cut(true)? {
        let id = ChunkId::of(&c.data);
        entries.push(ManifestEntry {
            id,
            len: c.data.len() as u32,
        });
        flags.push(c.normalized);
        chunks.insert(id, c.data.to_vec());
    }
    let table = cutter.finish();
    let manifest = Manifest::new(
        store.chunker(),
        BlobId::of(blob),
        blob.len() as u64,
        entries,
    )?
    .with_scip(SPLITTER_VERSION, flags, table)?;
    Ok(Cut { manifest, chunks })
}

/// FindMissing, upload, commit; returns how many chunks were uploaded.
async fn push(store: &Store, n: &Namespace, k: &str, c: &Cut) -> Result<usize> {
    let ids: Vec<ChunkId> = c.manifest.entries().iter().map(|e| e.id).collect();
    let missing = store.find_missing(n.tenant(), ids).await?;
    let frames = missing
        .iter()
        .map(|id| Ok((*id, Frame::encode(&c.chunks[id], Compression::Lz4)?)))
        .collect::<Result<Vec<_>>>()?;
    store.put_chunks(n.tenant(), frames).await?;
    store
        .commit(n, &key(k), c.manifest.clone(), RefOptions::default())
        .await?;
    Ok(missing.len())
}

/// [`cut`] then [`push`].
pub(super) async fn push_blob(
    store: &Store,
    n: &Namespace,
    k: &str,
    blob: &[u8],
    mode: CutMode,
) -> Result<usize> {
    push(store, n, k, &cut(store, blob, mode)?).await
}

/// Bytes `offset..offset + len` of the blob of `m`, read in `form`, decoding and restoring
/// whatever comes as a frame the way a client does. Returns them with the number of chunks
/// that came as stored normalized frames.
async fn range(
    store: &Store,
    m: &Manifest,
    offset: u64,
    len: u64,
    form: ReadForm,
) -> Result<(Vec<u8>, usize)> {
    let n = ns("acme/team/proj");
    let mut parts = store.read_blob(
        n.tenant(),
        std::sync::Arc::new(m.clone()),
        offset,
        Some(len),
        form,
    );
    let (mut out, mut normalized) = (Vec::new(), 0);
    while let Some(part) = parts.next().await {
        match part? {
            BlobPart::Data(d) => out.extend_from_slice(&d),
            BlobPart::Frame(id, f) => {
                out.extend_from_slice(&f.decode_verified(&id, MAX_CHUNK_LEN)?)
            }
            BlobPart::Normalized(id, f) => {
                let mut raw = f.decode_verified(&id, MAX_CHUNK_LEN)?.to_vec();
                assert!(
                    m.versions().restore_in_place(&mut raw)? > 0,
                    "{id} has placeholders"
                );
                out.extend_from_slice(&raw);
                normalized += 1;
            }
        }
    }
    Ok((out, normalized))
}

#[tokio::test]
async fn indexes_differing_only_in_their_sha_share_every_chunk_and_read_back_exactly() -> Result<()>
{
    let dir = tmp()?;
    let store = Store::open(config(dir.path())).await?;
    let n = ns("acme/team/proj");
    let docs: Vec<usize> = (0..40).map(|i| 20 + (i * 37) % 900).collect();
    let (one, two) = (index(SHA_1, &docs, 300), index(SHA_2, &docs, 300));
    let (a, b) = (
        cut(&store, &one, CutMode::Normalized)?,
        cut(&store, &two, CutMode::Normalized)?,
    );
    assert!(a.manifest.has_normalized());
    assert!(push(&store, &n, "commit/1", &a).await? > 0);
    assert_eq!(
        push(&store, &n, "commit/2", &b).await?,
        0,
        "nothing new to send"
    );
    assert_eq!(read_all(&store, &n, &key("commit/1")).await?, one);
    assert_eq!(read_all(&store, &n, &key("commit/2")).await?, two);
    // Ranged reads restore too, across chunk boundaries: on the server, or (stored frames)
    // on the reader, and only stored frames leave normalized chunks as they are stored.
    let total = two.len() as u64;
    for (offset, len) in [(0, 10), (5, total - 5), (total / 3, 70_000), (total - 1, 1)] {
        let want = &two[offset as usize..(offset + len) as usize];
        for form in [ReadForm::Raw, ReadForm::Frames, ReadForm::StoredFrames] {
            let (got, normalized) = range(&store, &b.manifest, offset, len, form).await?;
            assert_eq!(got, want, "{form:?} at {offset}+{len}");
            if form != ReadForm::StoredFrames {
                assert_eq!(normalized, 0, "{form:?} restores on the server");
            }
        }
    }
    let (_, stored) = range(&store, &b.manifest, 0, total, ReadForm::StoredFrames).await?;
    assert_eq!(
        stored,
        (0..b.manifest.entries().len())
            .filter(|&i| b.manifest.is_normalized(i))
            .count(),
        "a whole read sends every normalized chunk as stored"
    );
    // One chunk by id comes restored, and says so.
    let i = (0..b.manifest.entries().len())
        .find(|&i| b.manifest.is_normalized(i))
        .ok_or_else(|| Error::NotFound("no normalized chunk".into()))?;
    let e = b.manifest.entries()[i];
    let (frame, restored) = store.get_blob_chunk(n.tenant(), &b.manifest, e.id).await?;
    assert!(restored);
    let start = b.manifest.offset_of(i) as usize;
    assert_eq!(
        frame.decode(MAX_CHUNK_LEN)?,
        &two[start..start + e.len as usize]
    );
    store.shutdown().await
}

#[tokio::test]
async fn a_commit_whose_table_does_not_restore_the_blob_is_refused() -> Result<()> {
    let dir = tmp()?;
    let store = Store::open(config(dir.path())).await?;
    let n = ns("acme/team/proj");
    let blob = index(SHA_1, &[300, 20, 500], 50);
    let good = cut(&store, &blob, CutMode::Normalized)?;
    push(&store, &n, "commit/1", &good).await?;
    // The same chunks with a table naming another SHA restore to another blob.
    let mut lying = VersionTable::new();
    for (p, _) in good.manifest.versions().entries() {
        lying.insert(p, SHA_2.as_bytes())?;
    }
    let flags = (0..good.manifest.entries().len())
        .map(|i| good.manifest.is_normalized(i))
        .collect();
    let bad = Manifest::new(
        store.chunker(),
        BlobId::of(&blob),
        blob.len() as u64,
        good.manifest.entries().to_vec(),
    )?
    .with_scip(SPLITTER_VERSION, flags, lying)?;
    let refused = store
        .commit(&n, &key("commit/2"), bad, RefOptions::default())
        .await;
    assert!(
        matches!(refused, Err(Error::InvalidArgument(_))),
        "{refused:?}"
    );
    assert!(store.get_ref(&n, &key("commit/2")).await?.is_none());
    store.shutdown().await
}

#[tokio::test]
async fn gc_keeps_what_a_live_normalized_blob_needs_and_fsck_is_clean() -> Result<()> {
    let dir = tmp()?;
    let store = Store::open(config(dir.path())).await?;
    let n = ns("acme/team/proj");
    let (one, two) = (
        index(SHA_1, &[400, 30, 700, 5], 200),
        index(SHA_2, &[400, 30, 700, 6], 200),
    );
    push_blob(&store, &n, "commit/1", &one, CutMode::Normalized).await?;
    push_blob(&store, &n, "commit/2", &two, CutMode::Documents).await?;
    store.delete_ref(&n, &key("commit/1")).await?;
    let (tx, _rx) = watch::channel(Progress::default());
    let report = store
        .gc(
            GcOptions {
                tenant: None,
                grace: Duration::ZERO,
                dry_run: false,
                compact_below: 0.5,
            },
            CancellationToken::new(),
            tx,
        )
        .await?;
    assert!(report.swept_chunks > 0);
    assert_eq!(read_all(&store, &n, &key("commit/2")).await?, two);
    let (tx, _rx) = watch::channel(Progress::default());
    let fsck = store.fsck(false, CancellationToken::new(), tx).await?;
    assert_eq!((fsck.missing, fsck.corrupt), (0, 0), "{fsck:?}");
    store.shutdown().await
}

#[tokio::test]
async fn a_rebuild_restores_normalized_blobs_from_the_cold_tier() -> Result<()> {
    let dir = tmp()?;
    let c = config(dir.path());
    let n = ns("acme/team/proj");
    let (one, two) = (
        index(SHA_1, &[300, 40, 800], 100),
        index(SHA_2, &[300, 40, 800], 100),
    );
    let store = Store::open(c.clone()).await?;
    push_blob(&store, &n, "commit/1", &one, CutMode::Normalized).await?;
    push_blob(&store, &n, "commit/2", &two, CutMode::Normalized).await?;
    store.flush_cold().await?;
    store.shutdown().await?;
    std::fs::remove_dir_all(dir.path().join("meta")).map_err(|e| Error::io("meta/", e))?;
    let report = Store::rebuild(c.clone()).await?;
    assert_eq!(report.refs_restored, 2, "{report}");
    assert!(report.damaged.is_empty(), "{report}");
    let store = Store::open(c).await?;
    assert_eq!(read_all(&store, &n, &key("commit/1")).await?, one);
    assert_eq!(read_all(&store, &n, &key("commit/2")).await?, two);
    store.shutdown().await
}
