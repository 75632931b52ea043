//! Checking the LMDB data file against its own meta pages before LMDB maps it.
//!
//! LMDB reads pages through a memory map: a page past the end of a truncated file is a
//! SIGBUS, not an error. So before the environment opens, the two meta pages are read with
//! ordinary reads and the file is refused ([`Error::IndexDamaged`]) when it is empty, when no
//! meta page is valid, or when it is shorter than the pages the newest meta page says are in
//! use.
//!
//! # Meta page layout (LMDB 0.9 / mdb.master, 64-bit; LMDB writes native byte order, read
//! here as little-endian, the order of every host scipcached runs on)
//!
//! Meta page 0 is at offset 0 and meta page 1 at offset `page size`. Each is a 16-byte page
//! header (page number `u64`, pad `u16`, flags `u16` with `0x08` = meta, 4 bytes of bounds),
//! then `MDB_meta`:
//!
//! | offset in page | size | field |
//! | --- | --- | --- |
//! | 16 | 4 | magic `0xBEEFC0DE` |
//! | 20 | 4 | data version `1` |
//! | 24 | 8 | fixed map address |
//! | 32 | 8 | map size |
//! | 40 | 48 | free-list `MDB_db`; its first `u32` is the page size |
//! | 88 | 48 | main `MDB_db` |
//! | 136 | 8 | last page number used (`mm_last_pg`) |
//! | 144 | 8 | id of the transaction that wrote this meta page |
//!
//! LMDB uses the valid meta page with the higher transaction id; so does this check.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// The data file's name in the `meta` folder.
pub(crate) const DATA_FILE: &str = "data.mdb";

const MAGIC: u32 = 0xBEEF_C0DE;
const DATA_VERSION: u32 = 1;
const P_META: u16 = 0x08;
/// Bytes of a meta page that hold the header and `MDB_meta`.
const META_BYTES: usize = 152;

/// Bytes of an `MDB_db` record.
pub(crate) const DB_RECORD_LEN: usize = 48;
/// The root page number of an empty tree.
pub(crate) const NO_PAGE: u64 = u64::MAX;

/// One `MDB_db` record: a B-tree's root and what LMDB counts in it.
///
/// | offset | size | field |
/// | --- | --- | --- |
/// | 0 | 4 | pad (in the free-list record of a meta page: the page size) |
/// | 4 | 2 | flags (`0x08` = integer keys) |
/// | 6 | 2 | depth |
/// | 8 | 8 | branch pages |
/// | 16 | 8 | leaf pages |
/// | 24 | 8 | overflow pages |
/// | 32 | 8 | entries |
/// | 40 | 8 | root page number (`u64::MAX` when empty) |
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct DbRecord {
    pub(crate) flags: u16,
    pub(crate) depth: u16,
    pub(crate) branch_pages: u64,
    pub(crate) leaf_pages: u64,
    pub(crate) overflow_pages: u64,
    pub(crate) entries: u64,
    pub(crate) root: u64,
}

impl DbRecord {
    /// Parses the 48 bytes of a record.
    pub(crate) fn parse(b: &[u8]) -> Option<Self> {
        (b.len() == DB_RECORD_LEN).then(|| Self {
            flags: u16_at(b, 4),
            depth: u16_at(b, 6),
            branch_pages: u64_at(b, 8),
            leaf_pages: u64_at(b, 16),
            overflow_pages: u64_at(b, 24),
            entries: u64_at(b, 32),
            root: u64_at(b, 40),
        })
    }
}

/// What the newest valid meta page records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MetaPage {
    pub(crate) page_size: u64,
    pub(crate) map_size: u64,
    pub(crate) last_page: u64,
    pub(crate) txn_id: u64,
    /// The tree of free pages.
    pub(crate) free: DbRecord,
    /// The main tree, whose records are the named tables.
    pub(crate) main: DbRecord,
}

impl MetaPage {
    /// Bytes the file must hold at least: every page up to the last one used.
    pub(crate) fn min_file_len(&self) -> u64 {
        self.last_page
            .saturating_add(1)
            .saturating_mul(self.page_size)
    }
}

pub(crate) fn u16_at(b: &[u8], at: usize) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[at..at + 2]);
    u16::from_le_bytes(a)
}

pub(crate) fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

pub(crate) fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Parses one meta page, or says why it is not one.
fn parse(page: &[u8]) -> std::result::Result<MetaPage, String> {
    if page.len() < META_BYTES {
        return Err(format!("{} bytes where a meta page belongs", page.len()));
    }
    if u16_at(page, 10) & P_META == 0 {
        return Err("the page is not marked as a meta page".into());
    }
    if u32_at(page, 16) != MAGIC {
        return Err("the page lacks LMDB's magic number".into());
    }
    let version = u32_at(page, 20);
    if version != DATA_VERSION {
        return Err(format!("LMDB data version {version}, not {DATA_VERSION}"));
    }
    let meta = MetaPage {
        page_size: u64::from(u32_at(page, 40)),
        map_size: u64_at(page, 32),
        last_page: u64_at(page, 136),
        txn_id: u64_at(page, 144),
        free: DbRecord::parse(&page[40..88]).ok_or("a short free-list record")?,
        main: DbRecord::parse(&page[88..136]).ok_or("a short main record")?,
    };
    if !meta.page_size.is_power_of_two() || !(512..=65_536).contains(&meta.page_size) {
        return Err(format!(
            "page size {} is not a power of two in 512..=65536",
            meta.page_size
        ));
    }
    if meta.last_page < 1 || meta.min_file_len() > meta.map_size.max(meta.page_size * 2) {
        return Err(format!(
            "last page {} does not fit the map size {}",
            meta.last_page, meta.map_size
        ));
    }
    Ok(meta)
}

/// Reads up to `buf.len()` bytes at `offset` (fewer at the end of the file).
pub(crate) fn read_at(file: &std::fs::File, offset: u64, buf: &mut [u8]) -> std::io::Result<usize> {
    use std::os::unix::fs::FileExt;
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Checks `dir/data.mdb` (when it exists) against its meta pages; returns the newest valid
/// meta page, or `None` for a data dir whose index has not been created yet.
pub(crate) fn check(dir: &Path) -> Result<Option<MetaPage>> {
    let path = dir.join(DATA_FILE);
    let damaged = |detail: String| Error::IndexDamaged {
        path: path.display().to_string(),
        detail,
    };
    let mut file = match std::fs::File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io(format!("opening {}", path.display()), e)),
    };
    let len = file
        .metadata()
        .map_err(|e| Error::io(format!("reading the size of {}", path.display()), e))?
        .len();
    if len == 0 {
        return Err(damaged(
            "the file is empty (0 bytes): an index that existed was emptied or cut".into(),
        ));
    }
    let mut first = vec![0u8; META_BYTES];
    let got = file
        .read(&mut first)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let meta0 = parse(&first[..got]);
    // Meta page 1 sits one page after meta page 0; LMDB takes the page size from page 0.
    let page_size = meta0.as_ref().map_or(4096, |m| m.page_size);
    let mut second = vec![0u8; META_BYTES];
    let got = read_at(&file, page_size, &mut second)
        .map_err(|e| Error::io(format!("reading {}", path.display()), e))?;
    let meta1 = parse(&second[..got]);
    let newest = match (&meta0, &meta1) {
        (Ok(a), Ok(b)) => {
            if b.txn_id > a.txn_id {
                *b
            } else {
                *a
            }
        }
        (Err(why), _) => return Err(damaged(format!("meta page 0 is invalid: {why}"))),
        (_, Err(why)) => return Err(damaged(format!("meta page 1 is invalid: {why}"))),
    };
    if len < newest.min_file_len() {
        return Err(damaged(format!(
            "the file is {len} bytes, but its meta page records {} pages of {} bytes in use \
             ({} bytes): it was cut short",
            newest.last_page + 1,
            newest.page_size,
            newest.min_file_len()
        )));
    }
    Ok(Some(newest))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::meta::Meta;

    fn index_with_data(dir: &Path) -> Result<()> {
        let meta = Meta::open(dir, 64 << 20)?;
        meta.write_blocking(|t, txn| {
            for i in 0u32..2000 {
                let key = [i.to_be_bytes().as_slice(), &[7u8; 36]].concat();
                t.hot.put(txn, &key, &[9u8; 200])?;
            }
            Ok(())
        })?;
        meta.close();
        drop(meta);
        Ok(())
    }

    fn cut(path: &Path, len: u64) -> Result<()> {
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(|e| Error::io("open", e))?;
        f.set_len(len).map_err(|e| Error::io("set_len", e))
    }

    #[test]
    fn an_intact_index_passes_and_a_missing_one_is_new() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        assert_eq!(check(dir.path())?, None);
        index_with_data(dir.path())?;
        let meta = check(dir.path())?.ok_or_else(|| Error::NotFound("meta".into()))?;
        assert_eq!(meta.page_size, 4096);
        assert!(meta.last_page > 100, "{meta:?}");
        Ok(())
    }

    #[test]
    fn a_cut_emptied_or_zeroed_index_is_refused_naming_the_file_and_rebuild() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        index_with_data(dir.path())?;
        let path = dir.path().join(DATA_FILE);
        let len = std::fs::metadata(&path)
            .map_err(|e| Error::io("stat", e))?
            .len();
        let refused = |what: &str| -> Result<()> {
            match check(dir.path()) {
                Err(e @ Error::IndexDamaged { .. }) => {
                    let m = e.to_string();
                    assert!(
                        m.contains("data.mdb") && m.contains("scipcached rebuild"),
                        "{what}: {m}"
                    );
                    Ok(())
                }
                other => panic!("{what}: {other:?}"),
            }
        };
        cut(&path, len / 2)?;
        refused("cut to half")?;
        // LMDB itself does not notice a short file; it maps it and dies of SIGBUS.
        cut(&path, 0)?;
        refused("emptied")?;
        cut(&path, len)?;
        refused("zeroed")?;
        Ok(())
    }
}
