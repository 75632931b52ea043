//! LMDB's B-trees read from the file with ordinary reads, every page number, offset and length
//! checked before it is followed.
//!
//! LMDB itself trusts its pages: it follows child page numbers and node offsets straight
//! through its memory map, so random bytes in a branch or leaf page send it outside the map
//! (SIGSEGV) or past the end of the file (SIGBUS), and damage in the free list makes it hand
//! out pages that are in use. This module is what the index walk (`index_check.rs`) reads the
//! index with instead: [`Trees::open`] takes the newest meta page (`lmdb_file.rs`), and
//! [`Trees::walk`] visits every record of one tree in key order. A page fails the walk when
//!
//! - its page number is outside the file's pages in use, or it is reached twice (from two
//!   parents, from a tree and the free list, or a cycle);
//! - its header does not say branch or leaf where one belongs, or names another page number;
//! - its node offsets, key and value sizes do not fit inside the page;
//! - its keys are not in strictly increasing order, or fall outside the range the parent
//!   branch gives the page;
//! - leaves are not all at the tree's recorded depth;
//! - an overflow value's pages are outside the file, or (where they are read) their header
//!   disagrees with the value's size;
//! - the tree's page and record counts differ from its `MDB_db` record.
//!
//! [`Trees::check_free_list`] walks the free list and checks that every free page is inside
//! the file and in no tree.
//!
//! # Page layout (LMDB 0.9 / mdb.master, 64-bit, little-endian)
//!
//! A page starts with a 16-byte header: page number `u64`, pad `u16`, flags `u16` (`0x01`
//! branch, `0x02` leaf, `0x04` overflow, `0x08` meta), then lower and upper bounds of the free
//! space (`u16` each; on an overflow page, the page count `u32`). After the header, a leaf or
//! branch page holds `(lower - 16) / 2` node offsets (`u16`), in key order. A node is
//!
//! | size | field |
//! | --- | --- |
//! | 2 | `lo`: low 16 bits of the value size (leaf) or child page number (branch) |
//! | 2 | `hi`: the next 16 bits |
//! | 2 | flags (leaf: `0x01` value in overflow pages, `0x02` a table record); branch: bits 32–47 of the child page number |
//! | 2 | key size |
//! | k | key |
//! | v | value (leaf): inline, an 8-byte overflow page number, or a 48-byte `MDB_db` |
//!
//! An overflow value of `n` bytes fills `(16 - 1 + n) / page size + 1` pages.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::lmdb_file::{self, DbRecord, MetaPage, NO_PAGE, u16_at, u32_at, u64_at};

const HEADER: usize = 16;
const NODE: usize = 8;
const P_BRANCH: u16 = 0x01;
const P_LEAF: u16 = 0x02;
const P_OVERFLOW: u16 = 0x04;
const F_BIGDATA: u16 = 0x01;
const F_SUBDATA: u16 = 0x02;
/// `MDB_INTEGERKEY`: keys are native `u64`s (the free list's transaction ids).
const INTEGER_KEYS: u16 = 0x08;
/// Deeper than any tree of a file of 2^64 pages.
const MAX_DEPTH: u16 = 32;

/// Where a record's value is.
pub(crate) enum Value<'a> {
    /// Inside the leaf page.
    Inline(&'a [u8]),
    /// In overflow pages, not read: its size.
    Overflow { len: usize },
}

impl Value<'_> {
    /// The value's size in bytes.
    pub(crate) fn len(&self) -> usize {
        match self {
            Self::Inline(v) => v.len(),
            Self::Overflow { len } => *len,
        }
    }
}

/// The pages of one LMDB file, read with `pread`, and the pages reached so far.
pub(crate) struct Trees {
    file: std::fs::File,
    path: PathBuf,
    meta: MetaPage,
    page_size: usize,
    /// One bit per page number up to the last page in use: reached by a walk already.
    seen: Vec<u64>,
}

/// What one tree's walk counted, to compare with its `MDB_db` record.
#[derive(Default)]
struct Counts {
    branch: u64,
    leaf: u64,
    overflow: u64,
    entries: u64,
}

/// The key range a page's keys must fall in: at least `low`, below `high`.
#[derive(Clone, Copy)]
struct Range<'a> {
    low: Option<&'a [u8]>,
    high: Option<&'a [u8]>,
}

impl Trees {
    /// Opens `dir/data.mdb` at its newest meta page; `None` when there is no index yet.
    pub(crate) fn open(dir: &Path) -> Result<Option<Self>> {
        let Some(meta) = lmdb_file::check(dir)? else {
            return Ok(None);
        };
        let path = dir.join(lmdb_file::DATA_FILE);
        let file = std::fs::File::open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let page_size =
            usize::try_from(meta.page_size).map_err(|_| Error::Format("page size".into()))?;
        let pages =
            usize::try_from(meta.last_page.saturating_add(1)).map_err(|_| Error::IndexDamaged {
                path: path.display().to_string(),
                detail: format!("its last page {} does not fit", meta.last_page),
            })?;
        let mut seen = vec![0u64; pages.div_ceil(64)];
        // The two meta pages.
        seen[0] |= 0b11;
        Ok(Some(Self {
            file,
            path,
            meta,
            page_size,
            seen,
        }))
    }

    fn damaged(&self, detail: String) -> Error {
        Error::IndexDamaged {
            path: self.path.display().to_string(),
            detail,
        }
    }

    /// Marks `pgno` reached; fails if it is outside the file or was reached before.
    fn reach(&mut self, pgno: u64, what: &str) -> Result<()> {
        if pgno < 2 || pgno > self.meta.last_page {
            return Err(self.damaged(format!(
                "{what} names page {pgno}, outside pages 2..={} in use",
                self.meta.last_page
            )));
        }
        let (word, bit) = ((pgno / 64) as usize, pgno % 64);
        if self.seen[word] & (1 << bit) != 0 {
            return Err(self.damaged(format!("{what} names page {pgno}, which is reached twice")));
        }
        self.seen[word] |= 1 << bit;
        Ok(())
    }

    /// Reads `count` pages from `pgno` into `buf`.
    fn read_pages(&self, pgno: u64, count: usize, buf: &mut Vec<u8>) -> Result<()> {
        buf.resize(count * self.page_size, 0);
        let at = pgno.saturating_mul(self.meta.page_size);
        let got = lmdb_file::read_at(&self.file, at, buf)
            .map_err(|e| Error::io(format!("reading {}", self.path.display()), e))?;
        if got != buf.len() {
            return Err(self.damaged(format!("page {pgno} lies past the end of the file")));
        }
        Ok(())
    }

    /// Pages an overflow value of `len` bytes fills.
    fn overflow_pages(&self, len: usize) -> u64 {
        ((HEADER - 1 + len) / self.page_size + 1) as u64
    }

    /// Visits every record of the tree `db` (named `name` in messages) in key order with
    /// `visit(key, value)`. Values in overflow pages are read when `read_overflow` is set;
    /// otherwise their pages are only checked to lie inside the file.
    pub(crate) fn walk(
        &mut self,
        name: &str,
        db: &DbRecord,
        read_overflow: bool,
        visit: &mut dyn FnMut(&[u8], Value<'_>) -> Result<()>,
    ) -> Result<()> {
        let mut counts = Counts::default();
        if db.root != NO_PAGE {
            if db.depth == 0 || db.depth > MAX_DEPTH {
                return Err(self.damaged(format!("table {name} records a depth of {}", db.depth)));
            }
            let range = Range {
                low: None,
                high: None,
            };
            self.walk_page(
                name,
                db,
                db.root,
                1,
                range,
                read_overflow,
                &mut counts,
                visit,
            )?;
        } else if db.depth != 0 || db.entries != 0 {
            return Err(self.damaged(format!(
                "table {name} has no root page but records {} entries",
                db.entries
            )));
        }
        let recorded = (
            db.branch_pages,
            db.leaf_pages,
            db.overflow_pages,
            db.entries,
        );
        let found = (counts.branch, counts.leaf, counts.overflow, counts.entries);
        if recorded != found {
            return Err(self.damaged(format!(
                "table {name} records (branch pages, leaf pages, overflow pages, entries) = \
                 {recorded:?}, its pages hold {found:?}"
            )));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    fn walk_page(
        &mut self,
        name: &str,
        db: &DbRecord,
        pgno: u64,
        depth: u16,
        range: Range<'_>,
        read_overflow: bool,
        counts: &mut Counts,
        visit: &mut dyn FnMut(&[u8], Value<'_>) -> Result<()>,
    ) -> Result<()> {
        self.reach(pgno, &format!("table {name}"))?;
        let mut page = Vec::new();
        self.read_pages(pgno, 1, &mut page)?;
        let at = |detail: String| format!("table {name}, page {pgno}: {detail}");
        if u64_at(&page, 0) != pgno {
            return Err(self.damaged(at(format!("its header names page {}", u64_at(&page, 0)))));
        }
        let flags = u16_at(&page, 10);
        let leaf = depth == db.depth;
        let want = if leaf { P_LEAF } else { P_BRANCH };
        if flags & (P_BRANCH | P_LEAF | P_OVERFLOW | 0x08 | 0x20 | 0x40) != want {
            return Err(self.damaged(at(format!(
                "flags {flags:#06x} where a {} page belongs at depth {depth} of {}",
                if leaf { "leaf" } else { "branch" },
                db.depth
            ))));
        }
        let (lower, upper) = (
            usize::from(u16_at(&page, 12)),
            usize::from(u16_at(&page, 14)),
        );
        if lower < HEADER || lower % 2 != 0 || lower > upper || upper > self.page_size {
            return Err(self.damaged(at(format!(
                "free-space bounds {lower}..{upper} do not fit a page of {} bytes",
                self.page_size
            ))));
        }
        let n = (lower - HEADER) / 2;
        if n == 0 {
            return Err(self.damaged(at("the page holds no records".into())));
        }
        // Nodes: (offset, flags, key, lo|hi, value start).
        let mut nodes = Vec::with_capacity(n);
        for i in 0..n {
            let off = usize::from(u16_at(&page, HEADER + 2 * i));
            if off < upper || off % 2 != 0 || off + NODE > self.page_size {
                return Err(self.damaged(at(format!(
                    "node {i} at offset {off} lies outside {upper}..{}",
                    self.page_size
                ))));
            }
            let lo_hi = u64::from(u16_at(&page, off)) | (u64::from(u16_at(&page, off + 2)) << 16);
            let node_flags = u16_at(&page, off + 4);
            let key_len = usize::from(u16_at(&page, off + 6));
            let key_end = off + NODE + key_len;
            if key_end > self.page_size {
                return Err(self.damaged(at(format!(
                    "node {i}'s key of {key_len} bytes runs past the page"
                ))));
            }
            nodes.push((off, node_flags, lo_hi, key_end));
        }
        // Keys in order and inside the parent's range. A branch's first key is not stored.
        let mut previous: Option<&[u8]> = None;
        for (i, &(off, _, _, key_end)) in nodes.iter().enumerate() {
            if !leaf && i == 0 {
                continue;
            }
            let key = &page[off + NODE..key_end];
            let below = |a: &[u8], b: &[u8]| compare(db.flags, a, b) == std::cmp::Ordering::Less;
            let out_of_order = previous.is_some_and(|p| !below(p, key))
                || range.low.is_some_and(|l| below(key, l))
                || range.high.is_some_and(|h| !below(key, h));
            if out_of_order || (db.flags & INTEGER_KEYS != 0 && key.len() != 8) {
                return Err(
                    self.damaged(at(format!("key {i} ({} bytes) is out of order", key.len())))
                );
            }
            previous = Some(key);
        }
        if leaf {
            counts.leaf += 1;
            for (i, &(off, node_flags, lo_hi, key_end)) in nodes.iter().enumerate() {
                let key = &page[off + NODE..key_end];
                let len = usize::try_from(lo_hi).unwrap_or(usize::MAX);
                if node_flags & !(F_BIGDATA | F_SUBDATA) != 0 {
                    return Err(self.damaged(at(format!("record {i} has flags {node_flags:#06x}"))));
                }
                counts.entries += 1;
                if node_flags & F_BIGDATA != 0 {
                    if key_end + 8 > self.page_size {
                        return Err(self.damaged(at(format!(
                            "record {i}'s overflow page number runs past the page"
                        ))));
                    }
                    let first = u64_at(&page, key_end);
                    let pages = self.overflow_pages(len);
                    for p in first..first.saturating_add(pages) {
                        self.reach(p, &format!("table {name}, page {pgno}, record {i}"))?;
                    }
                    counts.overflow += pages;
                    if read_overflow {
                        let mut value = Vec::new();
                        let count = usize::try_from(pages).unwrap_or(usize::MAX);
                        self.read_pages(first, count, &mut value)?;
                        let flags = u16_at(&value, 10);
                        if flags & P_OVERFLOW == 0 || u64::from(u32_at(&value, 12)) != pages {
                            return Err(self.damaged(at(format!(
                                "record {i}'s overflow page {first} is not the start of \
                                 {pages} overflow pages"
                            ))));
                        }
                        visit(key, Value::Inline(&value[HEADER..HEADER + len]))?;
                    } else {
                        visit(key, Value::Overflow { len })?;
                    }
                } else {
                    if key_end + len > self.page_size {
                        return Err(self.damaged(at(format!(
                            "record {i}'s value of {len} bytes runs past the page"
                        ))));
                    }
                    visit(key, Value::Inline(&page[key_end..key_end + len]))?;
                }
            }
            return Ok(());
        }
        counts.branch += 1;
        for (i, &(off, node_flags, lo_hi, key_end)) in nodes.iter().enumerate() {
            let child = lo_hi | (u64::from(node_flags) << 32);
            let low = if i == 0 {
                range.low
            } else {
                Some(&page[off + NODE..key_end])
            };
            let high = match nodes.get(i + 1) {
                Some(&(next, _, _, next_end)) => Some(&page[next + NODE..next_end]),
                None => range.high,
            };
            let child_range = Range { low, high };
            self.walk_page(
                name,
                db,
                child,
                depth + 1,
                child_range,
                read_overflow,
                counts,
                visit,
            )?;
        }
        Ok(())
    }

    /// Walks the main tree and returns its table records, by name.
    pub(crate) fn tables(&mut self) -> Result<Vec<(String, DbRecord)>> {
        let main = self.meta.main;
        let mut tables = Vec::new();
        let mut bad = None;
        self.walk("(main)", &main, true, &mut |key, value| {
            let name = String::from_utf8_lossy(key).into_owned();
            match value {
                Value::Inline(v) => match DbRecord::parse(v) {
                    Some(record) => tables.push((name, record)),
                    None => bad = Some(format!("table {name}'s record is {} bytes", v.len())),
                },
                Value::Overflow { .. } => bad = Some(format!("table {name}'s record overflows")),
            }
            Ok(())
        })?;
        if let Some(detail) = bad {
            return Err(self.damaged(detail));
        }
        Ok(tables)
    }

    /// Walks the free list: every free page must be inside the file and in no tree. Call it
    /// after the trees were walked.
    pub(crate) fn check_free_list(&mut self) -> Result<u64> {
        let free = self.meta.free;
        if free.flags & INTEGER_KEYS == 0 && free.root != NO_PAGE {
            return Err(self.damaged(format!(
                "the free list records flags {:#06x}, not integer keys",
                free.flags
            )));
        }
        let mut lists: Vec<Vec<u64>> = Vec::new();
        let mut bad = None;
        self.walk("(free pages)", &free, true, &mut |_, value| {
            let Value::Inline(v) = value else {
                return Ok(());
            };
            let count = v.get(..8).map(|c| u64_at(c, 0));
            match count {
                Some(n) if v.len() % 8 == 0 && (v.len() / 8 - 1) as u64 == n => {
                    lists.push((1..v.len() / 8).map(|i| u64_at(v, i * 8)).collect());
                }
                _ => bad = Some(format!("a free-page list of {} bytes", v.len())),
            }
            Ok(())
        })?;
        if let Some(detail) = bad {
            return Err(self.damaged(detail));
        }
        let mut pages = 0;
        for list in lists {
            for pgno in list {
                self.reach(pgno, "the free list")?;
                pages += 1;
            }
        }
        Ok(pages)
    }
}

/// LMDB's key order: bytes (shorter first on a common prefix), or native `u64`s.
fn compare(flags: u16, a: &[u8], b: &[u8]) -> std::cmp::Ordering {
    if flags & INTEGER_KEYS != 0 && a.len() == 8 && b.len() == 8 {
        return u64_at(a, 0).cmp(&u64_at(b, 0));
    }
    a.cmp(b)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::FileExt;

    use super::*;
    use crate::meta::Meta;

    /// An index of a few thousand records in several tables, over several transactions (so
    /// that the free list holds pages), with some values in overflow pages.
    fn index(dir: &Path) -> Result<()> {
        let meta = Meta::open(dir, 64 << 20)?;
        for round in 0u32..4 {
            meta.write_blocking(move |t, txn| {
                for i in 0u32..1500 {
                    let key = [i.to_be_bytes().as_slice(), &[round as u8; 36]].concat();
                    t.hot.put(txn, &key, &[9u8; 120])?;
                    t.cold_queue.put(txn, &key, &[1u8; 30])?;
                }
                for i in 0u32..300 {
                    let key = [
                        i.to_be_bytes().as_slice(),
                        &[round.wrapping_sub(1) as u8; 36],
                    ]
                    .concat();
                    t.hot.delete(txn, &key)?;
                }
                t.state.put(
                    txn,
                    format!("big{round}").as_bytes(),
                    &vec![round as u8; 20_000],
                )?;
                Ok(())
            })?;
        }
        meta.close();
        drop(meta);
        Ok(())
    }

    /// Walks every tree and the free list, as the index walk does.
    fn walk_all(dir: &Path) -> Result<Trees> {
        let mut trees = Trees::open(dir)?.ok_or_else(|| Error::NotFound("index".into()))?;
        for (name, db) in trees.tables()? {
            trees.walk(&name, &db, true, &mut |_, _| Ok(()))?;
        }
        trees.check_free_list()?;
        Ok(trees)
    }

    fn tmp() -> Result<tempfile::TempDir> {
        tempfile::tempdir().map_err(|e| Error::io("tempdir", e))
    }

    #[test]
    fn an_intact_index_walks_with_every_count_matching_and_a_free_list() -> Result<()> {
        let dir = tmp()?;
        index(dir.path())?;
        let mut trees = Trees::open(dir.path())?.ok_or_else(|| Error::NotFound("index".into()))?;
        let tables = trees.tables()?;
        assert!(tables.iter().any(|(n, _)| n == "hot"), "{tables:?}");
        let mut records = 0;
        for (name, db) in &tables {
            trees.walk(name, db, true, &mut |_, _| {
                records += 1;
                Ok(())
            })?;
        }
        assert!(records > 5000, "{records}");
        assert!(trees.check_free_list()? > 0, "the free list holds pages");
        Ok(())
    }

    #[test]
    fn random_bytes_in_any_branch_or_leaf_page_in_use_fail_the_walk() -> Result<()> {
        let dir = tmp()?;
        index(dir.path())?;
        let path = dir.path().join(lmdb_file::DATA_FILE);
        let pristine = std::fs::read(&path).map_err(|e| Error::io("read", e))?;
        // The pages of the trees (not yet the free list's pages).
        let mut trees = Trees::open(dir.path())?.ok_or_else(|| Error::NotFound("index".into()))?;
        for (name, db) in trees.tables()? {
            trees.walk(&name, &db, true, &mut |_, _| Ok(()))?;
        }
        let page = trees.page_size;
        let in_use: Vec<usize> = (2..pristine.len() / page)
            .filter(|&n| trees.seen[n / 64] & (1 << (n % 64)) != 0)
            .filter(|&n| {
                // Not a page inside an overflow value, whose bytes are the value's.
                u64_at(&pristine, n * page) == n as u64
                    && u16_at(&pristine, n * page + 10) & (P_BRANCH | P_LEAF) != 0
            })
            .collect();
        drop(trees);
        assert!(in_use.len() > 20, "{} pages", in_use.len());
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        for n in in_use {
            let noise: Vec<u8> = (0..page - HEADER)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&path)
                .map_err(|e| Error::io("open", e))?;
            f.write_all_at(&noise, (n * page + HEADER) as u64)
                .map_err(|e| Error::io("write", e))?;
            match walk_all(dir.path()) {
                Err(Error::IndexDamaged { detail, .. }) => assert!(!detail.is_empty()),
                Err(other) => panic!("page {n}: {other}"),
                Ok(_) => panic!("page {n}: the walk passed random bytes"),
            }
            f.write_all_at(&pristine, 0)
                .map_err(|e| Error::io("write", e))?;
        }
        Ok(())
    }

    #[test]
    fn a_free_list_naming_a_page_in_use_fails_the_walk() -> Result<()> {
        let dir = tmp()?;
        index(dir.path())?;
        let mut trees = Trees::open(dir.path())?.ok_or_else(|| Error::NotFound("index".into()))?;
        let hot_root = trees
            .tables()?
            .into_iter()
            .find(|(n, _)| n == "hot")
            .map(|(_, db)| db.root)
            .ok_or_else(|| Error::NotFound("hot".into()))?;
        let free = trees.meta.free;
        let page = trees.page_size;
        drop(trees);
        assert_eq!(free.depth, 1, "a free list of one leaf page");
        // The first free page number of the first record of the free list's leaf.
        let path = dir.path().join(lmdb_file::DATA_FILE);
        let bytes = std::fs::read(&path).map_err(|e| Error::io("read", e))?;
        let leaf = &bytes[free.root as usize * page..][..page];
        let node = usize::from(u16_at(leaf, HEADER));
        let value = node + NODE + usize::from(u16_at(leaf, node + 6));
        assert_eq!(
            u16_at(leaf, node + 4),
            0,
            "the list is inside the leaf page"
        );
        assert!(u64_at(leaf, value) > 0, "the record lists pages");
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| Error::io("open", e))?;
        f.write_all_at(
            &hot_root.to_le_bytes(),
            (free.root as usize * page + value + 8) as u64,
        )
        .map_err(|e| Error::io("write", e))?;
        match walk_all(dir.path()) {
            Err(Error::IndexDamaged { detail, .. }) => {
                assert!(
                    detail.contains("free list") && detail.contains("twice"),
                    "{detail}"
                );
            }
            Err(other) => panic!("{other}"),
            Ok(_) => panic!("the walk passed a free list naming a page in use"),
        }
        Ok(())
    }
}
