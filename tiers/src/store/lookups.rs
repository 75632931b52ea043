//! Document and symbol lookups: each blob's tables, built after its commit, and the answers
//! read from them.
//!
//! # Building
//! The commit that first stores a manifest also writes its `lookup_state` row as *pending*, in
//! the same transaction (`ingest.rs`). The indexer task reads pending blobs through the read
//! pipeline (verified, versions restored, fastest tier first), feeds them to
//! [`TableBuilder`] on the blocking pool, writes the rows in transactions of a few MiB, and
//! then marks the state *ready* (or *not SCIP*, with the reason). A kill at any point leaves
//! the state pending, and the next start builds it again: rows are keyed by what they say, so
//! writing them twice is harmless.
//!
//! # Rows (`lookups`), keyed by tenant id (8), manifest id (32), a section byte, a name
//! - `d` + path → [`DocumentEntry`];
//! - `s` + symbol → [`SymbolEntry`].
//!
//! # Answering
//! A lookup on a pending blob waits up to [`PENDING_WAIT`] for the indexer, then answers
//! [`Error::Unavailable`] ("indexing, retry"). A blob with no state row was stored before
//! lookups existed, or its tables were lost: [`Error::NoLookups`] says to push it again, which
//! queues it. A document lookup reads only the chunks that hold the document, through the read
//! pipeline.
//!
//! GC drops a blob's rows with its manifest (`gc.rs`); `rebuild` queues every restored blob.

use std::ops::Bound;
use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use heed::{RoTxn, RwTxn, WithoutTls};
use tokio_util::sync::CancellationToken;

use super::refs::resolve_in;
use super::types::{BlobPart, ReadForm};
use super::{Engine, Store};
use crate::error::{Error, Result};
use crate::ids::ManifestId;
use crate::manifest::Manifest;
use crate::meta::{Tables, manifest_key};
use crate::names::{KeyPrefix, Namespace, RefKey, Tenant, TenantId};
use crate::refs::RefRecord;
use crate::scip::tables::{
    DocumentEntry, NotScip, SymbolEntry, TABLE_FORMAT, TableBuilder, Tables as Built,
};
use crate::sealed::unseal;

/// How long a lookup waits for the indexer before answering "indexing, retry".
pub const PENDING_WAIT: Duration = Duration::from_secs(2);
/// Bytes of a blob handed to the builder per blocking job.
const FEED_BATCH: usize = 4 << 20;
/// Bytes of rows per write transaction.
const WRITE_BATCH: usize = 4 << 20;
/// How often the indexer looks for pending blobs when nothing woke it.
const TICK: Duration = Duration::from_secs(30);
/// Most entries one listing page returns.
pub const MAX_PAGE: usize = 1000;

const SECTION_DOCUMENT: u8 = b'd';
const SECTION_SYMBOL: u8 = b's';
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

/// In GC's transaction: drops the state and rows of the blob `mkey` names.
pub(crate) fn drop_in_txn(t: &Tables, txn: &mut RwTxn<'_>, mkey: &[u8; 40]) -> Result<()> {
    t.lookup_state.delete(txn, mkey)?;
    let end = prefix_end(mkey);
    let range = (Bound::Included(&mkey[..]), Bound::Excluded(&end[..]));
    t.lookups.raw.delete_range(txn, &range)?;
    Ok(())
}

/// The first key after every key that starts with `prefix` (a 40-byte key is never all 0xff).
fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            break;
        }
    }
    end
}

fn row_key(mkey: &[u8; 40], section: u8, name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(41 + name.len());
    k.extend_from_slice(mkey);
    k.push(section);
    k.extend_from_slice(name);
    k
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
    let present = e
        .meta
        .read(move |t, txn| t.manifests.contains(txn, &mkey))
        .await?;
    if !present {
        // GC took the blob before its tables were built: nothing to build.
        return e.meta.write(move |t, txn| drop_in_txn(t, txn, &mkey)).await;
    }
    let manifest = super::refs::load_manifest(e, tid, id).await?;
    let started = std::time::Instant::now();
    let mut parts = super::read::scan_blob(e.clone(), tid, manifest);
    let mut builder = TableBuilder::new();
    let mut batch = BytesMut::new();
    let mut done = false;
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
        if batch.len() >= FEED_BATCH || (done && !batch.is_empty()) {
            let piece = std::mem::take(&mut batch).freeze();
            builder = crate::blocking::run(move || {
                builder.feed(&piece);
                Ok(builder)
            })
            .await?;
            if builder.has_failed() {
                break;
            }
        }
    }
    drop(parts);
    let built = crate::blocking::run(move || Ok(builder.finish())).await?;
    let state = match built {
        Ok(tables) => {
            let state = LookupState::Ready {
                documents: tables.documents.len() as u32,
                symbols: tables.symbols.len() as u32,
            };
            write_rows(e, mkey, tables).await?;
            state
        }
        Err(NotScip(why)) => LookupState::NotScip(why),
    };
    tracing::info!(
        manifest = %id,
        ms = started.elapsed().as_millis() as u64,
        state = ?state,
        "built a blob's lookup tables"
    );
    let encoded = state.encode();
    e.meta
        .write(move |t, txn| {
            // GC may have dropped the blob meanwhile: then its rows go too.
            if t.manifests.contains(txn, &mkey)? {
                t.lookup_state.put(txn, &mkey, &encoded)
            } else {
                drop_in_txn(t, txn, &mkey)
            }
        })
        .await?;
    e.indexer.finished.notify_waiters();
    Ok(())
}

/// Writes the rows of `tables` in transactions of about [`WRITE_BATCH`] bytes.
async fn write_rows(e: &Arc<Engine>, mkey: [u8; 40], tables: Built) -> Result<()> {
    let Built { documents, symbols } = tables;
    let rows = documents
        .into_iter()
        .map(|(path, d)| {
            (
                row_key(&mkey, SECTION_DOCUMENT, path.as_bytes()),
                d.encode(),
            )
        })
        .chain(
            symbols
                .into_iter()
                .map(|(s, entry)| (row_key(&mkey, SECTION_SYMBOL, s.as_bytes()), entry.encode())),
        );
    let mut batch = Vec::new();
    let mut bytes = 0;
    for row in rows.map(Some).chain(std::iter::once(None)) {
        if let Some((k, v)) = row {
            bytes += k.len() + v.len();
            batch.push((k, v));
            if bytes < WRITE_BATCH {
                continue;
            }
        }
        if batch.is_empty() {
            continue;
        }
        let work = std::mem::take(&mut batch);
        bytes = 0;
        e.meta
            .write(move |t, txn| {
                for (k, v) in &work {
                    t.lookups.put(txn, k, v)?;
                }
                Ok(())
            })
            .await?;
    }
    Ok(())
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
        .read(move |t, txn| {
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
            match t
                .lookups
                .get(txn, &row_key(mkey, SECTION_DOCUMENT, &name))?
            {
                Some(v) => DocumentEntry::decode(v)
                    .map(Some)
                    .ok_or_else(|| Error::Format("a document table row is unreadable".into())),
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
            match t.lookups.get(txn, &row_key(mkey, SECTION_SYMBOL, &name))? {
                Some(v) => SymbolEntry::decode_page(v, skip, take)
                    .map(Some)
                    .ok_or_else(|| Error::Format("a symbol table row is unreadable".into())),
                None => Ok(None),
            }
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
            let (rows, next) = list(t, txn, mkey, SECTION_DOCUMENT, &prefix, &after, limit)?;
            let docs = rows
                .into_iter()
                .map(|(name, v)| {
                    DocumentEntry::decode(&v)
                        .map(|d| (name, d))
                        .ok_or_else(|| Error::Format("a document table row is unreadable".into()))
                })
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
            let (rows, next) = list(t, txn, mkey, SECTION_SYMBOL, &prefix, &after, limit)?;
            Ok((rows.into_iter().map(|(name, _)| name).collect(), next))
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

/// Rows of `section` whose names start with `prefix`, after `after`, at most `limit`; and the
/// next page's token.
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
    let start = row_key(mkey, section, prefix.as_bytes());
    let from = row_key(mkey, section, after.as_bytes());
    let end = prefix_end(&start);
    let lower = if after.is_empty() || from < start {
        Bound::Included(&start[..])
    } else {
        Bound::Excluded(&from[..])
    };
    let range = (lower, Bound::Excluded(&end[..]));
    let mut out = Vec::new();
    for item in t.lookups.raw.range(txn, &range)? {
        let (k, stored) = item?;
        if out.len() == limit {
            let next = String::from_utf8_lossy(&out_last(&out)).into_owned();
            return Ok((out, next));
        }
        let v = unseal(t.lookups.kind, k, stored)?;
        let name = String::from_utf8_lossy(&k[41..]).into_owned();
        out.push((name, v.to_vec()));
    }
    Ok((out, String::new()))
}

fn out_last(out: &[(String, Vec<u8>)]) -> Vec<u8> {
    out.last()
        .map(|(n, _)| n.as_bytes().to_vec())
        .unwrap_or_default()
}
