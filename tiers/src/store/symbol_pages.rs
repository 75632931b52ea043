//! A blob's symbol index (which documents name each global symbol) as content-defined pages
//! shared across blobs, and the runs a large build writes before it pages them.
//!
//! # Pages
//! The index is the blob's global symbols in byte order, each with the ordinals of the
//! documents naming it and their flags. It is cut into pages before each symbol whose BLAKE3
//! starts below 1/[`PAGE_SYMBOLS`] of the range (about that many symbols per page), or once a
//! page passes [`MAX_PAGE_BYTES`]. Where pages start depends on the symbols' names alone, so a
//! commit that changes a few documents changes the pages of the symbols those documents name
//! and no others: the other pages are byte-identical to the previous blob's, and stored once.
//!
//! - Shared: tenant id (8), the page's hash (32), `P` → the page: for each symbol, its name
//!   (length, bytes), its count of documents, and per document the ordinal (LEB128, as the
//!   difference from the previous one) and a flags byte.
//! - Per blob: its `mkey`, `p`, the page's first symbol (empty for the first page) → the
//!   page's hash. A page starts only at a symbol of at most [`MAX_NAME_KEY`] bytes, so these
//!   keys fit LMDB; a symbol is on the page with the greatest first symbol not above it.
//!
//! A page names documents by the blob's ordinals: equal bytes mean equal answers for any blob
//! whose `o` rows map the ordinals, which is why a page can be shared.
//!
//! # Runs
//! A build whose gathered symbol state passes the bound writes it out as a run: rows of the
//! blob, section `s`, keyed by the symbol's name up to its first NUL and at most
//! [`MAX_NAME_KEY`] bytes, NUL, the run number and 8 bytes of the name's hash; the value holds
//! the full name when the key does not, and the documents. One scan in key order meets each
//! symbol's rows together and in run order (names that share a key prefix are sorted in
//! memory as they pass), which is what paging needs; the runs are dropped once paged.

use std::ops::Bound;

use heed::{RoTxn, WithoutTls};

use super::lookup_rows::{
    MAX_NAME_KEY, PAGE, Row, SHARED_PAGE, prefix_end, shared_key, shared_prefix,
};
use crate::error::{Error, Result};
use crate::meta::Tables;
use crate::names::TenantId;
use crate::sealed::unseal;

/// About how many symbols a page holds.
pub(super) const PAGE_SYMBOLS: u32 = 64;
/// A page past this many bytes ends at the next symbol that may start one.
pub(super) const MAX_PAGE_BYTES: usize = 64 << 10;
/// Per blob, while a large build runs: a run's rows.
pub(super) const RUN: u8 = b's';

/// Documents naming one symbol: ordinal and flags, ordinals rising.
pub(super) type Naming = Vec<(u32, u8)>;

fn unreadable() -> Error {
    Error::Format("a symbol page of the lookup tables is unreadable".into())
}

/// Whether a page starts at `symbol` by its hash.
fn starts_page(symbol: &[u8]) -> bool {
    let h = blake3::hash(symbol);
    let top = u32::from(u16::from_le_bytes([h.as_bytes()[0], h.as_bytes()[1]]));
    top < (1 << 16) / PAGE_SYMBOLS
}

fn put_varint(out: &mut Vec<u8>, v: u64) {
    prost::encoding::encode_varint(v, out);
}

fn encode_naming(out: &mut Vec<u8>, docs: &[(u32, u8)]) {
    put_varint(out, docs.len() as u64);
    let mut last = 0u32;
    for &(ordinal, flags) in docs {
        put_varint(out, u64::from(ordinal.saturating_sub(last)));
        out.push(flags);
        last = ordinal;
    }
}

fn get_count(r: &mut &[u8]) -> Result<usize> {
    let n = prost::encoding::decode_varint(r).map_err(|_| unreadable())?;
    let n = usize::try_from(n).map_err(|_| unreadable())?;
    (n <= r.len()).then_some(n).ok_or_else(unreadable)
}

fn decode_naming(r: &mut &[u8]) -> Result<Naming> {
    let n = get_count(r)?;
    let mut out = Vec::with_capacity(n);
    let mut ordinal = 0u32;
    for _ in 0..n {
        let delta = prost::encoding::decode_varint(r).map_err(|_| unreadable())?;
        ordinal = u32::try_from(u64::from(ordinal) + delta).map_err(|_| unreadable())?;
        let (&flags, rest) = r.split_first().ok_or_else(unreadable)?;
        *r = rest;
        out.push((ordinal, flags));
    }
    Ok(out)
}

/// Calls `f` with each symbol of `page` (its name) and the rest of its entry, in order, until
/// `f` says stop.
fn each_entry(page: &[u8], mut f: impl FnMut(&[u8], &mut &[u8]) -> Result<bool>) -> Result<()> {
    let mut r = page;
    while !r.is_empty() {
        let n = get_count(&mut r)?;
        let (name, rest) = r.split_at(n);
        r = rest;
        if !f(name, &mut r)? {
            return Ok(());
        }
    }
    Ok(())
}

/// Writes a blob's symbols, in order, as pages.
#[derive(Debug)]
pub(super) struct PageWriter {
    mkey: [u8; 40],
    tid: TenantId,
    page: Vec<u8>,
    first: Vec<u8>,
    in_page: u32,
    started: bool,
    /// Symbols written.
    pub(super) symbols: u32,
    /// `p` rows not yet taken.
    own: Vec<Row>,
    /// `P` rows not yet taken (written unless present).
    shared: Vec<Row>,
}

impl PageWriter {
    pub(super) fn new(mkey: [u8; 40], tid: TenantId) -> Self {
        Self {
            mkey,
            tid,
            page: Vec::new(),
            first: Vec::new(),
            in_page: 0,
            started: false,
            symbols: 0,
            own: Vec::new(),
            shared: Vec::new(),
        }
    }

    /// Adds the next symbol (names must come in byte order) and the documents naming it.
    pub(super) fn push(&mut self, symbol: &[u8], docs: &[(u32, u8)]) {
        let may_start = symbol.len() <= MAX_NAME_KEY;
        if self.in_page > 0
            && may_start
            && (self.page.len() >= MAX_PAGE_BYTES || starts_page(symbol))
        {
            self.seal();
        }
        if self.in_page == 0 {
            // The first page is found from the empty name: every symbol sorts after it.
            self.first = if self.started {
                symbol.to_vec()
            } else {
                Vec::new()
            };
            self.started = true;
        }
        put_varint(&mut self.page, symbol.len() as u64);
        self.page.extend_from_slice(symbol);
        encode_naming(&mut self.page, docs);
        self.in_page += 1;
        self.symbols += 1;
    }

    fn seal(&mut self) {
        if self.in_page == 0 {
            return;
        }
        let page = std::mem::take(&mut self.page);
        let mut h =
            blake3::Hasher::new_derive_key("scipcache 2026-12 lookup tables: a symbol page, v2");
        h.update(&page);
        let hash = *h.finalize().as_bytes();
        let mut own = self.mkey.to_vec();
        own.push(PAGE);
        own.extend_from_slice(&self.first);
        self.own.push((own, hash.to_vec()));
        let prefix = shared_prefix(self.tid, &hash);
        self.shared
            .push((shared_key(&prefix, SHARED_PAGE, &[]), page));
        self.in_page = 0;
    }

    /// The rows of the pages sealed so far: the blob's own, and the shared ones.
    pub(super) fn take(&mut self) -> (Vec<Row>, Vec<Row>) {
        (
            std::mem::take(&mut self.own),
            std::mem::take(&mut self.shared),
        )
    }

    /// Seals the last page; the rows not yet taken.
    pub(super) fn finish(&mut self) -> (Vec<Row>, Vec<Row>) {
        self.seal();
        self.take()
    }
}

/// The key of the page directory row at or before `symbol` would be searched from.
fn directory_key(mkey: &[u8; 40], name: &[u8]) -> Vec<u8> {
    let mut k = mkey.to_vec();
    k.push(PAGE);
    // A directory key is at most MAX_NAME_KEY bytes: the greatest one not above the name is
    // the greatest one not above its first MAX_NAME_KEY bytes.
    k.extend_from_slice(&name[..name.len().min(MAX_NAME_KEY)]);
    k
}

/// The page that holds `symbol` if any symbol does: its directory key and bytes.
fn page_at<'t>(
    t: &Tables,
    txn: &'t RoTxn<'_, WithoutTls>,
    mkey: &[u8; 40],
    symbol: &[u8],
) -> Result<Option<(Vec<u8>, &'t [u8])>> {
    let start = directory_key(mkey, b"");
    let at = directory_key(mkey, symbol);
    let range = (Bound::Included(&start[..]), Bound::Included(&at[..]));
    let Some(item) = t.lookups.raw.rev_range(txn, &range)?.next() else {
        return Ok(None);
    };
    let (k, stored) = item?;
    let hash: [u8; 32] = unseal(t.lookups.kind, k, stored)?
        .try_into()
        .map_err(|_| unreadable())?;
    Ok(Some((k.to_vec(), page_bytes(t, txn, mkey, &hash)?)))
}

fn page_bytes<'t>(
    t: &Tables,
    txn: &'t RoTxn<'_, WithoutTls>,
    mkey: &[u8; 40],
    hash: &[u8; 32],
) -> Result<&'t [u8]> {
    let mut tid = [0u8; 8];
    tid.copy_from_slice(&mkey[..8]);
    let prefix = shared_prefix(TenantId(tid), hash);
    t.lookups
        .get(txn, &shared_key(&prefix, SHARED_PAGE, &[]))?
        .ok_or_else(|| {
            Error::MetadataLoss(
                "the blob's lookup tables lack a symbol page; push the blob again to rebuild them"
                    .into(),
            )
        })
}

/// Every document naming `symbol` in the blob `mkey` names, in index order, with its flags.
pub(super) fn naming(
    t: &Tables,
    txn: &RoTxn<'_, WithoutTls>,
    mkey: &[u8; 40],
    symbol: &[u8],
) -> Result<Naming> {
    let Some((_, page)) = page_at(t, txn, mkey, symbol)? else {
        return Ok(Vec::new());
    };
    let mut found = Vec::new();
    each_entry(page, |name, r| {
        if name == symbol {
            found = decode_naming(r)?;
            return Ok(false);
        }
        decode_naming(r)?;
        Ok(name < symbol)
    })?;
    Ok(found)
}

/// Up to `limit` symbols that start with `prefix` and sort after `after` (empty: from the
/// first), in order; and whether more follow.
pub(super) fn list(
    t: &Tables,
    txn: &RoTxn<'_, WithoutTls>,
    mkey: &[u8; 40],
    prefix: &[u8],
    after: &[u8],
    limit: usize,
) -> Result<(Vec<String>, bool)> {
    let from = prefix.max(after);
    let Some((first_page, _)) = page_at(t, txn, mkey, from)? else {
        return Ok((Vec::new(), false));
    };
    let end = prefix_end(&directory_key(mkey, b""));
    let range = (Bound::Included(&first_page[..]), Bound::Excluded(&end[..]));
    let mut out = Vec::new();
    let mut more = false;
    for item in t.lookups.raw.range(txn, &range)? {
        let (k, stored) = item?;
        let hash: [u8; 32] = unseal(t.lookups.kind, k, stored)?
            .try_into()
            .map_err(|_| unreadable())?;
        let page = page_bytes(t, txn, mkey, &hash)?;
        let mut done = false;
        each_entry(page, |name, r| {
            decode_naming(r)?;
            if !after.is_empty() && name <= after || name < prefix {
                return Ok(true);
            }
            if !name.starts_with(prefix) {
                done = true;
                return Ok(false);
            }
            if out.len() == limit {
                more = true;
                done = true;
                return Ok(false);
            }
            out.push(String::from_utf8_lossy(name).into_owned());
            Ok(true)
        })?;
        if done {
            break;
        }
    }
    Ok((out, more))
}

/// The part of a name a run row's key holds: up to its first NUL, at most [`MAX_NAME_KEY`]
/// bytes.
fn run_name(name: &[u8]) -> &[u8] {
    let end = memchr::memchr(0, name).unwrap_or(name.len());
    &name[..end.min(MAX_NAME_KEY)]
}

/// The rows of run `run`: `(symbol, documents)` in symbol order.
pub(super) fn run_rows(mkey: &[u8; 40], run: u32, symbols: &[(String, Naming)]) -> Vec<Row> {
    symbols
        .iter()
        .map(|(symbol, docs)| {
            let name = symbol.as_bytes();
            let keyed = run_name(name);
            let mut k = mkey.to_vec();
            k.push(RUN);
            k.extend_from_slice(keyed);
            k.push(0);
            k.extend_from_slice(&run.to_be_bytes());
            k.extend_from_slice(&blake3::hash(name).as_bytes()[..8]);
            let mut v = Vec::with_capacity(docs.len() * 2 + 2);
            if keyed.len() == name.len() {
                v.push(0);
            } else {
                v.push(1);
                put_varint(&mut v, name.len() as u64);
                v.extend_from_slice(name);
            }
            encode_naming(&mut v, docs);
            (k, v)
        })
        .collect()
}

/// One run row read back: the key's name part, the full name, the documents.
pub(super) type RunRow = (Vec<u8>, Vec<u8>, Naming);

/// Up to `n` run rows of the blob after the key `after` (`None`: from the first), in key
/// order, and the last key read.
pub(super) fn read_runs(
    t: &Tables,
    txn: &RoTxn<'_, WithoutTls>,
    mkey: &[u8; 40],
    after: Option<&[u8]>,
    n: usize,
) -> Result<(Vec<RunRow>, Option<Vec<u8>>)> {
    let mut start = mkey.to_vec();
    start.push(RUN);
    let end = prefix_end(&start);
    let lower = match after {
        Some(k) => Bound::Excluded(k),
        None => Bound::Included(&start[..]),
    };
    let mut out = Vec::new();
    let mut last = None;
    for item in t
        .lookups
        .raw
        .range(txn, &(lower, Bound::Excluded(&end[..])))?
        .take(n)
    {
        let (k, stored) = item?;
        let mut v = unseal(t.lookups.kind, k, stored)?;
        // mkey, section, name, NUL, run (4), hash (8).
        let keyed = k
            .get(41..k.len().saturating_sub(13))
            .ok_or_else(unreadable)?;
        let (&flag, rest) = v.split_first().ok_or_else(unreadable)?;
        v = rest;
        let name = if flag == 1 {
            let n = get_count(&mut v)?;
            let (name, rest) = v.split_at(n);
            v = rest;
            name.to_vec()
        } else {
            keyed.to_vec()
        };
        out.push((keyed.to_vec(), name, decode_naming(&mut v)?));
        last = Some(k.to_vec());
    }
    Ok((out, last))
}

/// Joins run rows, met in key order, into symbols in name order for a [`PageWriter`]: rows
/// whose key holds the same name part are held until the part changes, then sorted by full
/// name (stable, so each symbol's runs stay in order) and joined.
#[derive(Debug, Default)]
pub(super) struct RunMerge {
    group: Vec<RunRow>,
}

impl RunMerge {
    /// Takes the next row; writes the symbols it completes.
    pub(super) fn push(&mut self, row: RunRow, pages: &mut PageWriter) {
        if self.group.first().is_some_and(|g| g.0 != row.0) {
            self.flush(pages);
        }
        self.group.push(row);
    }

    /// Writes what is held.
    pub(super) fn flush(&mut self, pages: &mut PageWriter) {
        let mut group = std::mem::take(&mut self.group);
        group.sort_by(|a, b| a.1.cmp(&b.1));
        let mut rows = group.into_iter().peekable();
        while let Some((_, name, mut docs)) = rows.next() {
            while let Some((_, _, more)) = rows.next_if(|r| r.1 == name) {
                docs.extend(more);
            }
            pages.push(&name, &docs);
        }
    }
}

/// In a write transaction: drops the runs of the blob `mkey` names.
pub(super) fn drop_runs(t: &Tables, txn: &mut heed::RwTxn<'_>, mkey: &[u8; 40]) -> Result<()> {
    let mut start = mkey.to_vec();
    start.push(RUN);
    let end = prefix_end(&start);
    t.lookups.raw.delete_range(
        txn,
        &(Bound::Included(&start[..]), Bound::Excluded(&end[..])),
    )?;
    Ok(())
}
