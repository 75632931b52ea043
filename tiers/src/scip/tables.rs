//! What document and symbol lookups need from a SCIP index: one entry per document (where its
//! bytes lie in the blob, its language and counts) and one per global symbol (where it is
//! defined and which documents reference it, with ranges).
//!
//! [`TableBuilder`] takes a blob's bytes in order, in pieces of any size, and holds at most one
//! document at a time besides what it has gathered per symbol. It follows `scip.proto`:
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
//! - [`SymbolEntry`]: count of definitions, each (path length, path, range); count of
//!   referencing documents, each (path length, path, range count, ranges). A definition
//!   occurrence (role bit 1) is listed among the definitions only.

use std::collections::HashMap;

use super::wire::{self, LEN, Peek};

/// The table layout this build writes; it is recorded with each blob's tables.
pub const TABLE_FORMAT: u8 = 1;
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

impl SymbolEntry {
    /// The record's bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        put_varint(&mut out, self.definitions.len() as u64);
        for (path, range) in &self.definitions {
            put_bytes(&mut out, path.as_bytes());
            put_range(&mut out, range);
        }
        put_varint(&mut out, self.references.len() as u64);
        for (path, ranges) in &self.references {
            put_bytes(&mut out, path.as_bytes());
            put_varint(&mut out, ranges.len() as u64);
            for r in ranges {
                put_range(&mut out, r);
            }
        }
        out
    }

    /// Reads a record [`SymbolEntry::encode`] wrote, keeping only the referencing documents
    /// `skip..skip + take` (the definitions always); `None` when it is not one. The second
    /// value is how many documents reference the symbol in all.
    pub fn decode_page(b: &[u8], skip: usize, take: usize) -> Option<(Self, usize)> {
        let mut r = b;
        let mut entry = Self::default();
        let defs = get_count(&mut r)?;
        for _ in 0..defs {
            let path = get_string(&mut r)?;
            entry.definitions.push((path, get_range(&mut r)?));
        }
        let refs = get_count(&mut r)?;
        for i in 0..refs {
            let path = get_string(&mut r)?;
            let n = get_count(&mut r)?;
            let keep = i >= skip && i - skip < take;
            let mut ranges = Vec::with_capacity(if keep { n } else { 0 });
            for _ in 0..n {
                let range = get_range(&mut r)?;
                if keep {
                    ranges.push(range);
                }
            }
            if keep {
                entry.references.push((path, ranges));
            } else if i >= skip.saturating_add(take) {
                break;
            }
        }
        Some((entry, refs))
    }
}

/// A blob's tables, complete.
#[derive(Debug, Default)]
pub struct Tables {
    /// Documents by path, in index order (a path repeated in the index keeps its first).
    pub documents: Vec<(String, DocumentEntry)>,
    /// Global symbols and their entries, in no order.
    pub symbols: Vec<(String, SymbolEntry)>,
}

/// One symbol's occurrences gathered so far: documents as ordinals into the document list.
#[derive(Debug, Default)]
struct Gathered {
    definitions: Vec<(u32, Range)>,
    references: Vec<(u32, Vec<Range>)>,
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

/// Builds the [`Tables`] of a blob from its bytes: see the module docs.
#[derive(Debug)]
pub struct TableBuilder {
    state: State,
    /// Bytes not yet consumed (a header cut by a piece's end, or a document being gathered).
    pending: Vec<u8>,
    /// Offset in the blob of `pending[0]`.
    at: u64,
    failed: Option<NotScip>,
    documents: Vec<(String, DocumentEntry)>,
    seen_paths: HashMap<String, u32>,
    symbols: HashMap<String, Gathered>,
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
            documents: Vec::new(),
            seen_paths: HashMap::new(),
            symbols: HashMap::new(),
        }
    }

    /// Whether the blob already showed it is not an index (the rest need not be read).
    pub fn has_failed(&self) -> bool {
        self.failed.is_some()
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
        // A path the index names twice keeps its first entry; the occurrences of both count.
        let next = self.documents.len() as u32;
        let ordinal = *self.seen_paths.entry(read.path.clone()).or_insert(next);
        if ordinal == next {
            self.documents.push((
                read.path.clone(),
                DocumentEntry {
                    offset,
                    len: doc.len() as u64,
                    language: read.language,
                    occurrences: read.occurrences.len() as u32,
                    symbols: read.symbols,
                },
            ));
        }
        let mut by_symbol: HashMap<&str, Vec<(Range, i32)>> = HashMap::new();
        for (symbol, range, roles) in &read.occurrences {
            if symbol.is_empty() || symbol.starts_with("local ") {
                continue;
            }
            by_symbol
                .entry(symbol.as_str())
                .or_default()
                .push((range.clone(), *roles));
        }
        for (symbol, occs) in by_symbol {
            let g = self.symbols.entry(symbol.to_owned()).or_default();
            let mut refs = Vec::new();
            for (range, roles) in occs {
                if roles & DEFINITION_ROLE != 0 {
                    g.definitions.push((ordinal, range));
                } else {
                    refs.push(range);
                }
            }
            if !refs.is_empty() {
                match g.references.last_mut() {
                    Some((o, ranges)) if *o == ordinal => ranges.extend(refs),
                    _ => g.references.push((ordinal, refs)),
                }
            }
        }
    }

    /// The tables of the whole blob, or why it has none.
    pub fn finish(mut self) -> Result<Tables, NotScip> {
        if !matches!(self.state, State::Header) || !self.pending.is_empty() {
            self.fail("the blob ends inside a top-level field");
        }
        if let Some(f) = self.failed {
            return Err(f);
        }
        if self.at == 0 {
            return Err(NotScip("the blob is empty".into()));
        }
        let paths: Vec<&str> = self.documents.iter().map(|(p, _)| p.as_str()).collect();
        let path = |o: u32| {
            paths
                .get(o as usize)
                .map_or_else(String::new, |p| (*p).to_owned())
        };
        let symbols = self
            .symbols
            .into_iter()
            .map(|(symbol, g)| {
                let entry = SymbolEntry {
                    definitions: g
                        .definitions
                        .into_iter()
                        .map(|(o, r)| (path(o), r))
                        .collect(),
                    references: g
                        .references
                        .into_iter()
                        .map(|(o, r)| (path(o), r))
                        .collect(),
                };
                (symbol, entry)
            })
            .collect();
        Ok(Tables {
            documents: self.documents,
            symbols,
        })
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

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
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

fn get_string(r: &mut &[u8]) -> Option<String> {
    let n = get_count(r)?;
    let (s, rest) = r.split_at(n);
    *r = rest;
    String::from_utf8(s.to_vec()).ok()
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

    fn sorted(mut t: Tables) -> Tables {
        t.symbols.sort_by(|a, b| a.0.cmp(&b.0));
        t
    }

    fn build(pieces: &[&[u8]]) -> Result<Tables, NotScip> {
        let mut b = TableBuilder::new();
        for p in pieces {
            b.feed(p);
        }
        b.finish().map(sorted)
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
    fn a_symbol_page_keeps_every_definition_and_the_asked_references() {
        let entry = SymbolEntry {
            definitions: vec![("a".into(), vec![1, 2, 3]), ("b".into(), vec![-1, 0, 5, 6])],
            references: (0..10)
                .map(|i| (format!("r{i}"), vec![vec![i, 0, 1]; i as usize % 3]))
                .collect(),
        };
        let b = entry.encode();
        assert_eq!(
            SymbolEntry::decode_page(&b, 0, usize::MAX),
            Some((entry.clone(), 10))
        );
        let (page, total) = SymbolEntry::decode_page(&b, 4, 3).expect("a page");
        assert_eq!(total, 10);
        assert_eq!(page.definitions, entry.definitions);
        assert_eq!(page.references, entry.references[4..7].to_vec());
        assert_eq!(
            SymbolEntry::decode_page(&b, 20, 3).map(|(p, _)| p.references.len()),
            Some(0)
        );
        assert_eq!(
            SymbolEntry::decode_page(&b[..b.len() - 1], 0, usize::MAX),
            None
        );
    }

    proptest! {
        #[test]
        fn document_entries_round_trip(offset: u64, len: u64, occ: u32, sym: u32, lang in ".{0,12}") {
            let d = DocumentEntry { offset, len, language: lang, occurrences: occ, symbols: sym };
            prop_assert_eq!(DocumentEntry::decode(&d.encode()), Some(d));
        }

        #[test]
        fn arbitrary_bytes_never_panic_the_builder(blob in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut b = TableBuilder::new();
            b.feed(&blob);
            let _ = b.finish();
        }
    }
}
