//! # scipcache-tiers: the storage engine
//!
//! Blobs (SCIP indexes, mostly) are cut into content-defined chunks, each named by its BLAKE3
//! hash and stored once per tenant. A blob is a [`manifest::Manifest`] of chunk ids; a ref
//! names a manifest inside a namespace `tenant/team/project`.
//!
//! This crate knows nothing of gRPC or tokens. Without the `backends` feature it holds only what
//! a client needs to agree with a server: ids, names, chunking, the frame codec and the
//! manifest format. With it (the default) it adds the tiers and the [`Store`] facade.
//!
//! ## Layout
//! - [`ids`]: `ChunkId`, `BlobId`, `ManifestId` (BLAKE3 newtypes, lowercase hex).
//! - [`names`]: `Tenant`, `Namespace`, `RefKey`, validated as the contract says.
//! - [`chunking`]: the [`chunking::Splitter`] trait, FastCDC, and a streaming chunk reader.
//! - [`codec`]: the chunk frame (codec id, raw length, payload): the format spec.
//! - [`manifest`]: the manifest and its versioned encoding.
//! - [`scip`]: SCIP-aware cutting (document-aligned chunks, version normalization) and the
//!   version table that restores a normalized chunk.
//! - [`refs`]: the ref record and its table keys.
//! - `byte_reader`: the checked cursor the record decoders read with.
//! - [`clock`]: the one place the engine reads the time (tests set it).
//! - `meta`: the LMDB environment: every table's key and value layout, tier-bit helpers.
//! - `version`: the data dir's format version and the rule for changing formats.
//! - `sealed`: the checksum every metadata record carries, and the tables that check it.
//! - `lmdb_file`: the check of the LMDB file against its meta pages before it is mapped.
//! - `lmdb_tree`: LMDB's B-trees read from the file with every page number, offset and length
//!   checked, never through LMDB's map.
//! - [`index_check`]: the walk of every page and record run in a child process at start.
//! - `tier`: `TierName`, the `ChunkTier` trait every tier implements, and its conformance suite.
//! - `hot`, `warm`, `cold`: LMDB chunks (lz4), append-only pack files (zstd low),
//!   object-store packs (zstd high, written behind).
//! - `writeback`: the write-behind uploader to the cold tier.
//! - `disk_space`: free space where the engine writes; which failed writes mean a full disk
//!   ([`Error::DiskFull`]); the reserve background copies leave for the index.
//! - `blocking`: the one helper for blocking work and OS threads.
//! - `store`: the facade, one file per step of the data path (see its docs).
//!
//! Data flows one way: `store` → the tiers (`hot`, `warm`, `cold`, `writeback`) → `meta`,
//! `codec`. Nothing below `store` names it.
//!
//! Feature `testing` adds entry points that only tests and benchmarks use
//! (`Store::write_blob`, `demote`, `evict_to_cold`, `scrub_chunk`, `read_blob_to`).

#![cfg_attr(not(feature = "backends"), allow(dead_code))]

#[cfg(feature = "backends")]
mod blocking;
mod byte_reader;
pub mod chunking;
pub mod clock;
pub mod codec;
#[cfg(feature = "backends")]
mod cold;
#[cfg(feature = "backends")]
mod disk_space;
pub mod error;
#[cfg(feature = "backends")]
mod hot;
pub mod ids;
#[cfg(feature = "backends")]
pub mod index_check;
#[cfg(feature = "backends")]
mod lmdb_file;
#[cfg(feature = "backends")]
mod lmdb_tree;
pub mod manifest;
#[cfg(feature = "backends")]
pub mod meta;
pub mod names;
pub mod refs;
pub mod scip;
#[cfg(feature = "backends")]
mod sealed;
#[cfg(feature = "backends")]
pub mod store;
#[cfg(feature = "backends")]
pub mod tier;
#[cfg(feature = "backends")]
mod version;
#[cfg(feature = "backends")]
mod warm;
#[cfg(feature = "backends")]
mod writeback;

#[cfg(feature = "backends")]
pub use store::{Store, StoreConfig};

pub use clock::Clock;
pub use error::{Error, Result};
