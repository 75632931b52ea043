//! # scipcache-tests: end-to-end tests that start real processes
//!
//! The tests in `tests/e2e/` start the real `scipcached` binary on a temporary data dir and
//! drive the real `scipcache` CLI against it, the way an operator and a CI pipeline do: exit
//! codes, `--json` output, stderr lines, signals, restarts. They check `shared/CONTRACT.md`,
//! not the crates' internals. This library is their harness.
//!
//! `cargo test --workspace` alone runs them on a clean clone: [`binaries`] builds both binaries
//! with cargo (through `escargot`, in the profile of the test run) the first time a test asks.
//!
//! ## Layout
//! - [`binaries`]: `scipcached` and `scipcache` built once per test process.
//! - [`Daemon`] / [`DaemonOptions`]: one `scipcached` on a temp data dir with kernel-picked
//!   loopback ports; mints tokens ([`Daemon::token`]), runs the CLI against itself
//!   ([`Daemon::cli`]), stops with SIGTERM or SIGKILL, restarts on the same data dir.
//! - [`CliOutput`]: one finished CLI run (exit code, stdout, stderr) with checking helpers.
//! - [`Spawned`]: a background process (a CLI push to interrupt, a second daemon) that is
//!   killed when dropped; optionally fed through a stdin pipe at the test's pace.
//! - [`SmallFs`]: a size-limited tmpfs the test mounts (and unmounts when dropped), for a
//!   full disk; where mounting is refused it skips, or fails under `CI=true`.
//! - [`data`]: the shared real SCIP series (`shared/data/scip`), decompressed once and
//!   verified against their `B3SUMS`; absent data skips a test, or fails it under `CI=true`.
//! - [`write_generated`]: deterministic, partly compressible generated blobs of any size.
//! - [`cli_command`], [`daemon_command`], [`mint`]: the bare binaries with a clean
//!   environment, e.g. for a second daemon or a token signed with a foreign key.
//! - [`http_get`], [`vm_hwm_bytes`], [`PeakSampler`], [`blake3_file`]: small probes (an
//!   HTTP/1.1 GET, peak RSS, sampled private vs file-backed memory, a file's BLAKE3).
//!
//! ## Environment
//! - `SCIPCACHE_TEST_DATA`: the `scip` data dir (default `<workspace>/../shared/data/scip`).
//! - `SCIPCACHE_TEST_BIN_DIR`: use `scipcached` and `scipcache` from this dir, no cargo build.
//! - `SCIPCACHE_TEST_SCRATCH`: where temp dirs and decompressed data go (default: the system
//!   temp dir).
//! - `SCIPCACHE_TEST_RUST_LOG`: passed to the daemon as `RUST_LOG` (otherwise `RUST_LOG` is
//!   removed so that the daemon logs at its default level and prints its ready line).
//!
//! Every child process gets an environment without `SCIPCACHE_*` variables and with
//! `NO_COLOR=1`, so an outer environment cannot change what a test checks.
//!
//! ## Example
//! ```no_run
//! use scipcache_tests::{Daemon, DaemonOptions};
//!
//! # fn main() -> anyhow::Result<()> {
//! let daemon = Daemon::start(DaemonOptions::new())?;
//! let token = daemon.token("acme", &["*:write"], "1h")?;
//! let out = daemon.cli(&token, &["--json", "ls", "acme/web/app"])?.success()?;
//! assert!(out.json()?["refs"].is_array());
//! # Ok(())
//! # }
//! ```

mod build;
mod daemon;
pub mod data;
mod generate;
pub mod lmdb_pages;
mod probe;
mod process;
mod small_fs;

pub use build::{Binaries, binaries};
pub use daemon::{Daemon, DaemonOptions, Minted, cli_command, daemon_command, jwt_claims, mint};
pub use generate::write_generated;
pub use probe::{HttpResponse, PeakSampler, Peaks, blake3_file, dir_bytes, http_get, vm_hwm_bytes};
pub use process::{CliOutput, Spawned, scratch_dir};
pub use small_fs::SmallFs;

/// The namespace most tests push into.
pub const NS: &str = "acme/web/app";

/// Bytes of a blob fed to a push before its input stalls, in tests that cut a push midway:
/// more than two of the client's 8 MiB windows, so the daemon has stored chunks while the
/// rest is still unread.
pub const FED_BEFORE_A_STALL: usize = 20 * 1024 * 1024;

/// Generous bound for one CLI call that moves at most a few hundred MB: a hang detector, not
/// a speed check.
pub const CLI_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(300);
