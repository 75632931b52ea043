//! Content-defined chunking.
//!
//! A [`Splitter`] decides where chunks end; [`ChunkReader`] runs one over any `AsyncRead` with
//! memory bounded by a small multiple of the maximum chunk size. The only splitter today is
//! FastCDC v2020 ([`FastCdc`]); a SCIP-aware splitter can implement the same trait.
//!
//! The splitter's [`ChunkerSpec`] is part of the dedup protocol: manifests record it and the
//! server advertises its own, so a client and a server of different versions agree on what a
//! chunk is.

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt};

use crate::codec::MAX_CHUNK_LEN;
use crate::error::{Error, Result};

/// Which algorithm a [`ChunkerSpec`] names.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ChunkerAlgorithm {
    /// FastCDC v2020, normalization level 1, default gear table (the `fastcdc` crate).
    FastCdc2020 = 1,
}

impl ChunkerAlgorithm {
    /// Parses the wire/on-disk byte.
    pub fn from_byte(b: u8) -> Result<Self> {
        match b {
            1 => Ok(Self::FastCdc2020),
            other => Err(Error::InvalidArgument(format!(
                "unknown chunker algorithm {other}"
            ))),
        }
    }
}

/// What a chunk is: algorithm and size bounds. Recorded in every manifest.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ChunkerSpec {
    /// The algorithm.
    pub algorithm: ChunkerAlgorithm,
    /// Smallest chunk (except a blob's last).
    pub min: u32,
    /// Target average.
    pub avg: u32,
    /// Largest chunk.
    pub max: u32,
}

impl ChunkerSpec {
    /// FastCDC v2020 with `avg`, `min = avg / 4`, `max = avg * 4`.
    pub const fn fastcdc(avg: u32) -> Self {
        Self {
            algorithm: ChunkerAlgorithm::FastCdc2020,
            min: avg / 4,
            avg,
            max: avg * 4,
        }
    }

    /// Checks the bounds against what the algorithm supports.
    pub fn validate(&self) -> Result<()> {
        use fastcdc::v2020::{
            AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN,
        };
        let (min, avg, max) = (self.min as usize, self.avg as usize, self.max as usize);
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&min)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&avg)
            && (MAXIMUM_MIN..=MAXIMUM_MAX.min(MAX_CHUNK_LEN)).contains(&max)
            && min <= avg
            && avg <= max
            && min % 2 == 0
            && avg % 2 == 0
            && max % 2 == 0;
        if ok {
            Ok(())
        } else {
            Err(Error::InvalidArgument(format!(
                "unsupported chunker bounds min={min} avg={avg} max={max}"
            )))
        }
    }

    /// Builds the splitter this spec names.
    pub fn splitter(&self) -> Result<FastCdc> {
        self.validate()?;
        Ok(FastCdc::new(*self))
    }
}

impl Default for ChunkerSpec {
    /// Chosen by measurement on the shared SCIP series (README, "Choosing the chunk size").
    fn default() -> Self {
        Self::fastcdc(DEFAULT_AVG_CHUNK)
    }
}

/// The default average chunk size.
pub const DEFAULT_AVG_CHUNK: u32 = 32 * 1024;

/// Decides where the next chunk ends.
pub trait Splitter: Send + Sync + std::fmt::Debug {
    /// The spec recorded in manifests.
    fn spec(&self) -> ChunkerSpec;

    /// Length of the next chunk at the start of `buf`. `buf` holds at least `spec().max` bytes
    /// unless the input ends with it (`eof`). Must return a value in `1..=buf.len()` for a
    /// non-empty `buf`, and at most `spec().max`.
    fn next_cut(&self, buf: &[u8], eof: bool) -> usize;
}

/// FastCDC v2020 (normalization level 1) from the `fastcdc` crate.
#[derive(Clone, Debug)]
pub struct FastCdc {
    spec: ChunkerSpec,
    mask_s: u64,
    mask_l: u64,
}

impl FastCdc {
    fn new(spec: ChunkerSpec) -> Self {
        let (mask_s, mask_l) =
            fastcdc::v2020::select_masks(spec.avg as usize, fastcdc::v2020::Normalization::Level1);
        Self {
            spec,
            mask_s,
            mask_l,
        }
    }

    /// Cuts an in-memory buffer completely, returning each chunk's length.
    pub fn cut_all<'a>(
        &'a self,
        data: &'a [u8],
    ) -> impl Iterator<Item = std::ops::Range<usize>> + 'a {
        let mut pos = 0;
        std::iter::from_fn(move || {
            if pos >= data.len() {
                return None;
            }
            let n = self.next_cut(&data[pos..], true);
            let range = pos..pos + n;
            pos += n;
            Some(range)
        })
    }
}

impl Splitter for FastCdc {
    fn spec(&self) -> ChunkerSpec {
        self.spec
    }

    fn next_cut(&self, buf: &[u8], _eof: bool) -> usize {
        let (_, n) = fastcdc::v2020::cut(
            buf,
            self.spec.min as usize,
            self.spec.avg as usize,
            self.spec.max as usize,
            self.mask_s,
            self.mask_l,
            self.mask_s << 1,
            self.mask_l << 1,
        );
        n.clamp(buf.len().min(1), buf.len())
    }
}

/// Size of each read from the source.
const READ_BLOCK: usize = 1024 * 1024;

/// Reads chunks from an `AsyncRead`. Memory stays below `max + 2 MiB` whatever the input size,
/// and each chunk is a zero-copy slice of the read buffer.
#[derive(Debug)]
pub struct ChunkReader<R, S = FastCdc> {
    source: R,
    splitter: S,
    buf: BytesMut,
    eof: bool,
    total: u64,
}

impl<R: AsyncRead + Unpin, S: Splitter> ChunkReader<R, S> {
    /// Wraps a source.
    pub fn new(source: R, splitter: S) -> Self {
        Self {
            source,
            splitter,
            buf: BytesMut::new(),
            eof: false,
            total: 0,
        }
    }

    /// Bytes returned so far.
    pub fn bytes_read(&self) -> u64 {
        self.total
    }

    /// The next chunk, or `None` at the end of the input.
    pub async fn next_chunk(&mut self) -> std::io::Result<Option<Bytes>> {
        let max = self.splitter.spec().max as usize;
        while !self.eof && self.buf.len() < max {
            if self.buf.capacity() - self.buf.len() < READ_BLOCK / 2 {
                self.buf.reserve(READ_BLOCK.max(max));
            }
            if self.source.read_buf(&mut self.buf).await? == 0 {
                self.eof = true;
            }
        }
        if self.buf.is_empty() {
            return Ok(None);
        }
        let n = self.splitter.next_cut(&self.buf, self.eof);
        self.total += n as u64;
        Ok(Some(self.buf.split_to(n).freeze()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pseudo_random(len: usize, seed: u64) -> Vec<u8> {
        let mut x = seed | 1;
        (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 24) as u8
            })
            .collect()
    }

    async fn chunk_all(data: &[u8], spec: ChunkerSpec) -> Result<Vec<Bytes>> {
        let mut reader = ChunkReader::new(data, spec.splitter()?);
        let mut out = Vec::new();
        while let Some(c) = reader
            .next_chunk()
            .await
            .map_err(|e| Error::io("read", e))?
        {
            out.push(c);
        }
        Ok(out)
    }

    #[tokio::test]
    async fn chunks_reassemble_at_sizes_around_every_bound() -> Result<()> {
        let spec = ChunkerSpec::fastcdc(1024);
        let data = pseudo_random(200_000, 7);
        let bounds = [spec.min, spec.avg, spec.max, READ_BLOCK as u32];
        for bound in bounds {
            for len in [bound as usize - 1, bound as usize, bound as usize + 1] {
                let input = &data[..len.min(data.len())];
                let chunks = chunk_all(input, spec).await?;
                assert_eq!(chunks.concat(), input, "len {len}");
                assert!(chunks.iter().all(|c| c.len() <= spec.max as usize));
                let all_but_last = &chunks[..chunks.len().saturating_sub(1)];
                assert!(all_but_last.iter().all(|c| c.len() >= spec.min as usize));
            }
        }
        assert!(chunk_all(&[], spec).await?.is_empty());
        Ok(())
    }

    #[tokio::test]
    async fn streaming_cuts_match_in_memory_cuts() -> Result<()> {
        let spec = ChunkerSpec::default();
        let data = pseudo_random(3 * READ_BLOCK + 12345, 3);
        let streamed: Vec<usize> = chunk_all(&data, spec)
            .await?
            .iter()
            .map(Bytes::len)
            .collect();
        let splitter = spec.splitter()?;
        let in_memory: Vec<usize> = splitter.cut_all(&data).map(|r| r.len()).collect();
        assert_eq!(streamed, in_memory);
        Ok(())
    }

    #[tokio::test]
    async fn an_insertion_changes_only_nearby_chunks() -> Result<()> {
        let spec = ChunkerSpec::default();
        let data = pseudo_random(2_000_000, 11);
        let mut edited = data.clone();
        edited.splice(1_000_000..1_000_000, b"inserted".iter().copied());
        let a = chunk_all(&data, spec).await?;
        let b = chunk_all(&edited, spec).await?;
        let set: std::collections::HashSet<&Bytes> = a.iter().collect();
        let shared = b.iter().filter(|c| set.contains(c)).count();
        assert!(
            shared + 3 >= b.len(),
            "only {shared} of {} chunks shared",
            b.len()
        );
        Ok(())
    }

    #[test]
    fn spec_validation_refuses_out_of_range_bounds() {
        assert!(ChunkerSpec::default().validate().is_ok());
        assert!(ChunkerSpec::fastcdc(16).validate().is_err());
        let odd = ChunkerSpec {
            min: 1001,
            ..ChunkerSpec::default()
        };
        assert!(odd.validate().is_err());
    }
}
