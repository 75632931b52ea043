//! The walk of the whole index that runs before a daemon serves.
//!
//! LMDB keeps no page checksums, and it follows page numbers and node offsets it reads from
//! the map: random bytes in a branch or leaf page can send it outside the map (SIGSEGV) or
//! past the end of the file (SIGBUS). [`walk`] therefore runs in a **child process** (the
//! daemon's hidden `check-index` subcommand), which opens the environment read-only and
//! iterates every table with cursors, so that every branch and leaf page is visited:
//!
//! - every key and value must lie inside the mapped file (checked on the addresses, from
//!   `/proc/self/maps`, without touching the bytes);
//! - keys of the chunk-keyed tables are 40 bytes, of `manifests` 40;
//! - every sealed record (`chunks`, `warm`, `cold`, `manifests`, `refs`; `sealed.rs`) must
//!   match its checksum (data dirs of format 3 and later);
//! - values of `hot` (chunk frames, checked by their own checksum when read) are not read,
//!   only their length is checked against the largest frame.
//!
//! If the walk finds damage, or the child dies of a signal, the daemon refuses to start and
//! names `scipcached rebuild`. The walk reads no chunk bytes: at a million chunks it takes a
//! fraction of a second (`bench`, `index_walk`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use heed::types::Bytes as RawBytes;
use heed::{CommitOrAbort, EnvFlags, EnvOpenOptions};

use crate::codec::MAX_CHUNK_LEN;
use crate::error::{Error, Result};
use crate::lmdb_file::{self, DATA_FILE};
use crate::meta::{TABLE_NAMES, Table};
use crate::sealed::{Kind, unseal};
use crate::version::{SEALED_FORMAT, UNSTAMPED_FORMAT, stored_format};

/// Largest hot value the walk accepts: the largest chunk, stored uncompressed, and a header.
const MAX_HOT_VALUE: usize = MAX_CHUNK_LEN + 64;

/// What the walk found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexReport {
    /// Records per table, in the order of the tables.
    pub tables: Vec<(String, u64)>,
    /// Whether the records carry checksums (format 3 and later) and were checked.
    pub sealed: bool,
    /// How long the walk took.
    pub elapsed: Duration,
}

impl IndexReport {
    /// Records in every table.
    pub fn records(&self) -> u64 {
        self.tables.iter().map(|(_, n)| n).sum()
    }
}

/// The sealed kind of a table, by name.
fn sealed_kind(table: &str) -> Option<Kind> {
    [
        Kind::ChunkInfo,
        Kind::WarmLocation,
        Kind::ColdLocation,
        Kind::Manifest,
        Kind::Ref,
    ]
    .into_iter()
    .find(|k| k.table() == table)
}

/// The address range the data file is mapped at, from `/proc/self/maps` (None where that
/// cannot be read: the address check is then skipped).
fn mapped_range(file: &Path) -> Option<(usize, usize)> {
    let file = std::fs::canonicalize(file).ok()?;
    let file = file.to_str()?;
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    let mut range: Option<(usize, usize)> = None;
    for line in maps.lines() {
        if !line.ends_with(file) {
            continue;
        }
        let (addrs, _) = line.split_once(' ')?;
        let (from, to) = addrs.split_once('-')?;
        let from = usize::from_str_radix(from, 16).ok()?;
        let to = usize::from_str_radix(to, 16).ok()?;
        range = Some(match range {
            Some((a, b)) => (a.min(from), b.max(to)),
            None => (from, to),
        });
    }
    range
}

/// Walks every table of the index in `data_dir` (see the module docs). A data dir without an
/// index yet passes with an empty report.
pub fn walk(data_dir: &Path) -> Result<IndexReport> {
    let started = Instant::now();
    let dir = data_dir.join("meta");
    let path = dir.join(DATA_FILE);
    let damaged = |detail: String| Error::IndexDamaged {
        path: path.display().to_string(),
        detail,
    };
    let Some(meta) = lmdb_file::check(&dir)? else {
        return Ok(IndexReport::default());
    };
    let file_len = std::fs::metadata(&path)
        .map_err(|e| Error::io(format!("reading the size of {}", path.display()), e))?
        .len();
    let map_size = usize::try_from(meta.map_size.max(file_len))
        .map_err(|_| damaged(format!("its map size {} does not fit", meta.map_size)))?;
    let mut options = EnvOpenOptions::new().read_txn_without_tls();
    options.map_size(map_size).max_dbs(16).max_readers(1024);
    // SAFETY: `flags` is unsafe because some flags change LMDB's durability guarantees;
    // READ_ONLY only forbids writes. `open` requires that the environment is opened once per
    // process and not changed by other means meanwhile: this is a child process that opens
    // it once, read-only, and exits; the daemon that spawned it has not opened it yet.
    #[allow(unsafe_code)]
    let env = unsafe {
        options.flags(EnvFlags::READ_ONLY);
        options.open(&dir)
    }
    .map_err(|e| damaged(format!("LMDB cannot open it: {e}")))?;
    let bounds = mapped_range(&path).map(|(from, to)| {
        let end = from.saturating_add(usize::try_from(file_len).unwrap_or(usize::MAX));
        (from, end.min(to))
    });
    let inside = |b: &[u8]| match bounds {
        Some((from, to)) => {
            let at = b.as_ptr() as usize;
            b.is_empty() || (at >= from && at.saturating_add(b.len()) <= to)
        }
        None => true,
    };
    let opening = env
        .read_txn()
        .map_err(|e| damaged(format!("LMDB cannot read it: {e}")))?;
    let opened: [Option<Table>; TABLE_NAMES.len()] = env
        .open_databases_and_commit(opening, |opener, txn| -> Result<_> {
            let mut out = Vec::with_capacity(TABLE_NAMES.len());
            for name in TABLE_NAMES {
                out.push(
                    opener
                        .open_database::<RawBytes, RawBytes>(txn, Some(name))
                        .map_err(|e| damaged(format!("table {name} cannot be opened: {e}")))?,
                );
            }
            let array: [Option<_>; TABLE_NAMES.len()] = out
                .try_into()
                .map_err(|_| Error::Format("table count".into()))?;
            Ok(CommitOrAbort::<_, ()>::Commit(array))
        })?
        .unwrap_commit();
    let tables: Vec<(&str, Table)> = TABLE_NAMES
        .into_iter()
        .zip(opened)
        .filter_map(|(name, table)| table.map(|t| (name, t)))
        .collect();
    let txn = env
        .read_txn()
        .map_err(|e| damaged(format!("LMDB cannot read it: {e}")))?;
    let format = match tables.iter().find(|(n, _)| *n == "state") {
        Some((_, state)) => stored_format(*state, &txn, &dir)?,
        None => None,
    };
    let sealed = format.unwrap_or(UNSTAMPED_FORMAT) >= SEALED_FORMAT;
    let mut report = IndexReport {
        sealed,
        ..IndexReport::default()
    };
    for (name, table) in tables {
        let kind = sealed_kind(name).filter(|_| sealed);
        let keyed_by_chunk = matches!(name, "chunks" | "hot" | "warm" | "cold" | "manifests");
        let mut count = 0u64;
        let iter = table
            .iter(&txn)
            .map_err(|e| damaged(format!("table {name}: {e}")))?;
        for item in iter {
            let (k, v) =
                item.map_err(|e| damaged(format!("table {name}, after {count} records: {e}")))?;
            if !inside(k) || !inside(v) {
                return Err(damaged(format!(
                    "table {name}, record {count}: points outside the file"
                )));
            }
            if keyed_by_chunk && k.len() != 40 {
                return Err(damaged(format!(
                    "table {name}, record {count}: a key of {} bytes, not 40",
                    k.len()
                )));
            }
            if name == "hot" && (v.is_empty() || v.len() > MAX_HOT_VALUE) {
                return Err(damaged(format!(
                    "table hot, record {count}: a frame of {} bytes",
                    v.len()
                )));
            }
            if let Some(kind) = kind {
                unseal(kind, k, v).map_err(|e| damaged(format!("table {name}: {e}")))?;
            }
            count += 1;
        }
        report.tables.push((name.to_owned(), count));
    }
    drop(txn);
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The index's data file in `data_dir`.
pub fn data_file(data_dir: &Path) -> PathBuf {
    data_dir.join("meta").join(DATA_FILE)
}
