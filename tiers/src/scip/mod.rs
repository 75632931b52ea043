//! SCIP-aware cutting: chunks at document boundaries, and versions out of symbol strings.
//!
//! This is the light part of the crate (no LMDB, no object store) so that the CLI cuts exactly
//! as the server expects. The server advertises [`SPLITTER_VERSION`]; a client that does not
//! know it cuts plainly, which the server accepts as well.
//!
//! # Document-aligned chunks ([`CutMode::Documents`])
//! A SCIP `Index` is field 1 (metadata), field 2 (repeated `Document`) and field 3 (repeated
//! external `SymbolInformation`). The [`Cutter`] reads it top-level field by field (a *unit*):
//! - a unit of at least the chunker's `min` and at most its `max` is one chunk;
//! - a larger one is cut by FastCDC inside (at most [`MAX_UNIT_BUFFER`] is held: a larger
//!   unit is cut as it streams by, untransformed);
//! - smaller ones are grouped with their neighbours; a group closes once it holds `min` bytes
//!   after a unit whose hash's low bit is 0 (or at `avg`), so an edit moves only the groups
//!   around it.
//!
//! Anything that stops parsing as the wire format of an `Index` (another field number, another
//! wire type, a length past the end) is cut by plain FastCDC from that point: a blob that is not
//! an index, or a malformed one, is stored byte for byte with no error.
//!
//! # Version normalization ([`CutMode::Normalized`])
//! Indexers stamp a version into every global symbol (`<scheme> <manager> <name> <version>
//! <descriptors>`): a package version (scip-typescript, rust-analyzer) or the commit's SHA
//! (scip-python by default). Two indexes that differ only there would share no chunk. Each
//! version token of at least [`versions::MIN_VERSION_LEN`] bytes is replaced by a
//! **placeholder of the same length**, derived from the package (scheme, manager, name) and
//! the length, and the blob's [`VersionTable`] maps placeholders back; it travels in the
//! manifest.
//!
//! Why the same length: every protobuf length prefix around the symbol stays valid, so a unit
//! is edited in place, chunk boundaries and offsets are those of the original blob, and a
//! ranged read maps straight onto chunks. The limits that follow:
//! - a version whose *length* changes (`3.5.9` → `3.5.10`) gets another placeholder, so
//!   documents naming it differ from the previous index there;
//! - one placeholder stands for one version per blob: when a blob holds two versions of one
//!   package with the same length, the first seen is replaced and the others stay as they are;
//! - versions shorter than three bytes (`.`, `1`) are left alone, as are symbols that do not
//!   follow the grammar and the fields the walk does not know (`normalize.rs` lists those it
//!   does).
//!
//! Exactly reversible, checked chunk by chunk at cut time: a chunk is stored normalized only
//! when its original bytes hold no [`versions::MARK`] byte and restoring the stored form with
//! the table gives them back exactly; otherwise its original bytes are stored. The server
//! checks the BLAKE3 id of the restored blob at commit, so a client's bad table cannot set a
//! ref, and every read returns restored bytes: restored by the server, or by a client that
//! asks for chunks as stored together with the table (`ReadForm::StoredFrames`).
//!
//! # Speed
//! Normalizing has two halves. The scan of a unit (the schema walk and the symbol grammar)
//! depends on nothing but the unit, so the [`Cutter`] holds complete units back in batches of
//! a few MiB and scans a batch on several threads; claiming placeholders, editing the units
//! and cutting them then run in blob order on the calling thread, so the chunks are the same
//! whatever the thread count.

mod cutter;
mod normalize;
mod symbol;
pub mod tables;
pub mod versions;
mod wire;

pub use cutter::{Cut, CutMode, Cutter, MAX_UNIT_BUFFER};
pub use versions::VersionTable;

/// The splitter version the server advertises and manifests record: 1 is this module's cutting
/// rules (document units, grouping, placeholder derivation). Any change to them that moves a
/// chunk boundary or a placeholder is a new version.
pub const SPLITTER_VERSION: u32 = 1;

#[cfg(test)]
pub(crate) mod synthetic;
#[cfg(test)]
mod tests;
