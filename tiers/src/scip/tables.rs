//! What document and symbol lookups need from a SCIP index: one entry per document (where its
//! bytes lie in the blob, its language and counts) and one per global symbol (where it is
//! defined and which documents reference it, with ranges).
//!
//! [`TableBuilder`] takes a blob's bytes in order, in pieces of any size, and holds at most one
//! document at a time. Each document it finishes comes out as an [`IndexedDocument`] (its
//! entry, the hash of its bytes, and its global symbols' occurrences in it); besides, it
//! gathers which documents name each symbol, which comes out as a [`SymbolRun`] whenever the
//! caller takes one (the store takes one each time it grows past a bound, so memory stays
//! bounded for any index). It follows `scip.proto`:
//! `Index.documents` (2) is read; `Index.metadata` (1) and `.external_symbols` (3) are skipped
//! as they stream by; any other top-level field, another wire type, or a document that is not
//! the wire format of a `Document` makes the blob "not a SCIP index" ([`NotScip`]), which is
//! an answer, not an error: such a blob stays stored and readable, it only has no lookups.
//!
//! In a `Document` the builder reads `relative_path` (1), `occurrences` (2), `symbols` (3, only
//! counted) and `language` (4); in an `Occurrence`, `range` (1, packed or not), `symbol` (2) and
//! `symbol_roles` (3). Local symbols (`local <id>`) name something only inside their document,
//! so they get no symbol entry: a document lookup returns them.
//!
//! # Encodings (varints are LEB128; a range is its count, then each `int32` zigzagged)
//! - [`DocumentEntry`]: offset `u64`, length `u64`, occurrences `u32`, symbols `u32` (all
//!   little-endian), then the language's UTF-8 bytes.
//! - [`DocSymbol`]: count of definition ranges and the ranges, then the same for the other
//!   occurrences. A definition occurrence (role bit 1) is listed among the definitions only.
//!
//! [`SymbolEntry`], a symbol's definitions and references across an index, is what the store
//! answers from these (`store/lookup_rows.rs`).

use std::collections::HashMap;

use super::wire::{self, LEN, Peek};

/// The table layout this build writes; it is recorded with each blob's tables.
pub const TABLE_FORMAT: u8 = 2;
/// `SymbolRole.Definition`.
pub const DEFINITION_ROLE: i32 = 0x1;
/// Largest document the builder holds to read (a larger one makes the blob unindexable).
pub const MAX_INDEXED_DOCUMENT: usize = 512 << 20;
/// Most `int32`s a range may have (SCIP uses 3 or 4).
const MAX_RANGE_LEN: usize = 8;

/// Why a blob has no lookup tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NotScip(pub String);

/// One document of an index.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DocumentEntry {
    /// Where the `Document` message's bytes start in the blob (after its field header).
    pub offset: u64,
    /// Their length.
    pub len: u64,
    /// `Document.language`.
    pub language: String,
    /// Occurrences the document holds.
    pub occurrences: u32,
    /// `SymbolInformation` messages the document holds.
    pub symbols: u32,
}

impl DocumentEntry {
    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(24 + self.language.len());
        out.extend_from_slice(&self.offset.to_le_bytes());
        out.extend_from_slice(&self.len.to_le_bytes());
        out.extend_from_slice(&self.occurrences.to_le_bytes());
        out.extend_from_slice(&self.symbols.to_le_bytes());
        out.extend_from_slice(self.language.as_bytes());
        out
    }

    /// Reads a record [`DocumentEntry::encode`] wrote; `None` when it is not one.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let u64_at = |at: usize| Some(u64::from_le_bytes(b.get(at..at + 8)?.try_into().ok()?));
        let u32_at = |at: usize| Some(u32::from_le_bytes(b.get(at..at + 4)?.try_into().ok()?));
        Some(Self {
            offset: u64_at(0)?,
            len: u64_at(8)?,
            occurrences: u32_at(16)?,
            symbols: u32_at(20)?,
            language: String::from_utf8(b.get(24..)?.to_vec()).ok()?,
        })
    }
}

/// A SCIP range: `[line, start, end]` or `[start_line, start, end_line, end]`.
pub type Range = Vec<i32>;

/// Where one symbol is defined and referenced in an index.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SymbolEntry {
    /// Definition occurrences: document path and range.
    pub definitions: Vec<(String, Range)>,
    /// Documents with other occurrences, in index order, and their ranges.
    pub references: Vec<(String, Vec<Range>)>,
}

/// One global symbol's occurrences in one document.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DocSymbol {
    /// Ranges of its definition occurrences.
    pub definitions: Vec<Range>,
    /// Ranges of its other occurrences.
    pub references: Vec<Range>,
}

impl DocSymbol {
    /// The record's bytes: the definitions' count and ranges, then the references'.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        for ranges in [&self.definitions, &self.references] {
            put_varint(&mut out, ranges.len() as u64);
            for r in ranges {
                put_range(&mut out, r);
            }
        }
        out
    }

    /// Reads a record [`DocSymbol::encode`] wrote; `None` when it is not one.
    pub fn decode(b: &[u8]) -> Option<Self> {
        let mut r = b;
        let mut ranges = || -> Option<Vec<Range>> {
            let n = get_count(&mut r)?;
            (0..n).map(|_| get_range(&mut r)).collect()
        };
        let definitions = ranges()?;
        let references = ranges()?;
        r.is_empty().then_some(Self {
            definitions,
            references,
        })
    }
}

/// A document the builder finished reading.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexedDocument {
    /// Its place among the index's `Document` messages (from 0, counting every one).
    pub ordinal: u32,
    /// `Document.relative_path`.
    pub path: String,
    /// Where it lies in the blob, and its summary.
    pub entry: DocumentEntry,
    /// What names its content: [`document_hash`] of its bytes.
    pub hash: [u8; 32],
    /// Its global symbols, in order, with their occurrences in it.
    pub symbols: Vec<(String, DocSymbol)>,
}

/// In a [`SymbolRun`]: the document holds a definition of the symbol.
pub const DEFINES: u8 = 1;
/// In a [`SymbolRun`]: the document holds another occurrence of the symbol.
pub const REFERENCES: u8 = 2;

/// For each global symbol (in order), the documents that name it since the last run was
/// taken: their ordinals, rising, each with [`DEFINES`] and/or [`REFERENCES`].
pub type SymbolRun = Vec<(String, Vec<(u32, u8)>)>;

/// The name of a document's content: BLAKE3 in derive-key mode over its bytes, under a
/// context of its own (so it is never the id of a chunk or a manifest of the same bytes) that
/// also names [`TABLE_FORMAT`].
pub fn document_hash(doc: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_derive_key("scipcache 2026-12 lookup tables: a document, v2");
    h.update(doc);
    *h.finalize().as_bytes()
}

/// Where the builder is in the top-level field stream.
#[derive(Debug)]
enum State {
    /// At a field header.
    Header,
    /// Skipping the rest of a field's value.
    Skip(u64),
    /// Gathering a document's bytes: where it starts and how long it is.
    Document { offset: u64, len: usize },
}

/// Reads a blob's bytes into [`IndexedDocument`]s and [`SymbolRun`]s: see the module docs.
#[derive(Debug)]
pub struct TableBuilder {
    state: State,
    /// Bytes not yet consumed (a header cut by a piece's end, or a document being gathered).
    pending: Vec<u8>,
    /// Offset in the blob of `pending[0]`.
    at: u64,
    failed: Option<NotScip>,
    /// `Document` messages read so far.
    next_ordinal: u32,
    /// Documents read and not yet taken.
    done: Vec<IndexedDocument>,
    /// The symbol run being gathered, and about how many bytes of memory it holds.
    run: HashMap<String, Vec<(u32, u8)>>,
    run_bytes: usize,
}

impl Default for TableBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl TableBuilder {
    /// A builder at the start of a blob.
    pub fn new() -> Self {
        Self {
            state: State::Header,
            pending: Vec::new(),
            at: 0,
            failed: None,
            next_ordinal: 0,
            done: Vec::new(),
            run: HashMap::new(),
            run_bytes: 0,
        }
    }

    /// Whether the blob already showed it is not an index (the rest need not be read).
    pub fn has_failed(&self) -> bool {
        self.failed.is_some()
    }

    /// The documents finished since the last call, in index order.
    pub fn take_documents(&mut self) -> Vec<IndexedDocument> {
        std::mem::take(&mut self.done)
    }

    /// About how many bytes of memory the symbol run being gathered holds.
    pub fn run_bytes(&self) -> usize {
        self.run_bytes
    }

    /// The symbol run gathered since the last call, sorted by symbol; the builder starts a
    /// new one.
    pub fn take_run(&mut self) -> SymbolRun {
        self.run_bytes = 0;
        let mut run: SymbolRun = std::mem::take(&mut self.run).into_iter().collect();
        run.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        run
    }

    /// `Document` messages read so far.
    pub fn documents_read(&self) -> u32 {
        self.next_ordinal
    }

    /// Takes the next bytes of the blob.
    pub fn feed(&mut self, mut piece: &[u8]) {
        while !piece.is_empty() && self.failed.is_none() {
            match self.state {
                State::Skip(left) => {
                    let n = usize::try_from(left).unwrap_or(usize::MAX).min(piece.len());
                    piece = &piece[n..];
                    self.at += n as u64;
                    let left = left - n as u64;
                    self.state = if left == 0 {
                        State::Header
                    } else {
                        State::Skip(left)
                    };
                }
                State::Document { offset, len } => {
                    let want = len - self.pending.len();
                    let n = want.min(piece.len());
                    self.pending.extend_from_slice(&piece[..n]);
                    piece = &piece[n..];
                    if self.pending.len() == len {
                        let doc = std::mem::take(&mut self.pending);
                        self.add_document(offset, &doc);
                        self.at = offset + len as u64;
                        self.state = State::Header;
                    }
                }
                State::Header => {
                    // A header is at most 20 bytes: join a cut one with the next piece.
                    let take = piece.len().min(20);
                    self.pending.extend_from_slice(&piece[..take]);
                    match wire::peek(&self.pending) {
                        Peek::NeedMore => {
                            piece = &piece[take..];
                            if self.pending.len() >= 20 {
                                self.fail("a top-level field header is not the wire format");
                            }
                        }
                        Peek::Malformed => {
                            self.fail("a top-level field header is not the wire format");
                        }
                        Peek::Header(h) => {
                            // Of the bytes just taken, those past the header go back.
                            let used = h.header_len - (self.pending.len() - take);
                            piece = &piece[used..];
                            self.pending.clear();
                            self.at += h.header_len as u64;
                            self.start_field(h);
                        }
                    }
                }
            }
        }
    }

    fn start_field(&mut self, h: wire::Header) {
        if h.wire != LEN || !(1..=3).contains(&h.number) {
            return self.fail(&format!(
                "top-level field {} (wire type {}) is not part of a SCIP Index",
                h.number, h.wire
            ));
        }
        if h.value_len == 0 {
            if h.number == 2 {
                self.add_document(self.at, &[]);
            }
            return;
        }
        if h.number == 2 {
            match usize::try_from(h.value_len) {
                Ok(len) if len <= MAX_INDEXED_DOCUMENT => {
                    self.pending.reserve(len);
                    self.state = State::Document {
                        offset: self.at,
                        len,
                    };
                }
                _ => self.fail(&format!(
                    "a document of {} bytes is larger than the {} MiB lookups index",
                    h.value_len,
                    MAX_INDEXED_DOCUMENT >> 20
                )),
            }
        } else {
            self.state = State::Skip(h.value_len);
        }
    }

    fn fail(&mut self, why: &str) {
        if self.failed.is_none() {
            self.failed = Some(NotScip(format!("at byte {}: {why}", self.at)));
        }
    }

    fn add_document(&mut self, offset: u64, doc: &[u8]) {
        let Some(read) = read_document(doc) else {
            return self.fail("a document is not a valid SCIP Document");
        };
        let ordinal = self.next_ordinal;
        self.next_ordinal = self.next_ordinal.saturating_add(1);
        let mut by_symbol: HashMap<String, DocSymbol> = HashMap::new();
        for (symbol, range, roles) in read.occurrences.iter().cloned() {
            if symbol.is_empty() || symbol.starts_with("local ") {
                continue;
            }
            let d = by_symbol.entry(symbol).or_default();
            if roles & DEFINITION_ROLE != 0 {
                d.definitions.push(range);
            } else {
                d.references.push(range);
            }
        }
        let mut symbols: Vec<(String, DocSymbol)> = by_symbol.into_iter().collect();
        symbols.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (symbol, d) in &symbols {
            let flags = if d.definitions.is_empty() { 0 } else { DEFINES }
                | if d.references.is_empty() {
                    0
                } else {
                    REFERENCES
                };
            match self.run.get_mut(symbol.as_str()) {
                Some(docs) => docs.push((ordinal, flags)),
                None => {
                    // The name, the map's slot and the list's first allocation.
                    self.run_bytes += symbol.len() + 64;
                    self.run.insert(symbol.clone(), vec![(ordinal, flags)]);
                }
            }
            self.run_bytes += 8;
        }
        self.done.push(IndexedDocument {
            ordinal,
            path: read.path,
            entry: DocumentEntry {
                offset,
                len: doc.len() as u64,
                language: read.language,
                occurrences: read.occurrences.len() as u32,
                symbols: read.symbols,
            },
            hash: document_hash(doc),
            symbols,
        });
    }

    /// Checks that the blob ended where an index may end: `Ok` when it is an index (whose
    /// last documents and run are still to take), else why it is not.
    pub fn finish(&mut self) -> Result<(), NotScip> {
        if !matches!(self.state, State::Header) || !self.pending.is_empty() {
            self.fail("the blob ends inside a top-level field");
        }
        if let Some(f) = &self.failed {
            return Err(f.clone());
        }
        if self.at == 0 {
            return Err(NotScip("the blob is empty".into()));
        }
        Ok(())
    }
}

/// What the builder takes from one `Document`.
struct ReadDocument {
    path: String,
    language: String,
    symbols: u32,
    occurrences: Vec<(String, Range, i32)>,
}

fn read_document(doc: &[u8]) -> Option<ReadDocument> {
    let mut out = ReadDocument {
        path: String::new(),
        language: String::new(),
        symbols: 0,
        occurrences: Vec::new(),
    };
    each_field(doc, |number, wire, value, _| {
        match (number, wire) {
            (1, LEN) => out.path = String::from_utf8(value.to_vec()).ok()?,
            (4, LEN) => out.language = String::from_utf8(value.to_vec()).ok()?,
            (3, LEN) => out.symbols += 1,
            (2, LEN) => out.occurrences.push(read_occurrence(value)?),
            (1..=4, _) => return None,
            _ => {}
        }
        Some(())
    })?;
    Some(out)
}

fn read_occurrence(occ: &[u8]) -> Option<(String, Range, i32)> {
    let (mut symbol, mut range, mut roles) = (String::new(), Vec::new(), 0i32);
    each_field(occ, |number, wire, value, varint| {
        match (number, wire) {
            (1, LEN) => {
                let mut packed = value;
                while !packed.is_empty() {
                    let v = prost::encoding::decode_varint(&mut packed).ok()?;
                    range.push(v as i32);
                }
            }
            (1, 0) => range.push(varint as i32),
            (3, 0) => roles = varint as i32,
            (2, LEN) => symbol = String::from_utf8(value.to_vec()).ok()?,
            (1..=3, _) => return None,
            _ => {}
        }
        (range.len() <= MAX_RANGE_LEN).then_some(())
    })?;
    Some((symbol, range, roles))
}

/// Calls `f` with each field of `msg`: its number, wire type, value bytes (for [`LEN`]) and
/// value (for a varint). `None` when `msg` is not the wire format or `f` says so.
fn each_field(msg: &[u8], mut f: impl FnMut(u32, u8, &[u8], u64) -> Option<()>) -> Option<()> {
    let mut rest = msg;
    while !rest.is_empty() {
        let key = prost::encoding::decode_varint(&mut rest).ok()?;
        let (number, wire) = (u32::try_from(key >> 3).ok()?, (key & 7) as u8);
        if number == 0 {
            return None;
        }
        match wire {
            LEN => {
                let len = usize::try_from(prost::encoding::decode_varint(&mut rest).ok()?).ok()?;
                if len > rest.len() {
                    return None;
                }
                let (value, after) = rest.split_at(len);
                rest = after;
                f(number, wire, value, 0)?;
            }
            0 => {
                let v = prost::encoding::decode_varint(&mut rest).ok()?;
                f(number, wire, &[], v)?;
            }
            1 | 5 => {
                let n = if wire == 1 { 8 } else { 4 };
                if n > rest.len() {
                    return None;
                }
                rest = &rest[n..];
                f(number, wire, &[], 0)?;
            }
            _ => return None,
        }
    }
    Some(())
}

fn put_varint(out: &mut Vec<u8>, v: u64) {
    prost::encoding::encode_varint(v, out);
}

fn put_range(out: &mut Vec<u8>, r: &[i32]) {
    put_varint(out, r.len() as u64);
    for &v in r {
        put_varint(out, u64::from(((v << 1) ^ (v >> 31)) as u32));
    }
}

fn get_count(r: &mut &[u8]) -> Option<usize> {
    let n = usize::try_from(prost::encoding::decode_varint(r).ok()?).ok()?;
    // Every counted item takes at least one byte.
    (n <= r.len()).then_some(n)
}

fn get_range(r: &mut &[u8]) -> Option<Range> {
    let n = get_count(r)?;
    if n > MAX_RANGE_LEN {
        return None;
    }
    (0..n)
        .map(|_| {
            let z = u32::try_from(prost::encoding::decode_varint(r).ok()?).ok()?;
            Some(((z >> 1) as i32) ^ -((z & 1) as i32))
        })
        .collect()
}

/// A blob's tables as the store answers from them: documents by path (a repeated path
/// keeps its first), and each symbol's definitions and referencing documents.
#[cfg(test)]
#[derive(Debug, PartialEq)]
pub(crate) struct Tables {
    pub(crate) documents: Vec<(String, DocumentEntry)>,
    pub(crate) symbols: Vec<(String, SymbolEntry)>,
}

/// Builds from `pieces`, taking runs of `run_every` documents (0: one run), and puts the
/// documents and runs together as the store does.
#[cfg(test)]
pub(crate) fn build_in_runs(pieces: &[&[u8]], run_every: usize) -> Result<Tables, NotScip> {
    let mut b = TableBuilder::new();
    let (mut docs, mut runs) = (Vec::new(), Vec::new());
    for p in pieces {
        b.feed(p);
        docs.extend(b.take_documents());
        if run_every > 0 && docs.len() >= run_every * (runs.len() + 1) {
            runs.push(b.take_run());
        }
    }
    b.finish()?;
    docs.extend(b.take_documents());
    runs.push(b.take_run());
    let mut documents: Vec<(String, DocumentEntry)> = Vec::new();
    for d in &docs {
        if !documents.iter().any(|(p, _)| *p == d.path) {
            documents.push((d.path.clone(), d.entry.clone()));
        }
    }
    let mut by_symbol: std::collections::BTreeMap<String, Vec<(u32, u8)>> = Default::default();
    for run in runs {
        for (symbol, list) in run {
            by_symbol.entry(symbol).or_default().extend(list);
        }
    }
    let symbols = by_symbol
        .into_iter()
        .map(|(symbol, list)| {
            let mut entry = SymbolEntry::default();
            for (ordinal, flags) in list {
                let d = &docs[ordinal as usize];
                let (_, ds) = d
                    .symbols
                    .iter()
                    .find(|(s, _)| *s == symbol)
                    .expect("a run names only documents holding the symbol");
                assert_eq!(flags & DEFINES != 0, !ds.definitions.is_empty());
                assert_eq!(flags & REFERENCES != 0, !ds.references.is_empty());
                for r in &ds.definitions {
                    entry.definitions.push((d.path.clone(), r.clone()));
                }
                if !ds.references.is_empty() {
                    entry
                        .references
                        .push((d.path.clone(), ds.references.clone()));
                }
            }
            (symbol, entry)
        })
        .collect();
    Ok(Tables { documents, symbols })
}

#[cfg(test)]
mod tests {
    use super::super::synthetic::{document, field, varint_field};
    use super::*;
    use proptest::prelude::*;

    fn occurrence(range: &[i32], symbol: &str, roles: u64) -> Vec<u8> {
        let mut packed = Vec::new();
        for &v in range {
            prost::encoding::encode_varint(v as u32 as u64, &mut packed);
        }
        let mut occ = field(1, &packed);
        occ.extend(field(2, symbol.as_bytes()));
        if roles != 0 {
            occ.extend(varint_field(3, roles));
        }
        field(2, &occ)
    }

    fn doc_with(path: &str, occurrences: &[Vec<u8>]) -> Vec<u8> {
        let mut doc = field(1, path.as_bytes());
        doc.extend(field(4, b"rust"));
        for o in occurrences {
            doc.extend_from_slice(o);
        }
        field(2, &doc)
    }

    const DEF: &str = "rust-analyzer cargo demo 1.0.0 lib/Thing#";
    const OTHER: &str = "rust-analyzer cargo demo 1.0.0 lib/other().";

    /// Metadata, three documents (one naming `DEF` by definition, two by reference), and an
    /// external symbol.
    fn index() -> Vec<u8> {
        let mut blob = field(1, &field(2, b"tool"));
        blob.extend(doc_with(
            "src/lib.rs",
            &[
                occurrence(&[1, 4, 9], DEF, 1),
                occurrence(&[3, 0, 2], "local 7", 1),
                occurrence(&[5, 2, 7], OTHER, 0),
            ],
        ));
        blob.extend(doc_with(
            "src/a.rs",
            &[
                occurrence(&[2, 0, 5], DEF, 0),
                occurrence(&[8, 1, 9, 3], DEF, 0),
            ],
        ));
        blob.extend(document("src/b.py", "1.2.3", 7, &[]));
        blob.extend(doc_with("src/c.rs", &[occurrence(&[0, 0, 1], DEF, 8)]));
        blob.extend(field(3, &field(1, b"npm . left-pad 1.0.0 `index.js`/")));
        blob
    }

    fn build(pieces: &[&[u8]]) -> Result<Tables, NotScip> {
        build_in_runs(pieces, 0)
    }

    #[test]
    fn documents_point_at_their_message_bytes_in_the_blob() {
        let blob = index();
        let t = build(&[&blob]).expect("an index");
        let paths: Vec<&str> = t.documents.iter().map(|(p, _)| p.as_str()).collect();
        assert_eq!(paths, ["src/lib.rs", "src/a.rs", "src/b.py", "src/c.rs"]);
        for (path, d) in &t.documents {
            let bytes = &blob[d.offset as usize..(d.offset + d.len) as usize];
            let read = read_document(bytes).expect("a document");
            assert_eq!(&read.path, path);
            assert_eq!(read.occurrences.len() as u32, d.occurrences);
        }
        let (_, lib) = &t.documents[0];
        assert_eq!(
            (lib.language.as_str(), lib.occurrences, lib.symbols),
            ("rust", 3, 0)
        );
        let (_, py) = &t.documents[2];
        assert_eq!((py.occurrences, py.symbols), (7, 3));
    }

    #[test]
    fn a_symbol_lists_its_definitions_and_references_by_document() {
        let t = build(&[&index()]).expect("an index");
        let entry = |s: &str| {
            t.symbols
                .iter()
                .find(|(name, _)| name == s)
                .map(|(_, e)| e.clone())
                .expect("the symbol")
        };
        let def = entry(DEF);
        assert_eq!(
            def.definitions,
            vec![("src/lib.rs".to_owned(), vec![1, 4, 9])]
        );
        assert_eq!(
            def.references,
            vec![
                ("src/a.rs".to_owned(), vec![vec![2, 0, 5], vec![8, 1, 9, 3]]),
                ("src/c.rs".to_owned(), vec![vec![0, 0, 1]]),
            ]
        );
        let other = entry(OTHER);
        assert!(other.definitions.is_empty());
        assert_eq!(other.references.len(), 1);
        assert!(t.symbols.iter().all(|(s, _)| !s.starts_with("local ")));
        // External symbols (field 3) name no occurrence, so they get no entry.
        assert!(t.symbols.iter().all(|(s, _)| !s.contains("left-pad")));
    }

    #[test]
    fn pieces_cut_anywhere_build_the_same_tables() {
        let blob = index();
        let whole = build(&[&blob]).expect("an index");
        for cut in 0..=blob.len() {
            let (a, b) = blob.split_at(cut);
            let t = build(&[a, b]).expect("an index");
            assert_eq!(t.documents, whole.documents, "cut at {cut}");
            assert_eq!(t.symbols, whole.symbols, "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = blob.chunks(1).collect();
        let t = build(&bytes).expect("an index");
        assert_eq!(t.documents, whole.documents);
    }

    #[test]
    fn a_path_named_twice_keeps_its_first_document() {
        let mut blob = doc_with("x.rs", &[occurrence(&[0, 0, 1], DEF, 1)]);
        blob.extend(doc_with("x.rs", &[occurrence(&[4, 0, 1], DEF, 0)]));
        let t = build(&[&blob]).expect("an index");
        assert_eq!(t.documents.len(), 1);
        assert_eq!(t.documents[0].1.offset, 2);
        assert_eq!(
            t.symbols[0].1.references,
            vec![("x.rs".to_owned(), vec![vec![4, 0, 1]])]
        );
    }

    #[test]
    fn what_is_not_an_index_says_why() {
        let mut truncated = index();
        truncated.truncate(truncated.len() - 3);
        let mut stray = index();
        stray.extend(field(9, b"x"));
        let mut bad_doc = field(1, b"meta");
        bad_doc.extend(field(2, &[0x0a, 0x05, b'a']));
        let cases: [(&str, &[u8], &str); 5] = [
            ("empty", b"", "empty"),
            (
                "text",
                b"hello, world: not protobuf at all",
                "not part of a SCIP Index",
            ),
            ("truncated", &truncated, "ends inside"),
            ("stray field", &stray, "top-level field 9"),
            ("bad document", &bad_doc, "not a valid SCIP Document"),
        ];
        for (name, blob, why) in cases {
            match build(&[blob]) {
                Err(NotScip(msg)) => assert!(msg.contains(why), "{name}: {msg}"),
                Ok(_) => panic!("{name} was taken for an index"),
            }
        }
    }

    #[test]
    fn runs_taken_every_few_documents_give_the_same_tables_as_one() {
        let blob = index();
        let whole = build(&[&blob]).expect("an index");
        let pieces: Vec<&[u8]> = blob.chunks(7).collect();
        for every in 1..4 {
            assert_eq!(build_in_runs(&pieces, every).expect("an index"), whole);
        }
    }

    #[test]
    fn equal_documents_have_equal_hashes_wherever_they_lie() {
        let one = doc_with("src/lib.rs", &[occurrence(&[1, 4, 9], DEF, 1)]);
        let other = doc_with("src/a.rs", &[occurrence(&[1, 4, 9], DEF, 1)]);
        let mut blob = one.clone();
        blob.extend(other);
        blob.extend(one);
        let mut b = TableBuilder::new();
        b.feed(&blob);
        b.finish().expect("an index");
        let docs = b.take_documents();
        assert_eq!(docs.len(), 3);
        assert_eq!(docs[0].hash, docs[2].hash);
        assert_ne!(docs[0].hash, docs[1].hash);
        assert_ne!(docs[0].entry.offset, docs[2].entry.offset);
        assert_eq!(
            docs.iter().map(|d| d.ordinal).collect::<Vec<_>>(),
            [0, 1, 2]
        );
    }

    proptest! {
        #[test]
        fn document_entries_round_trip(offset: u64, len: u64, occ: u32, sym: u32, lang in ".{0,12}") {
            let d = DocumentEntry { offset, len, language: lang, occurrences: occ, symbols: sym };
            prop_assert_eq!(DocumentEntry::decode(&d.encode()), Some(d));
        }

        #[test]
        fn document_symbols_round_trip(
            defs in proptest::collection::vec(proptest::collection::vec(any::<i32>(), 0..5), 0..4),
            refs in proptest::collection::vec(proptest::collection::vec(any::<i32>(), 0..5), 0..6),
        ) {
            let d = DocSymbol { definitions: defs, references: refs };
            let b = d.encode();
            prop_assert_eq!(DocSymbol::decode(&b), Some(d));
            prop_assert_eq!(DocSymbol::decode(&b[..b.len() - 1]), None);
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_builder(blob in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut b = TableBuilder::new();
            b.feed(&blob);
            let _ = b.finish();
            let _ = b.take_documents();
            let _ = b.take_run();
        }
    }
}
