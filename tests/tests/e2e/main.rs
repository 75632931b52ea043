//! End-to-end tests: the real `scipcached` and `scipcache` binaries, checked against
//! `shared/CONTRACT.md`. One test binary, so that the binaries are built and the shared data
//! decompressed once, and the tests (each with its own daemon on kernel-picked ports) run in
//! parallel.
//!
//! - [`push_pull`]: series A through the CLI: byte-identical round trips, dedup, refs.
//! - [`auth_matrix`]: every refusal case × every RPC-backed command.
//! - [`bad_input`]: malformed names (CLI) and crafted gRPC requests.
//! - [`large_blob`]: a 2 GiB blob with bounded memory on both sides.
//! - [`lifecycle`]: SIGTERM, kill -9, the data dir lock, `/healthz`, `/metrics`, keys.
//! - [`data_dir_files`]: chunks live in few files, not one file per chunk.
//! - [`connection_flood`]: idle connections beyond the descriptor limit leave the daemon
//!   serving.
//! - [`message_limit`]: an oversized message is `RESOURCE_EXHAUSTED` naming the limit.
//! - [`tls_certificate`]: an expired `--tls-cert` is reported at start and by `/healthz`.
//! - [`killed_daemon`]: a daemon killed mid-push makes the CLI print `unavailable: `.

mod common;

mod auth_matrix;
mod bad_input;
mod connection_flood;
mod data_dir_files;
mod killed_daemon;
mod large_blob;
mod lifecycle;
mod message_limit;
mod push_pull;
mod tls_certificate;
