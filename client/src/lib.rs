//! # scipcache-client: the Rust client of scipcached
//!
//! The library behind the `scipcache` CLI, for CI tools, LSP gateways and IDE plugins.
//!
//! A push cuts the blob into chunks *locally*, with the chunker spec the server advertises,
//! hashes them, asks the server which ones it lacks and uploads only those (lz4 frames), then
//! commits the manifest under a ref. A pull streams the blob back and verifies every chunk and
//! the whole blob's BLAKE3 (the id `b3sum` prints).
//!
//! ```no_run
//! # async fn example() -> scipcache_client::Result<()> {
//! use scipcache_client::{Client, ClientConfig, PullOptions, PushOptions};
//!
//! let mut config = ClientConfig::new("http://127.0.0.1:7741");
//! config.token = std::env::var("SCIPCACHE_TOKEN").ok();
//! let client = Client::connect(config).await?;
//! let ns = "acme/web/app".parse()?;
//! let key = "commit/0123abcd".parse()?;
//! let pushed = client
//!     .push_file(&ns, &key, "index.scip".as_ref(), &PushOptions::default())
//!     .await?;
//! println!("{} ({} new chunks)", pushed.blob, pushed.new_chunks);
//!
//! let fallbacks = ["branch/main".parse()?];
//! let file = tokio::fs::File::create("out.scip")
//!     .await
//!     .map_err(|e| scipcache_client::Error::io("create out.scip", e))?;
//! client.pull(&ns, &key, &fallbacks, file, &PullOptions::default()).await?;
//! # Ok(())
//! # }
//! ```
//!
//! ## Layout
//! - [`connect`]: [`ClientConfig`], [`Client::connect`] (HTTP/2 or TLS, bearer token on
//!   every call, message size limits) and the [`ServerInfo`] learned at connect time.
//! - `tls`: the `--ca`, `--cert` and `--key` files, each checked and refused by name.
//! - `transport`: the channel layer that reports a failed connection as `UNAVAILABLE`.
//! - `retry`: deadlines for unary calls, retries with backoff on `UNAVAILABLE` for
//!   idempotent ones.
//! - [`push`]: the push pipeline ([`Client::push`], [`Client::push_file`]).
//! - `commit`: its last step, the commit, and the bounded retry that uploads what the server
//!   lacks at commit time.
//! - `window`: the pure parts of that pipeline (windows, dedup, batching).
//! - [`pull`]: [`Client::pull`], [`Client::open_blob`] / [`BlobStream`],
//!   [`Client::read_range`], [`Client::read_chunks`].
//! - [`refs`]: [`Client::stat`], [`Client::list_refs`], [`Client::delete_ref`],
//!   [`Client::stats`].
//! - [`lookups`]: [`Client::document`], [`Client::documents`], [`Client::symbol`],
//!   [`Client::symbols`]: one SCIP document or symbol without pulling the index.
//! - [`scip_json`]: a `scip.Document` message decoded for `scipcache doc --json`.
//! - [`warm`]: [`Client::warm`], a ref's chunks promoted into the server's hot tier.
//! - [`lifecycle`]: [`Client::delete_prefix`], [`Client::gc`] and [`Client::fsck`], with
//!   their reports and streamed [`RunProgress`].
//! - [`report`]: [`PushReport`], [`PullReport`] and [`WarmReport`], which serialize to the
//!   CLI's `--json`.
//! - [`progress`]: the [`Progress`] trait the CLI implements with a progress bar.
//! - [`error`]: the one [`Error`] enum, its words and exit codes.
//! - `blocking`: the one helper that runs blocking work (decoding, hashing, files).
//!
//! The `scipcache` binary (`src/main.rs`, `src/cli/`) is a thin shell over this library.

mod blocking;
mod commit;
pub mod connect;
pub mod error;
pub mod lifecycle;
pub mod lookups;
pub mod progress;
pub mod pull;
pub mod push;
pub mod refs;
pub mod report;
mod retry;
pub mod scip_json;
mod tls;
mod transport;
pub mod warm;
mod window;

pub use connect::{Client, ClientConfig, DEFAULT_SERVER, DEFAULT_TIMEOUT, ServerInfo};
pub use error::{Error, MissingChunkList, Result};
pub use lifecycle::{
    DeletePrefixReport, FsckProblem, FsckReport, GcOptions, GcReport, RetentionOutcome, RunProgress,
};
pub use lookups::{
    Definition, Document, DocumentSummary, LookupRef, Page, References, SymbolPage, SymbolReport,
};
pub use progress::{Progress, SharedProgress};
pub use pull::{BlobStream, PullOptions};
pub use push::PushOptions;
pub use refs::{EvictedCopies, Movement, RefList, RefSummary, Stats, TierStats};
pub use report::{PullReport, PushReport, WarmReport};
pub use scipcache_tiers::ids::{BlobId, ChunkId};
pub use scipcache_tiers::names::{KeyPrefix, Namespace, RefKey, Tenant};
