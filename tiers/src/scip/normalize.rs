//! Finding the symbol strings of a SCIP message and putting placeholders in place of their
//! versions.
//!
//! The walk follows `scip.proto` and nothing else: `Document.occurrences` (2) and
//! `.symbols` (3); `Occurrence.symbol` (2); `SymbolInformation.symbol` (1),
//! `.relationships` (4), `.signature_documentation` (7, a `Document`) and
//! `.enclosing_symbol` (8); `Relationship.symbol` (1). Other fields are skipped whatever
//! they hold. A field the walk descends into with a wire type other than length-delimited,
//! or bytes that are not the wire format, make the whole unit malformed: it is then stored
//! as it is.

use std::collections::HashMap;
use std::ops::Range;

use super::symbol::package;
use super::versions::{MARK, MAX_VERSION_LEN, MIN_VERSION_LEN, VersionTable, placeholder};
use super::wire::{self, LEN, Malformed};

/// How deep `signature_documentation` documents may nest before a unit counts as malformed.
const MAX_DEPTH: u8 = 8;

/// The messages the walk knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Document,
    Occurrence,
    SymbolInformation,
    Relationship,
    /// A symbol string.
    Symbol,
}

impl Kind {
    /// What field `number` of this message holds, if the walk looks into it.
    fn child(self, number: u32) -> Option<Kind> {
        use Kind::*;
        match (self, number) {
            (Document, 2) => Some(Occurrence),
            (Document, 3) => Some(SymbolInformation),
            (Occurrence, 2) => Some(Symbol),
            (SymbolInformation, 1 | 8) => Some(Symbol),
            (SymbolInformation, 4) => Some(Relationship),
            (SymbolInformation, 7) => Some(Document),
            (Relationship, 1) => Some(Symbol),
            _ => None,
        }
    }
}

/// The normalizer of one blob: its version table and, per package and version length, the
/// placeholder and what the table says of it.
#[derive(Debug, Default)]
pub(crate) struct Normalizer {
    table: VersionTable,
    /// Keyed by the xxh3 of the package identity seeded with the version length.
    slots: HashMap<u64, Slot, xxhash_rust::xxh3::Xxh3Builder>,
}

/// One package at one version length.
#[derive(Debug)]
struct Slot {
    identity: Box<[u8]>,
    placeholder: Box<[u8]>,
    /// The version the placeholder stands for in this blob, once claimed; `None` when the
    /// table refused it (full).
    version: Option<Box<[u8]>>,
}

/// A unit with placeholders: its stored form and where the placeholders are.
#[derive(Debug)]
pub(crate) struct Normalized {
    pub bytes: Vec<u8>,
    /// Sorted, disjoint.
    pub spans: Vec<Range<usize>>,
}

impl Normalizer {
    /// The table of every placeholder put in so far.
    pub(crate) fn table(&self) -> &VersionTable {
        &self.table
    }

    /// The table, taken at the end of the blob.
    pub(crate) fn into_table(self) -> VersionTable {
        self.table
    }

    /// Normalizes one top-level field of an `Index` (`unit` holds its header too): a
    /// `Document` (2) or an external `SymbolInformation` (3). `None` when the unit holds no
    /// version to replace, is another field, or is malformed. A malformed unit may leave
    /// unused entries in the table, which costs a few bytes and nothing else.
    pub(crate) fn unit(
        &mut self,
        number: u32,
        unit: &[u8],
        header_len: usize,
    ) -> Option<Normalized> {
        let kind = match number {
            2 => Kind::Document,
            3 => Kind::SymbolInformation,
            _ => return None,
        };
        let mut out = unit.to_vec();
        let mut spans = Vec::new();
        self.walk(
            &unit[header_len..],
            header_len,
            kind,
            0,
            &mut out,
            &mut spans,
        )
        .ok()?;
        (!spans.is_empty()).then_some(Normalized { bytes: out, spans })
    }

    fn walk(
        &mut self,
        msg: &[u8],
        base: usize,
        kind: Kind,
        depth: u8,
        out: &mut [u8],
        spans: &mut Vec<Range<usize>>,
    ) -> Result<(), Malformed> {
        if depth > MAX_DEPTH {
            return Err(Malformed);
        }
        for field in wire::fields(msg) {
            let field = field?;
            let Some(child) = kind.child(field.number) else {
                continue;
            };
            if field.wire != LEN {
                return Err(Malformed);
            }
            let value = &msg[field.value.clone()];
            let at = base + field.value.start;
            match child {
                Kind::Symbol => self.symbol(value, at, out, spans),
                message => self.walk(value, at, message, depth + 1, out, spans)?,
            }
        }
        Ok(())
    }

    /// Replaces the version of the symbol `symbol` (at `at` in the unit) when it has one the
    /// table can take.
    fn symbol(&mut self, symbol: &[u8], at: usize, out: &mut [u8], spans: &mut Vec<Range<usize>>) {
        let Some(p) = package(symbol) else {
            return;
        };
        let version = &symbol[p.version.clone()];
        let len = version.len();
        if !(MIN_VERSION_LEN..=MAX_VERSION_LEN).contains(&len) || version.contains(&MARK) {
            return;
        }
        let identity = &symbol[p.identity];
        let hash = xxhash_rust::xxh3::xxh3_64_with_seed(identity, len as u64);
        let table = &mut self.table;
        let slot = self.slots.entry(hash).or_insert_with(|| {
            let placeholder = placeholder(identity, len).into_boxed_slice();
            let version = table.claim(&placeholder, version).then(|| version.into());
            Slot {
                identity: identity.into(),
                placeholder,
                version,
            }
        });
        // Another version of the package, a refused claim, or (never seen yet) two
        // identities with one hash: the version stays as it is.
        if slot.version.as_deref() != Some(version) || &*slot.identity != identity {
            return;
        }
        let span = at + p.version.start..at + p.version.end;
        out[span.clone()].copy_from_slice(&slot.placeholder);
        spans.push(span);
    }
}
