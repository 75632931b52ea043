//! The rows of the lookup tables (the `lookups` database): their keys, their encodings, and
//! writing what the [`TableBuilder`](crate::scip::tables::TableBuilder) read.
//!
//! # Shared rows, per document content: tenant id (8), [`document_hash`] (32), section, name
//! - `S` + the first 16 bytes of the symbol's BLAKE3 → [`DocSymbol`], the symbol's occurrences
//!   in that document;
//! - `H` → nothing: the document's rows are complete. It is written in the transaction that
//!   writes its `S` rows, and a document already marked is not written again, so the blobs
//!   of consecutive commits share the rows of every document they hold unchanged (most of
//!   them, for an index of a commit that touched a few files).
//!
//! # Per-blob rows: tenant id (8), manifest id (32), section, name
//! - `d` + path → [`DocRow`]: the document's hash, its byte range in the blob and its summary
//!   (a path the index names twice keeps its first document);
//! - `o` + ordinal (`u32` big-endian; documents in index order) → document hash and path;
//! - `p` + a symbol → the hash of a page of the blob's symbol index, shared
//!   (`symbol_pages.rs`, which also has the runs a large build writes first).
//!
//! The builder gathers which documents name each symbol in a *run* and writes the run out
//! whenever it holds more than [`lookup_run_bytes`](super::StoreConfig::lookup_run_bytes) (and
//! at the end), so building needs about that much memory plus one document, whatever the size
//! of the index; the runs are then joined into pages in one scan. A small index is one run,
//! paged at once.
//!
//! A path longer than [`MAX_NAME_KEY`] bytes, or holding a NUL byte, is keyed by `ff ff` and
//! the hex of its BLAKE3 (LMDB keys hold at most 511 bytes): an exact lookup finds it, a
//! listing by prefix does not show it (no UTF-8 text starts with `ff`). Symbols of any length
//! are held in pages, so they are found and listed alike.

use std::borrow::Cow;
use std::collections::HashSet;
use std::ops::Bound;

use heed::{RoTxn, RwTxn, WithoutTls};

use crate::error::{Error, Result};
use crate::meta::Tables;
use crate::names::TenantId;
use crate::scip::tables::{DocSymbol, DocumentEntry, IndexedDocument};
use crate::sealed::unseal;

/// Longest name kept as itself in a key.
pub(super) const MAX_NAME_KEY: usize = 400;

pub(super) const DOCUMENT: u8 = b'd';
pub(super) const ORDINAL: u8 = b'o';
/// Per blob: the first symbol of a page of its symbol index → the page's hash.
pub(super) const PAGE: u8 = b'p';
/// Shared: a symbol page's bytes.
pub(super) const SHARED_PAGE: u8 = b'P';
const SHARED_SYMBOL: u8 = b'S';
const SHARED_DONE: u8 = b'H';
/// The sections of shared rows.
const SHARED: [u8; 3] = [SHARED_SYMBOL, SHARED_DONE, SHARED_PAGE];

/// A name as its keys hold it.
pub(super) fn name_key(name: &[u8]) -> Cow<'_, [u8]> {
    if name.len() <= MAX_NAME_KEY && !name.contains(&0) {
        return Cow::Borrowed(name);
    }
    let mut k = vec![0xff, 0xff];
    k.extend_from_slice(blake3::hash(name).to_hex().as_bytes());
    Cow::Owned(k)
}

/// Whether a name read back from a key is a hashed one, which listings leave out.
pub(super) fn is_hashed(key_name: &[u8]) -> bool {
    key_name.first() == Some(&0xff)
}

/// A per-blob row's key: the blob's `mkey`, the section, the name as keys hold it.
pub(super) fn blob_key(mkey: &[u8; 40], section: u8, name: &[u8]) -> Vec<u8> {
    let name = name_key(name);
    let mut k = Vec::with_capacity(41 + name.len());
    k.extend_from_slice(mkey);
    k.push(section);
    k.extend_from_slice(&name);
    k
}

fn ordinal_key(mkey: &[u8; 40], ordinal: u32) -> Vec<u8> {
    let mut k = Vec::with_capacity(45);
    k.extend_from_slice(mkey);
    k.push(ORDINAL);
    k.extend_from_slice(&ordinal.to_be_bytes());
    k
}

/// The first 40 bytes of a document's shared rows.
pub(super) fn shared_prefix(tid: TenantId, hash: &[u8; 32]) -> [u8; 40] {
    let mut k = [0u8; 40];
    k[..8].copy_from_slice(&tid.0);
    k[8..].copy_from_slice(hash);
    k
}

pub(super) fn shared_key(prefix: &[u8; 40], section: u8, name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(41 + name.len());
    k.extend_from_slice(prefix);
    k.push(section);
    k.extend_from_slice(name);
    k
}

fn symbol_tag(symbol: &[u8]) -> [u8; 16] {
    let mut tag = [0u8; 16];
    tag.copy_from_slice(&blake3::hash(symbol).as_bytes()[..16]);
    tag
}

/// A `d` row: the document's hash, then its [`DocumentEntry`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct DocRow {
    pub(super) hash: [u8; 32],
    pub(super) entry: DocumentEntry,
}

impl DocRow {
    fn encode(&self) -> Vec<u8> {
        let mut out = self.hash.to_vec();
        out.extend(self.entry.encode());
        out
    }

    pub(super) fn decode(b: &[u8]) -> Result<Self> {
        let bad = || Error::Format("a document table row is unreadable".into());
        let hash = b.get(..32).ok_or_else(bad)?.try_into().map_err(|_| bad())?;
        let entry = DocumentEntry::decode(&b[32..]).ok_or_else(bad)?;
        Ok(Self { hash, entry })
    }
}

fn lost(what: &str) -> Error {
    Error::MetadataLoss(format!(
        "the blob's lookup tables lack {what}; push the blob again to rebuild them"
    ))
}

/// A row: key and value.
pub(super) type Row = (Vec<u8>, Vec<u8>);

/// Rows ready to write for one step of a build.
#[derive(Debug, Default)]
pub(super) struct Prepared {
    /// `d` rows, written unless the path has one (its first document keeps it).
    first: Vec<Row>,
    /// Rows written as they are.
    rows: Vec<Row>,
    /// Shared rows named by their content, written unless present.
    once: Vec<Row>,
    /// Each document's shared rows, written unless its `H` row exists.
    shared: Vec<([u8; 40], Vec<Row>)>,
}

impl Prepared {
    /// The rows of `docs`.
    pub(super) fn documents(mkey: &[u8; 40], tid: TenantId, docs: Vec<IndexedDocument>) -> Self {
        let mut out = Self::default();
        let mut seen: HashSet<[u8; 32]> = HashSet::new();
        for d in docs {
            let row = DocRow {
                hash: d.hash,
                entry: d.entry,
            };
            out.first
                .push((blob_key(mkey, DOCUMENT, d.path.as_bytes()), row.encode()));
            let mut named = d.hash.to_vec();
            named.extend_from_slice(d.path.as_bytes());
            out.rows.push((ordinal_key(mkey, d.ordinal), named));
            if !seen.insert(d.hash) {
                continue;
            }
            let prefix = shared_prefix(tid, &d.hash);
            let mut shared: Vec<Row> = d
                .symbols
                .iter()
                .map(|(symbol, ds)| {
                    let k = shared_key(&prefix, SHARED_SYMBOL, &symbol_tag(symbol.as_bytes()));
                    (k, ds.encode())
                })
                .collect();
            shared.push((shared_key(&prefix, SHARED_DONE, &[]), Vec::new()));
            out.shared.push((prefix, shared));
        }
        out
    }

    /// Adds rows written as they are.
    pub(super) fn add_rows(&mut self, rows: Vec<Row>) {
        self.rows.extend(rows);
    }

    /// Adds shared rows named by their content (written unless present).
    pub(super) fn add_once(&mut self, rows: Vec<Row>) {
        self.once.extend(rows);
    }

    /// Writes the rows in `txn`; how many `d` rows were new.
    pub(super) fn write(self, t: &Tables, txn: &mut RwTxn<'_>) -> Result<u32> {
        let mut new = 0;
        for (k, v) in &self.first {
            if t.lookups.get(txn, k)?.is_none() {
                t.lookups.put(txn, k, v)?;
                new += 1;
            }
        }
        for (k, v) in &self.rows {
            t.lookups.put(txn, k, v)?;
        }
        for (k, v) in &self.once {
            if t.lookups.get(txn, k)?.is_none() {
                t.lookups.put(txn, k, v)?;
            }
        }
        for (prefix, rows) in &self.shared {
            if t.lookups
                .get(txn, &shared_key(prefix, SHARED_DONE, &[]))?
                .is_some()
            {
                continue;
            }
            for (k, v) in rows {
                t.lookups.put(txn, k, v)?;
            }
        }
        Ok(new)
    }
}

/// In a write transaction: drops every row under the 40-byte `prefix` (a blob's own rows, or
/// a document's shared rows).
pub(super) fn drop_rows(t: &Tables, txn: &mut RwTxn<'_>, prefix: &[u8; 40]) -> Result<()> {
    let end = prefix_end(prefix);
    let range = (Bound::Included(&prefix[..]), Bound::Excluded(&end[..]));
    t.lookups.raw.delete_range(txn, &range)?;
    Ok(())
}

/// The first key after every key that starts with `prefix` (a 40-byte key is never all 0xff).
pub(super) fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            break;
        }
    }
    end
}

/// The path of the blob's document `ordinal` and `symbol`'s occurrences in it.
pub(super) fn occurrences_in(
    t: &Tables,
    txn: &RoTxn<'_, WithoutTls>,
    mkey: &[u8; 40],
    ordinal: u32,
    symbol: &[u8],
) -> Result<(String, DocSymbol)> {
    let named = t
        .lookups
        .get(txn, &ordinal_key(mkey, ordinal))?
        .ok_or_else(|| lost(&format!("document number {ordinal}")))?;
    if named.len() < 32 {
        return Err(Error::Format("a document table row is unreadable".into()));
    }
    let (hash, path) = named.split_at(32);
    let hash: [u8; 32] = hash
        .try_into()
        .map_err(|_| Error::Format("a document table row is unreadable".into()))?;
    let path = String::from_utf8_lossy(path).into_owned();
    let mut tid = [0u8; 8];
    tid.copy_from_slice(&mkey[..8]);
    let prefix = shared_prefix(TenantId(tid), &hash);
    let ds = t
        .lookups
        .get(
            txn,
            &shared_key(&prefix, SHARED_SYMBOL, &symbol_tag(symbol)),
        )?
        .ok_or_else(|| lost(&format!("the occurrences in {path}")))?;
    let ds = DocSymbol::decode(ds)
        .ok_or_else(|| Error::Format("a document's symbol row is unreadable".into()))?;
    Ok((path, ds))
}

/// The shared rows (of documents and of symbol pages) that no blob of the key range `scope`
/// holds: their 40-byte prefixes.
pub(super) fn unheld_documents(
    t: &Tables,
    txn: &RoTxn<'_, WithoutTls>,
    scope: &[u8],
) -> Result<Vec<[u8; 40]>> {
    let rows = || crate::meta::raw_prefix_iter(&t.lookups.raw, txn, scope);
    let mut held: HashSet<[u8; 40]> = HashSet::new();
    for item in rows()? {
        let (k, stored) = item?;
        if k.get(40) != Some(&ORDINAL) && k.get(40) != Some(&PAGE) {
            continue;
        }
        let v = unseal(t.lookups.kind, k, stored)?;
        if let (Ok(tid), Some(hash)) = (<[u8; 8]>::try_from(&k[..8]), v.get(..32)) {
            let mut p = [0u8; 40];
            p[..8].copy_from_slice(&tid);
            p[8..].copy_from_slice(hash);
            held.insert(p);
        }
    }
    let mut out: Vec<[u8; 40]> = Vec::new();
    for item in rows()? {
        let (k, _) = item?;
        if !k.get(40).is_some_and(|s| SHARED.contains(s)) {
            continue;
        }
        let Ok(p) = <[u8; 40]>::try_from(&k[..40]) else {
            continue;
        };
        if !held.contains(&p) && out.last() != Some(&p) {
            out.push(p);
        }
    }
    Ok(out)
}

/// What the lookup tables take, as key and value bytes of their rows (LMDB adds its own page
/// overhead on top).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TableSizes {
    /// Blobs with rows of their own.
    pub blobs: u64,
    /// Rows of blobs' own (`d`, `o`, `s`) and their bytes.
    pub blob_rows: u64,
    /// Their bytes.
    pub blob_bytes: u64,
    /// Documents with shared rows.
    pub documents: u64,
    /// Symbol pages.
    pub pages: u64,
    /// Shared rows (`S`, `H`, `P`).
    pub shared_rows: u64,
    /// Their bytes.
    pub shared_bytes: u64,
    /// The bytes the shared rows would take if every blob kept its own copy of its documents'.
    pub unshared_bytes: u64,
}

/// The [`TableSizes`] of every tenant's tables.
pub(super) fn sizes(t: &Tables, txn: &RoTxn<'_, WithoutTls>) -> Result<TableSizes> {
    let mut out = TableSizes::default();
    let mut per_document: std::collections::HashMap<[u8; 40], u64> = Default::default();
    let mut holders: std::collections::HashMap<[u8; 40], u64> = Default::default();
    let mut last_blob: Option<[u8; 40]> = None;
    for item in t.lookups.raw.iter(txn)? {
        let (k, stored) = item?;
        let (Some(&section), Ok(prefix)) = (k.get(40), <[u8; 40]>::try_from(&k[..40.min(k.len())]))
        else {
            continue;
        };
        let bytes = (k.len() + stored.len()) as u64;
        if SHARED.contains(&section) {
            out.pages += u64::from(section == SHARED_PAGE);
            out.shared_rows += 1;
            out.shared_bytes += bytes;
            *per_document.entry(prefix).or_default() += bytes;
            continue;
        }
        out.blob_rows += 1;
        out.blob_bytes += bytes;
        if last_blob != Some(prefix) {
            out.blobs += 1;
            last_blob = Some(prefix);
        }
        if section == ORDINAL || section == PAGE {
            let v = unseal(t.lookups.kind, k, stored)?;
            if let Some(hash) = v.get(..32) {
                let mut p = [0u8; 40];
                p[..8].copy_from_slice(&k[..8]);
                p[8..].copy_from_slice(hash);
                *holders.entry(p).or_default() += 1;
            }
        }
    }
    out.documents = per_document.len() as u64 - out.pages;
    out.unshared_bytes = holders
        .iter()
        .map(|(p, n)| per_document.get(p).copied().unwrap_or(0) * n)
        .sum();
    Ok(out)
}
