//! Document and symbol lookups: each blob's tables, built after its commit, and the answers
//! read from them.
//!
//! # Building
//! The commit that first stores a manifest also writes its `lookup_state` row as *pending*, in
//! the same transaction (`ingest.rs`). The indexer task reads pending blobs through the read
//! pipeline (verified, versions restored, fastest tier first, promoting nothing), feeds them
//! to [`TableBuilder`] on the blocking pool, writes the rows (`lookup_rows.rs`: shared rows
//! per document content, small rows per blob) after each few MiB read, and then marks the
//! state *ready* (or *not SCIP*, with the reason). A kill at any point leaves the state
//! pending, and the next start builds it again from scratch (a build first drops the blob's
//! rows; shared rows are complete or absent).
//!
//! # Answering
//! A lookup on a pending blob waits up to [`PENDING_WAIT`] for the indexer, then answers
//! [`Error::Unavailable`] ("indexing, retry"). A blob with no state row was stored before
//! lookups existed, or its tables were lost: [`Error::NoLookups`] says to push it again, which
//! queues it. A document lookup reads only the chunks that hold the document, through the read
//! pipeline.
//!
//! GC drops a blob's rows with its manifest (`gc.rs`), then the shared rows of documents no
//! blob holds any longer, while no build runs; `rebuild` queues every restored blob.

use std::ops::Bound;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use heed::{RoTxn, RwTxn, WithoutTls};
use tokio_util::sync::CancellationToken;

pub use super::lookup_rows::TableSizes;
use super::lookup_rows::{DOCUMENT, DocRow, Prepared, blob_key, drop_rows, is_hashed, prefix_end};
use super::refs::resolve_in;
use super::symbol_pages::{PageWriter, RunMerge};
use super::types::{BlobPart, ReadForm};
use super::{Engine, Store};
use crate::error::{Error, Result};
use crate::ids::ManifestId;
use crate::manifest::Manifest;
use crate::meta::{Tables, manifest_key};
use crate::names::{KeyPrefix, Namespace, RefKey, Tenant, TenantId};
use crate::refs::RefRecord;
use crate::scip::tables::{
    DEFINES, DocumentEntry, NotScip, REFERENCES, SymbolEntry, TABLE_FORMAT, TableBuilder,
};
use crate::sealed::unseal;

/// How long a lookup waits for the indexer before answering "indexing, retry".
pub const PENDING_WAIT: Duration = Duration::from_secs(2);
/// Bytes of a blob handed to the builder per blocking job.
const FEED_BATCH: usize = 4 << 20;
/// How often the indexer looks for pending blobs when nothing woke it.
const TICK: Duration = Duration::from_secs(30);
/// Most entries one listing page returns.
pub const MAX_PAGE: usize = 1000;

const STATE_PENDING: u8 = 0;
const STATE_READY: u8 = 1;
const STATE_NOT_SCIP: u8 = 2;

/// Whether a blob's tables can answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LookupState {
    /// Queued or being built.
    Pending,
    /// Built: how many documents and global symbols they hold.
    Ready {
        /// Documents.
        documents: u32,
        /// Global symbols.
        symbols: u32,
    },
    /// The blob is not a SCIP index: why.
    NotScip(String),
}

impl LookupState {
    fn encode(&self) -> Vec<u8> {
        let mut out = vec![TABLE_FORMAT];
        match self {
            Self::Pending => out.push(STATE_PENDING),
            Self::Ready { documents, symbols } => {
                out.push(STATE_READY);
                out.extend_from_slice(&documents.to_le_bytes());
                out.extend_from_slice(&symbols.to_le_bytes());
            }
            Self::NotScip(why) => {
                out.push(STATE_NOT_SCIP);
                out.extend_from_slice(why.as_bytes());
            }
        }
        out
    }

    fn decode(b: &[u8]) -> Result<Self> {
        let bad = || Error::Format("a lookup state record is unreadable".into());
        match b {
            [TABLE_FORMAT, STATE_PENDING] => Ok(Self::Pending),
            [TABLE_FORMAT, STATE_READY, rest @ ..] if rest.len() == 8 => Ok(Self::Ready {
                documents: u32::from_le_bytes(rest[..4].try_into().map_err(|_| bad())?),
                symbols: u32::from_le_bytes(rest[4..].try_into().map_err(|_| bad())?),
            }),
            [TABLE_FORMAT, STATE_NOT_SCIP, why @ ..] => {
                Ok(Self::NotScip(String::from_utf8_lossy(why).into_owned()))
            }
            // Tables of another layout are built again by this build.
            [f, ..] if *f != TABLE_FORMAT => Ok(Self::Pending),
            _ => Err(bad()),
        }
    }
}

/// The indexer's signals (new work, a blob finished) and the manifests document lookups
/// read last.
#[derive(Debug, Default)]
pub(crate) struct Indexer {
    pub(crate) wake: tokio::sync::Notify,
    finished: tokio::sync::Notify,
    /// Held by a build, and by GC while it drops the shared rows no blob holds.
    pub(crate) building: tokio::sync::Mutex<()>,
    /// Runs written by builds too large for one (what tests look at).
    pub(crate) runs_written: std::sync::atomic::AtomicU64,
    manifests: std::sync::Mutex<Vec<(TenantId, ManifestId, Arc<Manifest>)>>,
}

/// Manifests a document lookup keeps decoded (a manifest never changes: its id is its hash).
const CACHED_MANIFESTS: usize = 16;

impl Indexer {
    /// The manifest `id` of tenant `tid`, decoded once and then kept among the last
    /// [`CACHED_MANIFESTS`] used, so that a document lookup does not decode and hash the
    /// whole manifest of a large blob each time.
    async fn manifest(
        &self,
        e: &Arc<Engine>,
        tid: TenantId,
        id: ManifestId,
    ) -> Result<Arc<Manifest>> {
        {
            let mut cached = self
                .manifests
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if let Some(i) = cached.iter().position(|(t, m, _)| *t == tid && *m == id) {
                let hit = cached.remove(i);
                let m = hit.2.clone();
                cached.push(hit);
                return Ok(m);
            }
        }
        let m = super::refs::load_manifest(e, tid, id).await?;
        let mut cached = self
            .manifests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if cached.len() >= CACHED_MANIFESTS {
            cached.remove(0);
        }
        cached.push((tid, id, m.clone()));
        Ok(m)
    }
}

/// In a commit's transaction: queues the blob `mkey` names unless its tables exist or are
/// queued. Returns whether it queued it.
pub(crate) fn queue_in_txn(t: &Tables, txn: &mut RwTxn<'_>, mkey: &[u8; 40]) -> Result<bool> {
    if t.lookup_state.get_unless_damaged(txn, mkey)?.is_some() {
        return Ok(false);
    }
    t.lookup_state
        .put(txn, mkey, &LookupState::Pending.encode())?;
    Ok(true)
}

/// In GC's transaction: drops the state and rows of the blob `mkey` names (the shared rows
/// of its documents stay for [`sweep_documents`]).
pub(crate) fn drop_in_txn(t: &Tables, txn: &mut RwTxn<'_>, mkey: &[u8; 40]) -> Result<()> {
    t.lookup_state.delete(txn, mkey)?;
    drop_rows(t, txn, mkey)
}

/// Drops the shared rows of documents that no blob in the key range `scope` holds, while no
/// build runs (a build may be about to rely on rows it found). How many documents went.
pub(crate) async fn sweep_documents(e: &Arc<Engine>, scope: Vec<u8>) -> Result<u64> {
    let _no_build = e.indexer.building.lock().await;
    let unheld = e
        .meta
        .read(move |t, txn| super::lookup_rows::unheld_documents(t, txn, &scope))
        .await?;
    let n = unheld.len() as u64;
    for part in unheld.chunks(1024) {
        let part = part.to_vec();
        e.meta
            .write(move |t, txn| {
                for prefix in &part {
                    drop_rows(t, txn, prefix)?;
                }
                Ok(())
            })
            .await?;
    }
    Ok(n)
}

/// The indexer task: builds pending blobs' tables when woken and every [`TICK`], until
/// cancelled or the engine is gone.
pub(super) async fn run(engine: Weak<Engine>, cancel: CancellationToken) {
    let mut first = true;
    loop {
        if !first {
            let Some(e) = engine.upgrade() else { break };
            let indexer = e.indexer.clone();
            drop(e);
            tokio::select! {
                () = cancel.cancelled() => break,
                () = tokio::time::sleep(TICK) => {}
                () = indexer.wake.notified() => {}
            }
        }
        first = false;
        let Some(e) = engine.upgrade() else { break };
        match build_pending(&e, &cancel).await {
            Ok(()) | Err(Error::ShuttingDown) => {}
            Err(err) => tracing::warn!(error = %err, "building lookup tables failed; will retry"),
        }
    }
}

/// Builds the tables of every pending blob.
async fn build_pending(e: &Arc<Engine>, cancel: &CancellationToken) -> Result<()> {
    loop {
        let pending: Vec<[u8; 40]> = e
            .meta
            .read(|t, txn| {
                let mut out = Vec::new();
                for item in t.lookup_state.iter(txn)? {
                    let Ok((k, v)) = item else { continue };
                    if LookupState::decode(v).is_ok_and(|s| s == LookupState::Pending)
                        && let Ok(k) = <[u8; 40]>::try_from(k)
                    {
                        out.push(k);
                    }
                }
                Ok(out)
            })
            .await?;
        if pending.is_empty() {
            return Ok(());
        }
        let mut failed = 0;
        for mkey in &pending {
            if cancel.is_cancelled() {
                return Ok(());
            }
            if let Err(err) = build_one(e, *mkey).await {
                if matches!(err, Error::ShuttingDown) {
                    return Err(err);
                }
                failed += 1;
                tracing::warn!(
                    manifest = %hex::encode(&mkey[8..]),
                    error = %err,
                    "building a blob's lookup tables failed; will retry"
                );
            }
        }
        if failed > 0 {
            // Retried on the next tick rather than at once.
            return Ok(());
        }
    }
}

/// Builds and stores the tables of the blob `mkey` names.
async fn build_one(e: &Arc<Engine>, mkey: [u8; 40]) -> Result<()> {
    let mut tid = [0u8; 8];
    tid.copy_from_slice(&mkey[..8]);
    let tid = TenantId(tid);
    let mut id = [0u8; 32];
    id.copy_from_slice(&mkey[8..]);
    let id = ManifestId::from_bytes(id);
    let _building = e.indexer.building.lock().await;
    let present = e
        .meta
        .write(move |t, txn| {
            // What an earlier, interrupted build wrote goes first.
            drop_rows(t, txn, &mkey)?;
            t.manifests.contains(txn, &mkey)
        })
        .await?;
    if !present {
        // GC took the blob before its tables were built: nothing to build.
        return e.meta.write(move |t, txn| drop_in_txn(t, txn, &mkey)).await;
    }
    let manifest = super::refs::load_manifest(e, tid, id).await?;
    let started = std::time::Instant::now();
    let mut parts = super::read::scan_blob(e.clone(), tid, manifest);
    let mut builder = TableBuilder::new();
    let mut pages = PageWriter::new(mkey, tid);
    let mut batch = BytesMut::new();
    let (mut done, mut runs, mut documents) = (false, 0u32, 0u32);
    let mut failed = None;
    while !done {
        match parts.next().await {
            Some(part) => match part? {
                BlobPart::Data(d) => batch.extend_from_slice(&d),
                BlobPart::Frame(..) | BlobPart::Normalized(..) => {
                    return Err(Error::Format("a raw read returned a frame".into()));
                }
            },
            None => done = true,
        }
        if batch.len() < FEED_BATCH && !done {
            continue;
        }
        let piece = std::mem::take(&mut batch).freeze();
        let (run_no, run_bytes) = (runs, e.config.lookup_run_bytes);
        let (b, p, rows, ran, why) = crate::blocking::run(move || {
            builder.feed(&piece);
            // `finish` says why a blob is not an index, once it showed it or has ended.
            let why = if builder.has_failed() || done {
                builder.finish().err()
            } else {
                None
            };
            let mut rows = Prepared::documents(&mkey, tid, builder.take_documents());
            let mut ran = false;
            if why.is_none() && done && run_no == 0 {
                // The whole index was one run: page it at once.
                for (symbol, docs) in builder.take_run() {
                    pages.push(symbol.as_bytes(), &docs);
                }
                let (own, shared) = pages.finish();
                rows.add_rows(own);
                rows.add_once(shared);
            } else if why.is_none() && (done || builder.run_bytes() >= run_bytes) {
                let run = builder.take_run();
                rows.add_rows(super::symbol_pages::run_rows(&mkey, run_no, &run));
                ran = true;
            }
            Ok((builder, pages, rows, ran, why))
        })
        .await?;
        (builder, pages) = (b, p);
        if why.is_some() {
            failed = why;
            break;
        }
        documents += e.meta.write(move |t, txn| rows.write(t, txn)).await?;
        runs += u32::from(ran);
    }
    drop(parts);
    if failed.is_none() && runs > 0 {
        e.indexer
            .runs_written
            .fetch_add(u64::from(runs), std::sync::atomic::Ordering::Relaxed);
        page_runs(e, mkey, &mut pages).await?;
    }
    let state = match failed {
        Some(NotScip(why)) => LookupState::NotScip(why),
        None => LookupState::Ready {
            documents,
            symbols: pages.symbols,
        },
    };
    tracing::info!(
        manifest = %id,
        ms = started.elapsed().as_millis() as u64,
        state = ?state,
        runs,
        "built a blob's lookup tables"
    );
    let encoded = state.encode();
    let ready = matches!(state, LookupState::Ready { .. });
    e.meta
        .write(move |t, txn| {
            // GC may have dropped the blob meanwhile: then its rows go too.
            if !t.manifests.contains(txn, &mkey)? {
                return drop_in_txn(t, txn, &mkey);
            }
            if !ready {
                drop_rows(t, txn, &mkey)?;
            }
            t.lookup_state.put(txn, &mkey, &encoded)
        })
        .await?;
    e.indexer.finished.notify_waiters();
    Ok(())
}

/// Joins the runs a build wrote into the blob's symbol pages, in one scan of bounded steps,
/// then drops the runs.
async fn page_runs(e: &Arc<Engine>, mkey: [u8; 40], pages: &mut PageWriter) -> Result<()> {
    const STEP: usize = 8192;
    let mut merge = RunMerge::default();
    let mut after: Option<Vec<u8>> = None;
    loop {
        let from = after.clone();
        let (rows, last) = e
            .meta
            .read(move |t, txn| {
                super::symbol_pages::read_runs(t, txn, &mkey, from.as_deref(), STEP)
            })
            .await?;
        let end = rows.len() < STEP;
        for row in rows {
            merge.push(row, pages);
        }
        if end {
            merge.flush(pages);
        }
        let (own, shared) = if end { pages.finish() } else { pages.take() };
        let mut step = Prepared::default();
        step.add_rows(own);
        step.add_once(shared);
        e.meta
            .write(move |t, txn| step.write(t, txn).map(drop))
            .await?;
        if end {
            break;
        }
        after = last;
    }
    e.meta
        .write(move |t, txn| super::symbol_pages::drop_runs(t, txn, &mkey))
        .await
}

/// A page of a listing: the names and the token of the next page (empty at the end).
pub type Page<T> = (Vec<T>, String);

/// Which blob a lookup reads: one named by its manifest, or the blob under a ref, resolved
/// like a pull's (the key if live, else the newest ref under the first fallback that has one)
/// in the read transaction that reads the tables.
#[derive(Clone, Debug)]
pub enum LookupSource {
    /// The blob of this manifest, of this tenant.
    Manifest(TenantId, ManifestId),
    /// The blob under a ref.
    Ref {
        /// The namespace.
        ns: Namespace,
        /// The key.
        key: RefKey,
        /// Prefixes tried in order when `key` is absent or expired.
        fallbacks: Vec<KeyPrefix>,
    },
}

impl LookupSource {
    fn tenant_id(&self) -> TenantId {
        match self {
            Self::Manifest(tid, _) => *tid,
            Self::Ref { ns, .. } => ns.tenant().id(),
        }
    }
}

/// A lookup's answer and, for a [`LookupSource::Ref`], the ref it resolved.
#[derive(Clone, Debug)]
pub struct Found<T> {
    /// The ref read (its key after a fallback) and its record; `None` for a manifest source.
    pub resolved: Option<(RefKey, RefRecord)>,
    /// The blob's manifest.
    pub manifest: ManifestId,
    /// The answer.
    pub answer: T,
}

/// What the first read transaction of a lookup found.
enum Step<T> {
    NoRef,
    Done(Option<(RefKey, RefRecord)>, ManifestId, T),
    Pending(Option<(RefKey, RefRecord)>, ManifestId),
}

fn not_scip(why: &str) -> Error {
    Error::NoLookups(format!(
        "the blob is not a SCIP index ({why}), so it has no document or symbol lookups; it \
         is stored as it is and pulls back whole"
    ))
}

fn no_tables() -> Error {
    Error::NoLookups(
        "the blob has no lookup tables: it was pushed before this server built them; push it \
         again (`scipcache push`) to index it"
            .into(),
    )
}

/// Resolves `source` and, once its blob's tables are ready, runs `f` on them with the blob's
/// row-key prefix: both in one read transaction (one trip to the blocking pool) when the
/// tables are ready, which is the hot path. `None` when a ref source names no live ref.
async fn read_tables<T, F>(e: &Arc<Engine>, source: &LookupSource, f: F) -> Result<Option<Found<T>>>
where
    F: Fn(&Tables, &RoTxn<'_, WithoutTls>, &[u8; 40]) -> Result<T> + Send + Sync + 'static,
    T: Send + 'static,
{
    let f = Arc::new(f);
    let tid = source.tenant_id();
    let now = e.meta.clock().now_ms();
    let (first, src) = (f.clone(), source.clone());
    let step = e
        .meta
        .read_short(move |t, txn| {
            let (resolved, manifest) = match &src {
                LookupSource::Manifest(_, id) => (None, *id),
                LookupSource::Ref { ns, key, fallbacks } => {
                    match resolve_in(t, txn, ns, key, fallbacks, now)? {
                        Some((k, r)) => {
                            let m = r.manifest;
                            (Some((k, r)), m)
                        }
                        None => return Ok(Step::NoRef),
                    }
                }
            };
            let mkey = manifest_key(tid, &manifest);
            let state = match t.lookup_state.get(txn, &mkey)? {
                Some(v) => LookupState::decode(v)?,
                None => return Err(no_tables()),
            };
            match state {
                LookupState::Ready { .. } => {
                    Ok(Step::Done(resolved, manifest, first(t, txn, &mkey)?))
                }
                LookupState::Pending => Ok(Step::Pending(resolved, manifest)),
                LookupState::NotScip(why) => Err(not_scip(&why)),
            }
        })
        .await?;
    match step {
        Step::NoRef => Ok(None),
        Step::Done(resolved, manifest, answer) => Ok(Some(Found {
            resolved,
            manifest,
            answer,
        })),
        Step::Pending(resolved, manifest) => {
            let mkey = ready(e, tid, manifest).await?;
            let answer = e.meta.read(move |t, txn| f(t, txn, &mkey)).await?;
            Ok(Some(Found {
                resolved,
                manifest,
                answer,
            }))
        }
    }
}

impl Store {
    /// What the lookup tables of every tenant take (a walk over all their rows: for
    /// benchmarks and tests).
    pub async fn lookup_table_sizes(&self) -> Result<TableSizes> {
        let e = self.engine()?;
        e.meta.read(super::lookup_rows::sizes).await
    }

    /// Whether the tables of the blob `manifest` are built.
    pub async fn lookup_state(
        &self,
        tenant: &Tenant,
        manifest: ManifestId,
    ) -> Result<Option<LookupState>> {
        let e = self.engine()?;
        state(&e, tenant.id(), manifest).await
    }

    /// One document of the blob: its entry and its `Document` message's bytes (`None` when
    /// the index has no document at `path`). The bytes are read through the read pipeline:
    /// only the chunks that hold the document, verified, versions restored.
    pub async fn lookup_document(
        &self,
        source: &LookupSource,
        path: &str,
    ) -> Result<Option<Found<Option<(DocumentEntry, Bytes)>>>> {
        let e = self.engine()?;
        let tid = source.tenant_id();
        let name = path.as_bytes().to_vec();
        let Some(found) = read_tables(&e, source, move |t, txn, mkey| {
            match t.lookups.get(txn, &blob_key(mkey, DOCUMENT, &name))? {
                Some(v) => DocRow::decode(v).map(|row| Some(row.entry)),
                None => Ok(None),
            }
        })
        .await?
        else {
            return Ok(None);
        };
        let Found {
            resolved,
            manifest,
            answer,
        } = found;
        let answer = match answer {
            Some(entry) => {
                let m = e.indexer.manifest(&e, tid, manifest).await?;
                let bytes = read_document(e, tid, m, &entry, path).await?;
                Some((entry, bytes))
            }
            None => None,
        };
        Ok(Some(Found {
            resolved,
            manifest,
            answer,
        }))
    }

    /// A symbol's definitions and the referencing documents `skip..skip + take`, with how
    /// many documents reference it in all (`None` when no document of the index names it).
    pub async fn lookup_symbol(
        &self,
        source: &LookupSource,
        symbol: &str,
        skip: usize,
        take: usize,
    ) -> Result<Option<Found<Option<(SymbolEntry, usize)>>>> {
        let e = self.engine()?;
        let name = symbol.as_bytes().to_vec();
        read_tables(&e, source, move |t, txn, mkey| {
            symbol_in(t, txn, mkey, &name, skip, take)
        })
        .await
    }

    /// Documents whose path starts with `prefix`, in path order, after the page token
    /// `after` (empty: from the first), at most `limit` (≤ [`MAX_PAGE`]).
    pub async fn lookup_documents(
        &self,
        source: &LookupSource,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> Result<Option<Found<Page<(String, DocumentEntry)>>>> {
        let e = self.engine()?;
        let (prefix, after) = (prefix.to_owned(), after.to_owned());
        read_tables(&e, source, move |t, txn, mkey| {
            let (rows, next) = list(t, txn, mkey, DOCUMENT, &prefix, &after, limit)?;
            let docs = rows
                .into_iter()
                .map(|(name, v)| DocRow::decode(&v).map(|row| (name, row.entry)))
                .collect::<Result<_>>()?;
            Ok((docs, next))
        })
        .await
    }

    /// Global symbols that start with `prefix`, in order, after the page token `after`, at
    /// most `limit` (≤ [`MAX_PAGE`]).
    pub async fn lookup_symbols(
        &self,
        source: &LookupSource,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> Result<Option<Found<Page<String>>>> {
        let e = self.engine()?;
        let (prefix, after) = (prefix.to_owned(), after.to_owned());
        read_tables(&e, source, move |t, txn, mkey| {
            list_symbols(t, txn, mkey, &prefix, &after, limit)
        })
        .await
    }
}

/// The bytes of one document, read through the read pipeline.
async fn read_document(
    e: Arc<Engine>,
    tid: TenantId,
    m: Arc<Manifest>,
    entry: &DocumentEntry,
    path: &str,
) -> Result<Bytes> {
    let mut parts = super::read::read_blob(e, tid, m, entry.offset, Some(entry.len), ReadForm::Raw);
    let mut out = BytesMut::with_capacity(usize::try_from(entry.len).unwrap_or(0));
    while let Some(part) = parts.next().await {
        match part.map_err(super::read::listed_chunk_lost)? {
            BlobPart::Data(d) => {
                if out.is_empty() && d.len() as u64 == entry.len {
                    return Ok(d);
                }
                out.extend_from_slice(&d);
            }
            BlobPart::Frame(..) | BlobPart::Normalized(..) => {
                return Err(Error::Format("a raw read returned a frame".into()));
            }
        }
    }
    if out.len() as u64 != entry.len {
        return Err(Error::MetadataLoss(format!(
            "document {path} should be {} bytes but the blob held {}",
            entry.len,
            out.len()
        )));
    }
    Ok(out.freeze())
}

async fn state(
    e: &Arc<Engine>,
    tid: TenantId,
    manifest: ManifestId,
) -> Result<Option<LookupState>> {
    let mkey = manifest_key(tid, &manifest);
    e.meta
        .read(move |t, txn| match t.lookup_state.get(txn, &mkey)? {
            Some(v) => LookupState::decode(v).map(Some),
            None => Ok(None),
        })
        .await
}

/// The key prefix of the blob's rows once its tables are ready, waiting up to
/// [`PENDING_WAIT`] for a pending one.
async fn ready(e: &Arc<Engine>, tid: TenantId, manifest: ManifestId) -> Result<[u8; 40]> {
    let deadline = tokio::time::Instant::now() + PENDING_WAIT;
    loop {
        let finished = e.indexer.finished.notified();
        match state(e, tid, manifest).await? {
            Some(LookupState::Ready { .. }) => return Ok(manifest_key(tid, &manifest)),
            Some(LookupState::NotScip(why)) => return Err(not_scip(&why)),
            None => return Err(no_tables()),
            Some(LookupState::Pending) => {}
        }
        e.indexer.wake.notify_one();
        if tokio::time::timeout_at(deadline, finished).await.is_err() {
            return Err(Error::Unavailable(
                "the blob's lookup tables are still being built (indexing)".into(),
            ));
        }
    }
}

/// A symbol's definitions and the referencing documents `skip..skip + take` in the blob
/// `mkey` names, with how many documents reference it in all; `None` when no document names
/// it.
fn symbol_in(
    t: &Tables,
    txn: &RoTxn<'_, WithoutTls>,
    mkey: &[u8; 40],
    symbol: &[u8],
    skip: usize,
    take: usize,
) -> Result<Option<(SymbolEntry, usize)>> {
    let docs = super::symbol_pages::naming(t, txn, mkey, symbol)?;
    if docs.is_empty() {
        return Ok(None);
    }
    let mut entry = SymbolEntry::default();
    for &(ordinal, _) in docs.iter().filter(|(_, f)| f & DEFINES != 0) {
        let (path, ds) = super::lookup_rows::occurrences_in(t, txn, mkey, ordinal, symbol)?;
        for r in ds.definitions {
            entry.definitions.push((path.clone(), r));
        }
    }
    let referencing = docs.iter().filter(|(_, f)| f & REFERENCES != 0);
    let total = referencing.clone().count();
    for &(ordinal, _) in referencing.skip(skip).take(take) {
        let (path, ds) = super::lookup_rows::occurrences_in(t, txn, mkey, ordinal, symbol)?;
        entry.references.push((path, ds.references));
    }
    Ok(Some((entry, total)))
}

/// Rows of `section` whose names start with `prefix`, after `after`, at most `limit`; and the
/// next page's token. Names keyed by their hash are left out.
fn list(
    t: &Tables,
    txn: &RoTxn<'_, WithoutTls>,
    mkey: &[u8; 40],
    section: u8,
    prefix: &str,
    after: &str,
    limit: usize,
) -> Result<Page<(String, Vec<u8>)>> {
    let limit = limit.clamp(1, MAX_PAGE);
    let start = blob_key(mkey, section, prefix.as_bytes());
    let from = blob_key(mkey, section, after.as_bytes());
    let end = prefix_end(&start);
    let lower = if after.is_empty() || from < start {
        Bound::Included(&start[..])
    } else {
        Bound::Excluded(&from[..])
    };
    let range = (lower, Bound::Excluded(&end[..]));
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    for item in t.lookups.raw.range(txn, &range)? {
        let (k, stored) = item?;
        if is_hashed(&k[41..]) {
            continue;
        }
        if out.len() == limit {
            let next = out.last().map(|(n, _)| n.clone()).unwrap_or_default();
            return Ok((out, next));
        }
        let v = unseal(t.lookups.kind, k, stored)?;
        let name = String::from_utf8_lossy(&k[41..]).into_owned();
        out.push((name, v.to_vec()));
    }
    Ok((out, String::new()))
}

/// Global symbols that start with `prefix`, after `after`, at most `limit`; and the next
/// page's token.
fn list_symbols(
    t: &Tables,
    txn: &RoTxn<'_, WithoutTls>,
    mkey: &[u8; 40],
    prefix: &str,
    after: &str,
    limit: usize,
) -> Result<Page<String>> {
    let limit = limit.clamp(1, MAX_PAGE);
    let (names, more) =
        super::symbol_pages::list(t, txn, mkey, prefix.as_bytes(), after.as_bytes(), limit)?;
    let next = if more {
        names.last().cloned().unwrap_or_default()
    } else {
        String::new()
    };
    Ok((names, next))
}
