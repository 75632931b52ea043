//! Manifests: a blob as an ordered list of chunks.
//!
//! # Encoding, format 1 (all integers little-endian)
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `SCM` and format byte `1` |
//! | 4 | 1 | chunker algorithm (see [`ChunkerAlgorithm`]) |
//! | 5 | 12 | chunker min, avg, max: three `u32` |
//! | 17 | 32 | blob id (BLAKE3 of the whole content) |
//! | 49 | 8 | total length `u64` |
//! | 57 | 8 | entry count `u64` |
//! | 65 | 36 × count | entries: chunk id (32 bytes), chunk length `u32` |
//!
//! # Encoding, format 2: a SCIP-aware cut
//!
//! Written only for a blob cut by [`crate::scip`] (a plain cut keeps format 1, byte for byte).
//!
//! | offset | size | field |
//! | --- | --- | --- |
//! | 0 | 4 | magic `SCM` and format byte `2` |
//! | 4 | 13 | chunker algorithm, min, avg, max, as in format 1 |
//! | 17 | 1 | SCIP splitter version ([`crate::scip::SPLITTER_VERSION`]; 0 = plain) |
//! | 18 | 32 | blob id (BLAKE3 of the whole content, versions restored) |
//! | 50 | 8 | total length `u64` |
//! | 58 | 8 | entry count `u64` |
//! | 66 | 37 × count | entries: chunk id (32 bytes), chunk length `u32`, flags `u8` (bit 0: the chunk is normalized) |
//! | | 4 | version table entry count `u32` |
//! | | per entry | length `u8`, placeholder, version (both of that length), sorted by placeholder |
//!
//! The [`ManifestId`] is the BLAKE3 hash of the encoding, so manifests are content-addressed
//! like chunks. A decoder checks that the entry count matches the remaining bytes (and a
//! caller-given limit) before allocating, that every length lies in `1..=max`, that the
//! lengths add up to the total, and (format 2) that the table is well-formed and that a
//! normalized entry has a table to restore it with.

use bytes::{BufMut, Bytes, BytesMut};

use crate::chunking::{ChunkerAlgorithm, ChunkerSpec};
use crate::error::{Error, Result};
use crate::ids::{BlobId, ChunkId, ManifestId};
use crate::scip::VersionTable;
use crate::scip::versions::{MAX_TABLE_ENTRIES, MAX_VERSION_LEN};

const MAGIC: [u8; 4] = *b"SCM\x01";
const MAGIC_2: [u8; 4] = *b"SCM\x02";
/// Bytes of the encoding before the entries.
pub const HEADER_LEN: usize = 65;
/// Bytes of one encoded entry.
pub const ENTRY_LEN: usize = 36;
/// Format 2: bytes before the entries, and of one entry.
const HEADER_LEN_2: usize = 66;
const ENTRY_LEN_2: usize = 37;
/// Format 2 entry flag: the chunk is stored normalized.
const FLAG_NORMALIZED: u8 = 1;
/// Most entries one manifest may hold: 4 Mi chunks, a 128 GiB blob at the default 32 KiB
/// average chunk size ([`crate::chunking::DEFAULT_AVG_CHUNK`]).
pub const MAX_CHUNKS_PER_BLOB: usize = 4 << 20;

/// Length of the encoding of a plain manifest of `entries` entries.
pub const fn encoded_len(entries: usize) -> usize {
    HEADER_LEN + ENTRY_LEN * entries
}

/// The longest encoding of a manifest of at most `entries` entries, in either format.
pub const fn max_encoded_len(entries: usize) -> usize {
    HEADER_LEN_2 + ENTRY_LEN_2 * entries + 4 + MAX_TABLE_ENTRIES * (1 + 2 * MAX_VERSION_LEN)
}

/// One chunk of a blob.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ManifestEntry {
    /// The chunk.
    pub id: ChunkId,
    /// Its raw length.
    pub len: u32,
}

/// A blob's chunk list.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Manifest {
    chunker: ChunkerSpec,
    blob: BlobId,
    total_len: u64,
    entries: Vec<ManifestEntry>,
    /// `offsets[i]` is where entry `i` starts in the blob; one more element holds the total.
    offsets: Vec<u64>,
    /// How a SCIP-aware cut stored the blob; `None` for a plain cut.
    scip: Option<Box<ScipLayout>>,
}

/// What a SCIP-aware cut adds to a manifest.
#[derive(Clone, Debug, PartialEq, Eq)]
struct ScipLayout {
    splitter: u8,
    /// One per entry.
    normalized: Vec<bool>,
    versions: VersionTable,
}

impl Manifest {
    /// Builds a manifest, checking that the entries add up to `total_len`.
    pub fn new(
        chunker: ChunkerSpec,
        blob: BlobId,
        total_len: u64,
        entries: Vec<ManifestEntry>,
    ) -> Result<Self> {
        let mut offsets = Vec::with_capacity(entries.len() + 1);
        let mut at = 0u64;
        for e in &entries {
            if e.len == 0 || e.len > chunker.max {
                return Err(Error::InvalidArgument(format!(
                    "manifest entry {} has length {}, outside 1..={}",
                    e.id, e.len, chunker.max
                )));
            }
            offsets.push(at);
            at += u64::from(e.len);
        }
        offsets.push(at);
        if at != total_len {
            return Err(Error::InvalidArgument(format!(
                "manifest chunks add up to {at} bytes, but the blob is declared as {total_len}"
            )));
        }
        Ok(Self {
            chunker,
            blob,
            total_len,
            entries,
            offsets,
            scip: None,
        })
    }

    /// Records a SCIP-aware cut: the splitter version, which entries are normalized (one flag
    /// per entry) and the table that restores them. A cut by splitter 0 with nothing
    /// normalized is a plain manifest.
    pub fn with_scip(
        mut self,
        splitter: u32,
        normalized: Vec<bool>,
        versions: VersionTable,
    ) -> Result<Self> {
        let splitter = u8::try_from(splitter).map_err(|_| {
            Error::InvalidArgument(format!("unknown SCIP splitter version {splitter}"))
        })?;
        if normalized.len() != self.entries.len() {
            return Err(Error::InvalidArgument(format!(
                "{} normalization flags for {} manifest entries",
                normalized.len(),
                self.entries.len()
            )));
        }
        let any = normalized.iter().any(|&n| n);
        if any && versions.is_empty() {
            return Err(Error::InvalidArgument(
                "the manifest marks chunks normalized but carries no version table".into(),
            ));
        }
        self.scip = (splitter != 0 || any || !versions.is_empty()).then(|| {
            Box::new(ScipLayout {
                splitter,
                normalized,
                versions,
            })
        });
        Ok(self)
    }

    /// The SCIP splitter version that cut the blob (0 = plain FastCDC).
    pub fn splitter(&self) -> u32 {
        self.scip.as_ref().map_or(0, |s| u32::from(s.splitter))
    }

    /// Whether entry `index` is stored normalized (read it back through [`Self::versions`]).
    pub fn is_normalized(&self, index: usize) -> bool {
        self.scip
            .as_ref()
            .is_some_and(|s| s.normalized.get(index).copied().unwrap_or(false))
    }

    /// Whether any entry is stored normalized.
    pub fn has_normalized(&self) -> bool {
        self.scip
            .as_ref()
            .is_some_and(|s| s.normalized.iter().any(|&n| n))
    }

    /// The table that restores normalized entries (empty for a plain manifest).
    pub fn versions(&self) -> &VersionTable {
        static EMPTY: std::sync::OnceLock<VersionTable> = std::sync::OnceLock::new();
        match &self.scip {
            Some(s) => &s.versions,
            None => EMPTY.get_or_init(VersionTable::new),
        }
    }

    /// The chunker that cut this blob.
    pub fn chunker(&self) -> ChunkerSpec {
        self.chunker
    }

    /// The blob's id.
    pub fn blob(&self) -> BlobId {
        self.blob
    }

    /// The blob's length.
    pub fn total_len(&self) -> u64 {
        self.total_len
    }

    /// The chunks, in order.
    pub fn entries(&self) -> &[ManifestEntry] {
        &self.entries
    }

    /// Where entry `index` starts in the blob.
    pub fn offset_of(&self, index: usize) -> u64 {
        self.offsets.get(index).copied().unwrap_or(self.total_len)
    }

    /// The index of the entry holding byte `offset` (or `entries().len()` at or past the end).
    pub fn entry_at(&self, offset: u64) -> usize {
        if offset >= self.total_len {
            return self.entries.len();
        }
        // offsets is sorted; the last start <= offset.
        self.offsets.partition_point(|&start| start <= offset) - 1
    }

    /// The canonical encoding: format 1 for a plain cut, format 2 for a SCIP-aware one.
    pub fn encode(&self) -> Bytes {
        if let Some(scip) = &self.scip {
            return self.encode_2(scip);
        }
        let mut out = BytesMut::with_capacity(encoded_len(self.entries.len()));
        out.put_slice(&MAGIC);
        out.put_u8(self.chunker.algorithm as u8);
        out.put_u32_le(self.chunker.min);
        out.put_u32_le(self.chunker.avg);
        out.put_u32_le(self.chunker.max);
        out.put_slice(self.blob.as_bytes());
        out.put_u64_le(self.total_len);
        out.put_u64_le(self.entries.len() as u64);
        for e in &self.entries {
            out.put_slice(e.id.as_bytes());
            out.put_u32_le(e.len);
        }
        out.freeze()
    }

    fn encode_2(&self, scip: &ScipLayout) -> Bytes {
        let table = scip.versions.entries();
        let table_len: usize = table.iter().map(|(p, _)| 1 + 2 * p.len()).sum();
        let mut out = BytesMut::with_capacity(
            HEADER_LEN_2 + ENTRY_LEN_2 * self.entries.len() + 4 + table_len,
        );
        out.put_slice(&MAGIC_2);
        out.put_u8(self.chunker.algorithm as u8);
        out.put_u32_le(self.chunker.min);
        out.put_u32_le(self.chunker.avg);
        out.put_u32_le(self.chunker.max);
        out.put_u8(scip.splitter);
        out.put_slice(self.blob.as_bytes());
        out.put_u64_le(self.total_len);
        out.put_u64_le(self.entries.len() as u64);
        for (e, &normalized) in self.entries.iter().zip(&scip.normalized) {
            out.put_slice(e.id.as_bytes());
            out.put_u32_le(e.len);
            out.put_u8(if normalized { FLAG_NORMALIZED } else { 0 });
        }
        out.put_u32_le(table.len() as u32);
        for (placeholder, version) in table {
            // Placeholders are at most MAX_VERSION_LEN (255) bytes.
            out.put_u8(placeholder.len() as u8);
            out.put_slice(placeholder);
            out.put_slice(version);
        }
        out.freeze()
    }

    /// The content address of [`Manifest::encode`].
    pub fn id(&self) -> ManifestId {
        ManifestId::of(&self.encode())
    }

    /// Decodes, refusing more than `max_entries` entries.
    pub fn decode(bytes: &[u8], max_entries: usize) -> Result<Self> {
        let bad = |why: String| Error::Format(format!("manifest: {why}"));
        if bytes.len() < HEADER_LEN {
            return Err(bad(format!(
                "{} bytes is shorter than the header",
                bytes.len()
            )));
        }
        if bytes[..4] == MAGIC_2 {
            return Self::decode_2(bytes, max_entries);
        }
        if bytes[..4] != MAGIC {
            return Err(bad("unknown magic or format version".into()));
        }
        let u32_at = |at: usize| {
            let mut b = [0u8; 4];
            b.copy_from_slice(&bytes[at..at + 4]);
            u32::from_le_bytes(b)
        };
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_le_bytes(b)
        };
        let chunker = ChunkerSpec {
            algorithm: ChunkerAlgorithm::from_byte(bytes[4]).map_err(|e| bad(e.to_string()))?,
            min: u32_at(5),
            avg: u32_at(9),
            max: u32_at(13),
        };
        chunker.validate().map_err(|e| bad(e.to_string()))?;
        let blob = BlobId::from_slice(&bytes[17..49])?;
        let total_len = u64_at(49);
        let count = u64_at(57);
        let body = &bytes[HEADER_LEN..];
        if count > max_entries as u64
            || count.checked_mul(ENTRY_LEN as u64) != Some(body.len() as u64)
        {
            return Err(bad(format!(
                "declares {count} entries but holds {} bytes of entries (limit {max_entries})",
                body.len()
            )));
        }
        let entries = body
            .chunks_exact(ENTRY_LEN)
            .map(|e| {
                let mut len = [0u8; 4];
                len.copy_from_slice(&e[32..]);
                Ok(ManifestEntry {
                    id: ChunkId::from_slice(&e[..32])?,
                    len: u32::from_le_bytes(len),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        Self::new(chunker, blob, total_len, entries).map_err(|e| bad(e.to_string()))
    }

    fn decode_2(bytes: &[u8], max_entries: usize) -> Result<Self> {
        let bad = |why: String| Error::Format(format!("manifest: {why}"));
        let mut r = crate::byte_reader::ByteReader::new(&bytes[4..]);
        let short = || bad("ends early".into());
        let algorithm = r.u8().ok_or_else(short)?;
        let chunker = ChunkerSpec {
            algorithm: ChunkerAlgorithm::from_byte(algorithm).map_err(|e| bad(e.to_string()))?,
            min: r.u32().ok_or_else(short)?,
            avg: r.u32().ok_or_else(short)?,
            max: r.u32().ok_or_else(short)?,
        };
        chunker.validate().map_err(|e| bad(e.to_string()))?;
        let splitter = r.u8().ok_or_else(short)?;
        let blob = BlobId::from_slice(r.take(32).ok_or_else(short)?)?;
        let total_len = r.u64().ok_or_else(short)?;
        let count = r.u64().ok_or_else(short)?;
        if count > max_entries as u64
            || count.saturating_mul(ENTRY_LEN_2 as u64) > r.remaining() as u64
        {
            return Err(bad(format!(
                "declares {count} entries but holds {} bytes after the header (limit \
                 {max_entries})",
                r.remaining()
            )));
        }
        let count = count as usize;
        let mut entries = Vec::with_capacity(count);
        let mut normalized = Vec::with_capacity(count);
        for _ in 0..count {
            let id = ChunkId::from_slice(r.take(32).ok_or_else(short)?)?;
            let len = r.u32().ok_or_else(short)?;
            let flags = r.u8().ok_or_else(short)?;
            if flags & !FLAG_NORMALIZED != 0 {
                return Err(bad(format!("entry {id} has unknown flags {flags:#x}")));
            }
            entries.push(ManifestEntry { id, len });
            normalized.push(flags & FLAG_NORMALIZED != 0);
        }
        let table_count = r.u32().ok_or_else(short)? as usize;
        if table_count > MAX_TABLE_ENTRIES {
            return Err(bad(format!(
                "declares {table_count} version table entries, more than {MAX_TABLE_ENTRIES}"
            )));
        }
        let mut versions = VersionTable::new();
        let mut previous: Option<&[u8]> = None;
        for _ in 0..table_count {
            let len = usize::from(r.u8().ok_or_else(short)?);
            let placeholder = r.take(len).ok_or_else(short)?;
            let version = r.take(len).ok_or_else(short)?;
            if previous.is_some_and(|p| p >= placeholder) {
                return Err(bad("version table is not sorted".into()));
            }
            previous = Some(placeholder);
            versions
                .insert(placeholder, version)
                .map_err(|e| bad(e.to_string()))?;
        }
        if r.remaining() != 0 {
            return Err(bad(format!(
                "{} bytes after the version table",
                r.remaining()
            )));
        }
        Self::new(chunker, blob, total_len, entries)
            .and_then(|m| m.with_scip(u32::from(splitter), normalized, versions))
            .map_err(|e| bad(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn manifests_round_trip_their_encoding(lens in prop::collection::vec(1u32..=65_536, 0..300), seed in any::<u64>()) {
            let entries: Vec<ManifestEntry> = lens.iter().enumerate().map(|(i, &len)| ManifestEntry {
                id: ChunkId::of(&[seed.to_le_bytes(), (i as u64).to_le_bytes()].concat()),
                len,
            }).collect();
            let total = lens.iter().map(|&l| u64::from(l)).sum();
            let m = Manifest::new(ChunkerSpec::default(), BlobId::of(&seed.to_le_bytes()), total, entries)
                .map_err(|e| TestCaseError::fail(e.to_string()))?;
            let decoded = Manifest::decode(&m.encode(), 1 << 20).map_err(|e| TestCaseError::fail(e.to_string()))?;
            prop_assert_eq!(&decoded, &m);
            prop_assert_eq!(decoded.id(), m.id());
            for (i, e) in m.entries().iter().enumerate() {
                let start = m.offset_of(i);
                prop_assert_eq!(m.entry_at(start), i);
                prop_assert_eq!(m.entry_at(start + u64::from(e.len) - 1), i);
            }
        }
    }

    fn scip_manifest(flags: &[bool]) -> Result<Manifest> {
        let entries: Vec<ManifestEntry> = (0..flags.len())
            .map(|i| ManifestEntry {
                id: ChunkId::of(&i.to_le_bytes()),
                len: 100,
            })
            .collect();
        let mut versions = VersionTable::new();
        let p = crate::scip::versions::placeholder(b"npm vue", 6);
        versions.insert(&p, b"3.5.40")?;
        Manifest::new(
            ChunkerSpec::default(),
            BlobId::of(b"blob"),
            100 * flags.len() as u64,
            entries,
        )?
        .with_scip(1, flags.to_vec(), versions)
    }

    #[test]
    fn scip_manifests_round_trip_in_format_2_and_plain_ones_keep_format_1() -> Result<()> {
        let m = scip_manifest(&[true, false, true])?;
        let bytes = m.encode();
        assert_eq!(bytes[3], 2);
        let back = Manifest::decode(&bytes, 10)?;
        assert_eq!(back, m);
        assert_eq!(back.id(), m.id());
        assert!(back.is_normalized(0) && !back.is_normalized(1) && back.is_normalized(2));
        assert_eq!(back.versions().len(), 1);
        assert_eq!(back.splitter(), 1);
        assert!(bytes.len() <= max_encoded_len(3));
        // A plain manifest through with_scip(0, no flags, no table) is format 1 still.
        let plain = Manifest::new(ChunkerSpec::default(), BlobId::of(b"x"), 0, vec![])?;
        let same = plain.clone().with_scip(0, vec![], VersionTable::new())?;
        assert_eq!(same.encode(), plain.encode());
        assert_eq!(plain.encode()[3], 1);
        Ok(())
    }

    #[test]
    fn damaged_format_2_encodings_are_refused() -> Result<()> {
        let bytes = scip_manifest(&[true, false])?.encode();
        for cut in 0..bytes.len() {
            assert!(Manifest::decode(&bytes[..cut], 10).is_err(), "cut at {cut}");
        }
        let mut flags = bytes.to_vec();
        flags[HEADER_LEN_2 + 36] = 0x80;
        assert!(Manifest::decode(&flags, 10).is_err());
        let mut trailing = bytes.to_vec();
        trailing.push(0);
        assert!(Manifest::decode(&trailing, 10).is_err());
        // Normalized entries without a table.
        let e = ManifestEntry {
            id: ChunkId::of(b"x"),
            len: 1,
        };
        let m = Manifest::new(ChunkerSpec::default(), BlobId::of(b"x"), 1, vec![e])?;
        assert!(m.with_scip(1, vec![true], VersionTable::new()).is_err());
        Ok(())
    }

    #[test]
    fn manifest_whose_lengths_disagree_with_total_is_refused() {
        let e = ManifestEntry {
            id: ChunkId::of(b"x"),
            len: 10,
        };
        assert!(Manifest::new(ChunkerSpec::default(), BlobId::of(b""), 11, vec![e]).is_err());
    }

    #[test]
    fn truncated_or_oversized_encodings_are_refused() -> Result<()> {
        let e = ManifestEntry {
            id: ChunkId::of(b"x"),
            len: 1,
        };
        let m = Manifest::new(ChunkerSpec::default(), BlobId::of(b"x"), 2, vec![e, e])?;
        let bytes = m.encode();
        assert!(Manifest::decode(&bytes[..bytes.len() - 1], 10).is_err());
        assert!(Manifest::decode(&bytes, 1).is_err());
        let mut lying = bytes.to_vec();
        lying[57..65].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(Manifest::decode(&lying, usize::MAX).is_err());
        Ok(())
    }
}
