//! Version placeholders and the per-blob table that maps them back to the real versions.
//!
//! A placeholder has the length of the version it stands for: [`MARK`], `len - 2` characters
//! of `[A-Za-z0-9_-]` derived from the package's identity (scheme, manager, name) and the
//! length, and [`MARK`] again. The same package at another version of the same length gets
//! the same placeholder, which is the point. Restoring a stored chunk finds each [`MARK`] pair
//! and puts the table's version in its place; a chunk is stored normalized only when its
//! original bytes hold no [`MARK`] at all, so every pair is a placeholder.

use std::collections::HashMap;

use crate::error::{Error, Result};

/// The byte that opens and closes every placeholder (U+0001, valid UTF-8, absent from real
/// symbol strings).
pub const MARK: u8 = 0x01;
/// Shortest version replaced: two marks and at least one character.
pub const MIN_VERSION_LEN: usize = 3;
/// Longest version replaced (its length is stored in one byte).
pub const MAX_VERSION_LEN: usize = 255;
/// Most placeholders one blob may define; versions past it stay as they are.
pub const MAX_TABLE_ENTRIES: usize = 16_384;

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Whether `b` is a placeholder character.
const fn in_alphabet(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
}

/// Where `buf` holds the pattern of a placeholder in a symbol (`' ' MARK [A-Za-z0-9_-]+ MARK
/// ' '`): the ranges of the placeholders themselves, without the spaces, in order.
pub fn placeholders_in(buf: &[u8]) -> impl Iterator<Item = std::ops::Range<usize>> + '_ {
    let mut at = 0usize;
    std::iter::from_fn(move || next_placeholder(buf, &mut at, None))
}

/// The next placeholder pattern of `buf` at or after `*at` (see [`placeholders_in`]), moving
/// `*at` past it. `likely` is a placeholder seen before (most of a chunk's placeholders are
/// the one before): where the bytes after a ` MARK` are `likely` and a space, that is the
/// match the character scan would find, so the scan is skipped.
fn next_placeholder(
    buf: &[u8],
    at: &mut usize,
    likely: Option<&[u8]>,
) -> Option<std::ops::Range<usize>> {
    static OPENING: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b" \x01"));
    while let Some(found) = OPENING.find(buf.get(*at..)?) {
        let open = *at + found + 1;
        *at = open;
        if let Some(p) = likely
            && buf[open..].starts_with(p)
            && buf.get(open + p.len()) == Some(&b' ')
        {
            *at = open + p.len();
            return Some(open..open + p.len());
        }
        let inner = buf[open + 1..]
            .iter()
            .take_while(|&&b| in_alphabet(b))
            .count();
        let close = open + 1 + inner;
        if inner > 0 && buf.get(close) == Some(&MARK) && buf.get(close + 1) == Some(&b' ') {
            *at = close + 1;
            return Some(open..close + 1);
        }
    }
    None
}

/// The placeholder for a version of `len` bytes of the package named by `identity`.
pub(crate) fn placeholder(identity: &[u8], len: usize) -> Vec<u8> {
    let mut hasher = blake3::Hasher::new_derive_key("scipcache 2026 version placeholder v1");
    hasher.update(&(len as u64).to_le_bytes());
    hasher.update(identity);
    let mut inner = vec![0u8; len.saturating_sub(2)];
    hasher.finalize_xof().fill(&mut inner);
    let mut out = Vec::with_capacity(len);
    out.push(MARK);
    out.extend(inner.iter().map(|b| ALPHABET[usize::from(b & 63)]));
    out.push(MARK);
    out
}

/// Placeholder → version for one blob. Looked up once per placeholder a read restores, so
/// keyed by xxh3 (seeded once per process, so a client cannot choose colliding placeholders
/// ahead of time) rather than SipHash.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VersionTable {
    map: HashMap<Box<[u8]>, Box<[u8]>, xxhash_rust::xxh3::Xxh3Builder>,
}

impl Default for VersionTable {
    fn default() -> Self {
        static SEED: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
            use std::hash::BuildHasher;
            std::collections::hash_map::RandomState::new().hash_one(0u64)
        });
        Self {
            map: HashMap::with_hasher(xxhash_rust::xxh3::Xxh3Builder::new().with_seed(*SEED)),
        }
    }
}

impl VersionTable {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// Placeholders defined.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether no placeholder is defined.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// `(placeholder, version)` pairs, sorted by placeholder (the canonical order).
    pub fn entries(&self) -> Vec<(&[u8], &[u8])> {
        let mut all: Vec<(&[u8], &[u8])> = self.map.iter().map(|(p, v)| (&p[..], &v[..])).collect();
        all.sort_unstable();
        all
    }

    /// Adds a pair read from a manifest or a commit, checking it: a well-formed placeholder,
    /// a version of the same length without [`MARK`], and no second version for it.
    pub fn insert(&mut self, placeholder: &[u8], version: &[u8]) -> Result<()> {
        let len = placeholder.len();
        let well_formed = (MIN_VERSION_LEN..=MAX_VERSION_LEN).contains(&len)
            && placeholder[0] == MARK
            && placeholder[len - 1] == MARK
            && placeholder[1..len - 1].iter().all(|b| ALPHABET.contains(b))
            && version.len() == len
            && !version.contains(&MARK);
        if !well_formed {
            return Err(Error::InvalidArgument(format!(
                "a version table entry is malformed (placeholder of {len} bytes, version of {} \
                 bytes); placeholders are {MIN_VERSION_LEN}..={MAX_VERSION_LEN} bytes, framed by \
                 U+0001, as long as their version",
                version.len()
            )));
        }
        if self.map.len() >= MAX_TABLE_ENTRIES {
            return Err(Error::InvalidArgument(format!(
                "a version table holds more than {MAX_TABLE_ENTRIES} entries"
            )));
        }
        if !self.claim(placeholder, version) {
            return Err(Error::InvalidArgument(
                "a version table gives one placeholder two versions".into(),
            ));
        }
        Ok(())
    }

    /// Makes `placeholder` stand for `version` unless it already stands for another one or
    /// the table is full; says whether it now stands for `version`.
    pub(crate) fn claim(&mut self, placeholder: &[u8], version: &[u8]) -> bool {
        match self.map.get(placeholder) {
            Some(existing) => &existing[..] == version,
            None if self.map.len() < MAX_TABLE_ENTRIES => {
                self.map.insert(placeholder.into(), version.into());
                true
            }
            None => false,
        }
    }

    /// Puts the real versions back into a normalized chunk, in place; returns how many
    /// placeholders it replaced. A placeholder the table lacks means the chunk or the
    /// manifest is damaged.
    pub fn restore_in_place(&self, buf: &mut [u8]) -> Result<usize> {
        let mut lookup = Lookup::new(self);
        let (mut at, mut restored) = (0, 0);
        // The scan goes on from the end of each placeholder, so it never sees a restored one.
        while let Some(range) = next_placeholder(buf, &mut at, lookup.last_placeholder()) {
            let version = lookup.get(&buf[range.clone()]).ok_or_else(|| {
                Error::Format(
                    "a normalized chunk names a version placeholder its blob's manifest does \
                     not define; the chunk or the manifest is damaged, so push the blob again"
                        .into(),
                )
            })?;
            buf[range].copy_from_slice(version);
            restored += 1;
        }
        Ok(restored)
    }

    /// Whether `stored` restores to exactly `original` (compared piece by piece, no copy).
    pub fn restores_to(&self, stored: &[u8], original: &[u8]) -> bool {
        if stored.len() != original.len() {
            return false;
        }
        let (mut at, mut scan) = (0, 0);
        let mut lookup = Lookup::new(self);
        while let Some(range) = next_placeholder(stored, &mut scan, lookup.last_placeholder()) {
            let Some(version) = lookup.get(&stored[range.clone()]) else {
                return false;
            };
            if stored[at..range.start] != original[at..range.start]
                || *version != original[range.clone()]
            {
                return false;
            }
            at = range.end;
        }
        stored[at..] == original[at..]
    }

    /// [`VersionTable::restore_in_place`] on decoded bytes: where they lie when nothing else
    /// holds them (the usual case, straight out of a decode), else on a copy.
    pub fn restore_bytes(&self, stored: bytes::Bytes) -> Result<bytes::Bytes> {
        let mut buf = stored
            .try_into_mut()
            .unwrap_or_else(|shared| bytes::BytesMut::from(&shared[..]));
        self.restore_in_place(&mut buf)?;
        Ok(buf.freeze())
    }

    /// [`VersionTable::restore_in_place`] on a copy.
    pub fn restore(&self, stored: &[u8]) -> Result<Vec<u8>> {
        let mut out = stored.to_vec();
        self.restore_in_place(&mut out)?;
        Ok(out)
    }
}

/// Table lookups that remember the last hit: the symbols of a document mostly name one
/// package, so most placeholders of a chunk are the one before.
struct Lookup<'a> {
    table: &'a VersionTable,
    last: Option<(&'a [u8], &'a [u8])>,
}

impl<'a> Lookup<'a> {
    fn new(table: &'a VersionTable) -> Self {
        Self { table, last: None }
    }

    /// The placeholder of the last hit.
    fn last_placeholder(&self) -> Option<&'a [u8]> {
        self.last.map(|(p, _)| p)
    }

    fn get(&mut self, placeholder: &[u8]) -> Option<&'a [u8]> {
        if let Some((p, v)) = self.last
            && p == placeholder
        {
            return Some(v);
        }
        let (p, v) = self.table.map.get_key_value(placeholder)?;
        self.last = Some((p, v));
        Some(v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_keep_the_length_and_depend_on_package_and_length_only() {
        for len in [3, 6, 40, 255] {
            let p = placeholder(b"npm @vue/runtime-core", len);
            assert_eq!(p.len(), len);
            assert_eq!(p, placeholder(b"npm @vue/runtime-core", len));
            assert_eq!(p.iter().filter(|&&b| b == MARK).count(), 2);
        }
        assert_ne!(placeholder(b"a", 40), placeholder(b"b", 40));
    }

    #[test]
    fn restoring_puts_every_version_back_and_refuses_unknown_placeholders() -> Result<()> {
        let mut table = VersionTable::new();
        let p = placeholder(b"x", 6);
        table.insert(&p, b"3.5.40")?;
        let stored = [b"a ".as_slice(), &p, b" b ", &p, b" ."].concat();
        assert_eq!(table.restore(&stored)?, b"a 3.5.40 b 3.5.40 .");
        let other = placeholder(b"y", 6);
        assert!(
            table
                .restore(&[b"a ".as_slice(), &other, b" "].concat())
                .is_err()
        );
        // Mark bytes outside the pattern are left alone.
        let loose = [b"a".as_slice(), &p, b" \x01x\x01", &[MARK, b' ']].concat();
        assert_eq!(table.restore(&loose)?, loose);
        assert!(!table.claim(&p, b"3.5.41"));
        assert!(table.insert(&p, b"3.5.41").is_err());
        assert!(table.insert(&placeholder(b"z", 6), b"3.5").is_err());
        Ok(())
    }

    /// Bytes built of placeholders of a few packages and lengths, their near misses and loose
    /// marks, spaces and letters.
    fn placeholder_soup() -> impl proptest::strategy::Strategy<Value = Vec<u8>> {
        use proptest::prelude::*;
        let piece = prop_oneof![
            (0u8..3, 3usize..8).prop_map(|(pkg, len)| placeholder(&[pkg], len)),
            (0u8..3, 3usize..8).prop_map(|(pkg, len)| {
                let mut p = placeholder(&[pkg], len);
                p.pop();
                p
            }),
            Just(vec![b' ']),
            Just(vec![MARK]),
            Just(b"ab".to_vec()),
        ];
        proptest::collection::vec(piece, 0..40).prop_map(|pieces| pieces.concat())
    }

    proptest::proptest! {
        #[test]
        fn restoring_in_place_matches_a_restore_of_every_scanned_placeholder(
            buf in placeholder_soup()
        ) {
            // Every range the plain scan finds gets a version of its length (loose marks and
            // letters can form placeholders of their own).
            let found: Vec<_> = placeholders_in(&buf).collect();
            let mut table = VersionTable::new();
            for (i, r) in found.iter().enumerate() {
                if !table.map.contains_key(&buf[r.clone()]) {
                    let version: Vec<u8> = (0..r.len()).map(|j| b'0' + ((i + j) % 10) as u8).collect();
                    table.insert(&buf[r.clone()], &version).expect("insert");
                }
            }
            // The reference: those ranges replaced in a copy.
            let mut expected = buf.clone();
            for r in &found {
                expected[r.clone()].copy_from_slice(&table.map[&buf[r.clone()]]);
            }
            let mut restored = buf.clone();
            proptest::prop_assert_eq!(table.restore_in_place(&mut restored).expect("restore"), found.len());
            proptest::prop_assert_eq!(&restored, &expected);
            proptest::prop_assert!(table.restores_to(&buf, &expected));
        }
    }
}
