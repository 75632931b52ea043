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
//! - [`damaged_index`]: a cut, emptied or scrambled `data.mdb` refuses the start naming
//!   `scipcached rebuild`; a record damaged while serving is `data loss` from a pull.
//! - [`full_disk`]: a full disk is `resource exhausted` naming it; nothing acknowledged is
//!   lost, SIGTERM exits 0, pushes work again once there is room.
//! - [`data_dir_files`]: chunks live in few files, not one file per chunk; everything under
//!   the data dir is owner-only, and a key file others can read is warned about.
//! - [`hostile_reads`]: lying entry lengths, ranged reads, chunk reads of repeated ids.
//! - [`connection_flood`]: idle connections beyond the descriptor limit leave the daemon
//!   serving.
//! - [`message_limit`]: an oversized message is `RESOURCE_EXHAUSTED` naming the limit.
//! - [`tls_certificate`]: an expired `--tls-cert` is reported at start and by `/healthz`.
//! - [`killed_daemon`]: a daemon killed mid-push makes the CLI print `unavailable: `.
//! - [`scip_storage`]: document-aligned cutting and version normalization on both series,
//!   through the CLI; ranged and chunk reads restore; a malformed index stored as is.
//! - [`lookups`]: document and symbol lookups (gRPC and the CLI) against an independent
//!   decode of a shared index; tables through kill -9, restart and gc.
//! - [`scrub`]: the background scrub finds and repairs a flipped byte in a cold pack.
//! - [`request_memory`]: commits and uploads bounded in memory, the `--request-memory` budget.
//! - [`rebuild`]: a deleted index is refused at start; `scipcached rebuild` restores it from
//!   the cold tier, and deleted and expired refs stay gone.
//! - [`gc`]: `rm --prefix`, `gc` (grace, dry run, who may run it, tenant isolation) and a
//!   rebuild after a gc.
//! - [`fsck`]: a clean store, flipped and deleted warm and cold packs found and repaired.
//! - [`audit_log`]: the `--audit-log` lines of pushes, deletions, gc, warm-ups and refusals.
//! - [`quotas`]: a push over a tenant's `[quotas]` entry is refused and sets no ref.
//! - [`tiering`]: tiny `--hot-bytes`/`--warm-bytes` budgets kept, pinned refs staying hot,
//!   `scipcache warm`, and `--durability cold` versus `local` with a broken cold tier.

mod common;

mod audit_log;
mod auth_matrix;
mod bad_input;
mod connection_flood;
mod damaged_index;
mod data_dir_files;
mod fsck;
mod full_disk;
mod gc;
mod gc_crash;
mod hostile_reads;
mod killed_daemon;
mod large_blob;
mod lifecycle;
mod lifecycle_series;
mod lookups;
mod message_limit;
mod push_pull;
mod quotas;
mod rebuild;
mod request_memory;
mod scip_storage;
mod scrub;
mod tiering;
mod tiering_crash;
mod tls_certificate;
