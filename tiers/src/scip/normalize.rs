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
use std::sync::Arc;

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

/// One symbol's package found in a unit: where its identity and version lie (in the unit)
/// and the key of its slot.
#[derive(Clone, Debug)]
pub(crate) struct Found {
    identity: Range<usize>,
    version: Range<usize>,
    /// The xxh3 of the identity seeded with the version's length.
    key: u64,
}

/// The first half of normalizing one top-level field of an `Index` (`unit` holds its header
/// too): a `Document` (2) or an external `SymbolInformation` (3). Finds every version the
/// walk may replace, in order, and depends on nothing but the unit, so units are scanned on
/// several threads at once. `None` when the unit holds no such version, is another field, or
/// is malformed.
pub(crate) fn scan(number: u32, unit: &[u8], header_len: usize) -> Option<Vec<Found>> {
    let kind = match number {
        2 => Kind::Document,
        3 => Kind::SymbolInformation,
        _ => return None,
    };
    let mut found = Vec::new();
    walk(&unit[header_len..], header_len, kind, 0, &mut found).ok()?;
    (!found.is_empty()).then_some(found)
}

fn walk(
    msg: &[u8],
    base: usize,
    kind: Kind,
    depth: u8,
    found: &mut Vec<Found>,
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
            Kind::Symbol => symbol(value, at, found),
            message => walk(value, at, message, depth + 1, found)?,
        }
    }
    Ok(())
}

/// Notes the version of the symbol `symbol` (at `at` in the unit) when it is one a
/// placeholder can stand for.
fn symbol(symbol: &[u8], at: usize, found: &mut Vec<Found>) {
    let Some(p) = package(symbol) else {
        return;
    };
    let version = &symbol[p.version.clone()];
    let len = version.len();
    if !(MIN_VERSION_LEN..=MAX_VERSION_LEN).contains(&len) || version.contains(&MARK) {
        return;
    }
    found.push(Found {
        key: xxhash_rust::xxh3::xxh3_64_with_seed(&symbol[p.identity.clone()], len as u64),
        identity: at + p.identity.start..at + p.identity.end,
        version: at + p.version.start..at + p.version.end,
    });
}

/// The normalizer of one blob: its version table and, per package and version length, the
/// placeholder and what the table says of it. The second, sequential half of normalizing: it
/// takes the [`scan`]s of units in blob order and says which versions to replace; the units
/// are then edited (again on several threads) by the cutter.
#[derive(Debug, Default)]
pub(crate) struct Normalizer {
    table: VersionTable,
    /// Keyed by [`Found::key`].
    slots: HashMap<u64, Slot, xxhash_rust::xxh3::Xxh3Builder>,
}

/// One package at one version length.
#[derive(Debug)]
struct Slot {
    identity: Box<[u8]>,
    placeholder: Arc<[u8]>,
    /// The version the placeholder stands for in this blob, once claimed; `None` when the
    /// table refused it (full).
    version: Option<Box<[u8]>>,
}

/// One version of a unit to replace: where it lies and its placeholder (as long as it).
#[derive(Clone, Debug)]
pub(crate) struct Edit {
    pub span: Range<usize>,
    pub placeholder: Arc<[u8]>,
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

    /// Which versions of `unit` its [`scan`] found get a placeholder: the first version seen
    /// of a package at a length claims the placeholder, and only that version is replaced.
    /// Units must come in blob order. The edits are sorted and disjoint.
    pub(crate) fn claim(&mut self, unit: &[u8], found: &[Found]) -> Vec<Edit> {
        let mut edits = Vec::new();
        for f in found {
            let identity = &unit[f.identity.clone()];
            let version = &unit[f.version.clone()];
            let table = &mut self.table;
            let slot = self.slots.entry(f.key).or_insert_with(|| {
                let placeholder: Arc<[u8]> = placeholder(identity, version.len()).into();
                let version = table.claim(&placeholder, version).then(|| version.into());
                Slot {
                    identity: identity.into(),
                    placeholder,
                    version,
                }
            });
            // Another version of the package, a refused claim, or (never seen yet) two
            // identities with one key: the version stays as it is.
            if slot.version.as_deref() != Some(version) || &*slot.identity != identity {
                continue;
            }
            edits.push(Edit {
                span: f.version.clone(),
                placeholder: slot.placeholder.clone(),
            });
        }
        edits
    }
}
