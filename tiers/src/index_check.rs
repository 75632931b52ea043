//! The walk of the whole index that runs before a daemon serves.
//!
//! LMDB keeps no page checksums, and it follows page numbers and node offsets it reads from
//! the map: random bytes in a branch or leaf page can send it outside the map (SIGSEGV) or
//! past the end of the file (SIGBUS). [`walk`] therefore never reads the index through LMDB:
//! it reads the file's pages with ordinary reads and checks every page number, offset, size,
//! key order and count before it follows them (`lmdb_tree.rs`), for every table and the free
//! list. On the records it finds:
//!
//! - keys of the chunk-keyed tables (`chunks`, `hot`, `warm`, `cold`, `manifests`) are 40
//!   bytes;
//! - every sealed record (`chunks`, `warm`, `cold`, `manifests`, `refs`; `sealed.rs`) must
//!   match its checksum (data dirs of format 3 and later);
//! - values of `hot` (chunk frames, checked by their own checksum when read) are not read,
//!   only their length is checked against the largest frame, and their pages against the file.
//!
//! The daemon runs the walk in a child process (its hidden `check-index` subcommand), so that
//! even a fault the checks missed kills only the child. If the walk finds damage, or the
//! child dies, the daemon refuses to start and names `scipcached rebuild`. The walk reads no
//! chunk bytes: at a million chunks it reads the leaf pages of the index once
//! (`bench`, `index_walk`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::codec::MAX_CHUNK_LEN;
use crate::error::{Error, Result};
use crate::lmdb_file::DATA_FILE;
use crate::lmdb_tree::{Trees, Value};
use crate::sealed::{Kind, unseal};
use crate::version::{FORMAT_KEY, SEALED_FORMAT, UNSTAMPED_FORMAT};

/// Largest hot value the walk accepts: the largest chunk, stored uncompressed, and a header.
const MAX_HOT_VALUE: usize = MAX_CHUNK_LEN + 64;

/// What the walk found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IndexReport {
    /// Records per table, in the order of the tables.
    pub tables: Vec<(String, u64)>,
    /// Pages on the free list.
    pub free_pages: u64,
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
    let Some(mut trees) = Trees::open(&dir)? else {
        return Ok(IndexReport::default());
    };
    let mut tables = trees.tables()?;
    // `state` first: its format record says whether the other records are sealed.
    tables.sort_by_key(|(name, _)| name != "state");
    let mut format = None;
    let mut report = IndexReport::default();
    for (name, db) in &tables {
        let kind = sealed_kind(name).filter(|_| report.sealed);
        let keyed_by_chunk = matches!(
            name.as_str(),
            "chunks" | "hot" | "warm" | "cold" | "manifests"
        );
        let is_state = name == "state";
        let is_hot = name == "hot";
        let mut count = 0u64;
        trees.walk(name, db, !is_hot, &mut |k, v| {
            if keyed_by_chunk && k.len() != 40 {
                return Err(damaged(format!(
                    "table {name}, record {count}: a key of {} bytes, not 40",
                    k.len()
                )));
            }
            if is_hot && (v.len() == 0 || v.len() > MAX_HOT_VALUE) {
                return Err(damaged(format!(
                    "table hot, record {count}: a frame of {} bytes",
                    v.len()
                )));
            }
            if let Value::Inline(v) = v {
                if is_state && k == FORMAT_KEY.as_bytes() {
                    let bytes: [u8; 8] = v.try_into().map_err(|_| {
                        damaged(format!("its format record is {} bytes, not 8", v.len()))
                    })?;
                    format = Some(u64::from_le_bytes(bytes));
                }
                if let Some(kind) = kind {
                    unseal(kind, k, v).map_err(|e| damaged(format!("table {name}: {e}")))?;
                }
            }
            count += 1;
            Ok(())
        })?;
        if is_state {
            report.sealed = format.unwrap_or(UNSTAMPED_FORMAT) >= SEALED_FORMAT;
        }
        report.tables.push((name.clone(), count));
    }
    report.free_pages = trees.check_free_list()?;
    report.elapsed = started.elapsed();
    Ok(report)
}

/// The index's data file in `data_dir`.
pub fn data_file(data_dir: &Path) -> PathBuf {
    data_dir.join("meta").join(DATA_FILE)
}
