//! The index walk before serving: `scipcached` re-runs itself as the hidden subcommand
//! `check-index --data-dir D`, which walks every page and record of the LMDB index
//! ([`scipcache_tiers::index_check::walk`]). A damaged page can make LMDB fault (SIGSEGV,
//! SIGBUS); in a child process that kills only the child, and the daemon refuses to start
//! with a message naming `scipcached rebuild`.
//!
//! Refusing is the only behaviour: the daemon never rebuilds by itself (an automatic rebuild
//! from the cold tier could be a later option).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use clap::Args;
use scipcache_tiers::index_check;

use crate::error::{Error, Result};

/// `scipcached check-index`: walks the index of a data dir and exits 0 if it is intact.
#[derive(Debug, Args)]
pub struct CheckIndexArgs {
    /// The data dir whose index (`meta/data.mdb`) to walk.
    #[arg(long, value_name = "DIR")]
    pub data_dir: PathBuf,
}

impl CheckIndexArgs {
    /// Walks the index; prints one line of figures on stdout.
    pub fn run(&self) -> Result<()> {
        let report = index_check::walk(&self.data_dir)?;
        let tables: Vec<String> = report
            .tables
            .iter()
            .map(|(name, n)| format!("{name}={n}"))
            .collect();
        println!(
            "index intact: {} records ({}), checksums {}, {} ms",
            report.records(),
            tables.join(" "),
            if report.sealed {
                "checked"
            } else {
                "absent (format < 3)"
            },
            report.elapsed.as_millis()
        );
        Ok(())
    }
}

/// Runs `check-index` on `data_dir` in a child process of `exe` (the running binary) and
/// fails, naming `scipcached rebuild`, if the child reports damage, fails or dies.
pub fn walk_in_child(exe: &Path, data_dir: &Path) -> Result<()> {
    let started = std::time::Instant::now();
    let output = Command::new(exe)
        .arg("check-index")
        .arg("--data-dir")
        .arg(data_dir)
        .env_remove("SCIPCACHE_CONFIG")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| {
            Error::Config(format!(
                "cannot start the index walk ({} check-index): {e}",
                exe.display()
            ))
        })?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    if output.status.success() {
        tracing::info!(
            ms = started.elapsed().as_millis() as u64,
            walk = %stdout.trim(),
            "index walk passed"
        );
        return Ok(());
    }
    let detail = match exit_signal(&output.status) {
        Some(signal) => format!(
            "the index walk died of signal {signal} ({}) reading it: pages of the index are \
             damaged",
            signal_name(signal)
        ),
        None => {
            let line = stderr
                .lines()
                .rev()
                .find(|l| !l.trim().is_empty())
                .unwrap_or("no message")
                .trim();
            // The child's own message already names the file and `rebuild`.
            if line.contains("scipcached rebuild") {
                return Err(Error::IndexWalk(
                    line.trim_start_matches("scipcached: error: ").to_owned(),
                ));
            }
            format!("the index walk failed ({}): {line}", output.status)
        }
    };
    Err(Error::Store(scipcache_tiers::Error::IndexDamaged {
        path: index_check::data_file(data_dir).display().to_string(),
        detail,
    }))
}

#[cfg(unix)]
fn exit_signal(status: &std::process::ExitStatus) -> Option<i32> {
    use std::os::unix::process::ExitStatusExt;
    status.signal()
}

#[cfg(not(unix))]
fn exit_signal(_: &std::process::ExitStatus) -> Option<i32> {
    None
}

fn signal_name(signal: i32) -> &'static str {
    match signal {
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGABRT => "SIGABRT",
        libc::SIGKILL => "SIGKILL",
        libc::SIGILL => "SIGILL",
        _ => "a signal",
    }
}
