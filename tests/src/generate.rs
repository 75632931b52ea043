//! Deterministic generated blobs.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use anyhow::Result;

/// Segment granularity: each 64 KiB segment is either random bytes or word soup.
const SEGMENT: usize = 64 * 1024;

/// Writes `len` bytes generated from `seed` to `path` and returns their BLAKE3 (lowercase hex).
///
/// The data is streamed (memory stays at one segment), the same for the same seed, and
/// partly compressible like a real index: about half of the 64 KiB segments are random bytes,
/// the others a random sequence of words from a small vocabulary (lz4 and zstd both shrink
/// them several times). No two chunks repeat, so nothing deduplicates.
pub fn write_generated(path: &Path, len: u64, seed: u64) -> Result<String> {
    let mut rng = XorShift(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let vocabulary: Vec<Vec<u8>> = (0..256)
        .map(|i| format!("scip-typescript npm pkg 1.0.{i} src/mod{i}.ts/`fn{i}`().").into_bytes())
        .collect();
    let mut out = BufWriter::with_capacity(1 << 20, File::create(path)?);
    let mut hasher = blake3::Hasher::new();
    let mut segment = Vec::with_capacity(SEGMENT + 128);
    let mut left = len;
    while left > 0 {
        segment.clear();
        if rng.next() & 1 == 0 {
            while segment.len() < SEGMENT {
                segment.extend_from_slice(&rng.next().to_le_bytes());
            }
        } else {
            while segment.len() < SEGMENT {
                let r = rng.next();
                for shift in [0, 8, 16, 24] {
                    let word = usize::try_from((r >> shift) & 0xff).unwrap_or(0);
                    segment.extend_from_slice(&vocabulary[word]);
                }
            }
        }
        let n = usize::try_from(left.min(SEGMENT as u64)).unwrap_or(SEGMENT);
        out.write_all(&segment[..n])?;
        hasher.update(&segment[..n]);
        left -= n as u64;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()?;
    Ok(hasher.finalize().to_hex().to_string())
}

/// xorshift64*: fast, deterministic, good enough for test data.
struct XorShift(u64);

impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_data_is_deterministic_and_of_the_asked_length() -> Result<()> {
        let dir = tempfile::tempdir()?;
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        let len = 3 * SEGMENT as u64 + 17;
        assert_eq!(write_generated(&a, len, 7)?, write_generated(&b, len, 7)?);
        assert_eq!(std::fs::metadata(&a)?.len(), len);
        assert_eq!(crate::blake3_file(&a)?, write_generated(&b, len, 7)?);
        assert_ne!(write_generated(&b, len, 8)?, crate::blake3_file(&a)?);
        Ok(())
    }
}
