//! # scipcache-proto: the `scipcache.v1` gRPC API
//!
//! Generated messages and services (tonic + prost, protoc vendored at build time) and the
//! conversions between wire messages and engine types. No logic lives here.
//!
//! ## Layout
//! - `proto/scipcache/v1/scipcache.proto`: the API, with its comments.
//! - [`pb`]: the generated code.
//! - [`convert`]: `pb` ⇄ `scipcache_tiers` conversions.
//! - [`FILE_DESCRIPTOR_SET`]: for server reflection.

pub mod convert;

/// Generated `scipcache.v1` code.
#[allow(
    missing_docs,
    unreachable_pub,
    missing_debug_implementations,
    clippy::all,
    clippy::pedantic
)]
pub mod pb {
    tonic::include_proto!("scipcache.v1");
}

/// The encoded descriptor set, for `tonic-reflection`.
pub const FILE_DESCRIPTOR_SET: &[u8] = tonic::include_file_descriptor_set!("scipcache_descriptor");

/// Metadata key of the bearer token.
pub const AUTHORIZATION: &str = "authorization";

/// Binary metadata key of a commit's `FAILED_PRECONDITION`: an encoded [`pb::MissingChunks`]
/// (see [`convert::encode_missing_chunks`], [`convert::decode_missing_chunks`]).
pub const MISSING_CHUNKS_METADATA: &str = "scipcache-missing-chunks-bin";

/// Most chunk ids listed in a commit's `FAILED_PRECONDITION` (message and metadata): 64 ids
/// are about 4 KiB of hex and 3 KiB of base64, well inside a client's 16 KiB header limit.
pub const MAX_LISTED_MISSING: usize = scipcache_tiers::error::MAX_LISTED_MISSING;

/// Ids per FindMissing or chunk Read request: 16 384 × 34 bytes stays far below any message
/// limit, and a 10 GB blob (≈ 650 000 chunks) needs 40 requests.
pub const MAX_IDS_PER_REQUEST: usize = 16_384;

/// Most chunk bytes (the raw lengths of the distinct chunks named) one chunk Read returns;
/// the server refuses a larger Read with `RESOURCE_EXHAUSTED`. Duplicate ids in a Read are
/// collapsed (each chunk is sent once), so a Read never returns more than the blob's distinct
/// chunks either. Clients name at most `MAX_READ_BYTES / chunker max` ids per Read.
pub const MAX_READ_BYTES: u64 = 256 * 1024 * 1024;

/// Manifest entries per commit batch message.
pub const ENTRIES_PER_BATCH: usize = 16_384;

/// Largest gRPC message either side sends or accepts: one upload batch of chunk frames.
pub const MAX_MESSAGE_BYTES: usize = 16 * 1024 * 1024;
