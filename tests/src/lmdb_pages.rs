//! Damaging the daemon's LMDB index (`<data-dir>/meta/data.mdb`) the way disks and careless
//! operators do: cut short, emptied, random bytes in branch and leaf pages, one flipped byte
//! in a record. Page layout: LMDB's 16-byte page header (page number, pad, flags `u16` at
//! byte 10: `0x01` branch, `0x02` leaf, `0x08` meta), then the node offsets (`u16` each),
//! and nodes of `lo u16, hi u16, flags u16, key size u16, key, value` (value size `lo | hi <<
//! 16`). The page size is the first `u32` of the free-list record of meta page 0 (byte 40).

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, ensure};

const P_BRANCH: u16 = 0x01;
const P_LEAF: u16 = 0x02;
const P_META: u16 = 0x08;
/// Value sizes of a `chunks` record: 13 bytes, plus the 8-byte checksum from format 3 on.
const CHUNK_INFO_LENS: [u32; 2] = [13, 21];

/// The index file of a data dir.
pub fn data_mdb(data_dir: &Path) -> PathBuf {
    data_dir.join("meta").join("data.mdb")
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}

/// The file's bytes and its page size.
fn read_pages(path: &Path) -> Result<(Vec<u8>, usize)> {
    let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    ensure!(
        bytes.len() >= 48,
        "{} is too short for LMDB",
        path.display()
    );
    let page = u32::from_le_bytes([bytes[40], bytes[41], bytes[42], bytes[43]]) as usize;
    ensure!(
        page.is_power_of_two() && page >= 512,
        "page size {page} in {}",
        path.display()
    );
    Ok((bytes, page))
}

/// Whether page `n` starts with its own page number (pages inside an overflow value hold
/// the value's bytes instead).
fn numbered(bytes: &[u8], page: usize, n: usize) -> bool {
    bytes[n * page..n * page + 8] == (n as u64).to_le_bytes()
}

/// Page numbers of every branch and leaf page (not meta pages or the bytes of overflow
/// values; freed pages that were branches or leaves count too).
pub fn branch_and_leaf_pages(path: &Path) -> Result<Vec<usize>> {
    let (bytes, page) = read_pages(path)?;
    Ok((0..bytes.len() / page)
        .filter(|n| {
            let flags = u16_at(&bytes, n * page + 10);
            numbered(&bytes, page, *n) && flags & P_META == 0 && flags & (P_BRANCH | P_LEAF) != 0
        })
        .collect())
}

/// Page numbers of the leaf pages whose first record looks like a `chunks` table record (a
/// 40-byte chunk key and a chunk entry): the table's leaves, and stale copies of them in
/// freed pages.
pub fn chunk_index_leaf_pages(path: &Path) -> Result<Vec<usize>> {
    let (bytes, page) = read_pages(path)?;
    Ok((0..bytes.len() / page)
        .filter(|n| {
            let p = &bytes[n * page..(n + 1) * page];
            if !numbered(&bytes, page, *n)
                || u16_at(p, 10) & (P_LEAF | P_META) != P_LEAF
                || u16_at(p, 12) <= 16
            {
                return false;
            }
            let node = usize::from(u16_at(p, 16));
            if node + 8 > page {
                return false;
            }
            let size = u32::from(u16_at(p, node)) | (u32::from(u16_at(p, node + 2)) << 16);
            u16_at(p, node + 6) == 40 && CHUNK_INFO_LENS.contains(&size)
        })
        .collect())
}

/// Overwrites page `n` after its 16-byte header with deterministic random bytes.
pub fn scramble_page(path: &Path, n: usize, seed: u64) -> Result<()> {
    let (_, page) = read_pages(path)?;
    let mut x = seed | 1;
    let noise: Vec<u8> = (0..page - 16)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.write_all_at(&noise, (n * page + 16) as u64)?;
    f.sync_all()?;
    Ok(())
}

/// Flips the byte `offset` bytes after every occurrence of `pattern` in the file (a live
/// record and any stale copies in freed pages); returns how many were flipped.
pub fn flip_after(path: &Path, pattern: &[u8], offset: usize) -> Result<usize> {
    let bytes = std::fs::read(path)?;
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    let mut flipped = 0;
    for at in 0..bytes.len().saturating_sub(pattern.len() + offset) {
        if &bytes[at..at + pattern.len()] == pattern {
            let target = at + pattern.len() + offset;
            f.write_all_at(&[bytes[target] ^ 0x5a], target as u64)?;
            flipped += 1;
        }
    }
    f.sync_all()?;
    Ok(flipped)
}

/// Cuts the file to `len` bytes.
pub fn cut(path: &Path, len: u64) -> Result<()> {
    let f = std::fs::OpenOptions::new().write(true).open(path)?;
    f.set_len(len)?;
    f.sync_all()?;
    Ok(())
}
