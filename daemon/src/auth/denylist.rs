//! The denylist: revoked token ids (`jti`) and subjects (`sub`), one a line, `#` starts a
//! comment. The file is polled (its modification time, size and inode) about once a second
//! and reloaded when it changes, so revoking a token takes effect within seconds without a
//! restart.
//!
//! If the file becomes unreadable or disappears, the last list stays in force (revocations
//! are never dropped by accident) and a warning is logged.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};

/// How often the file is checked for changes.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);

/// What identifies one version of the file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    #[cfg(unix)]
    inode: u64,
}

impl Stamp {
    fn of(meta: &std::fs::Metadata) -> Self {
        Self {
            modified: meta.modified().ok(),
            len: meta.len(),
            #[cfg(unix)]
            inode: std::os::unix::fs::MetadataExt::ino(meta),
        }
    }
}

#[derive(Debug, Default)]
struct State {
    entries: HashSet<String>,
    stamp: Option<Stamp>,
}

/// The revoked values, shared between the verifier and the reloading task.
#[derive(Clone, Debug)]
pub struct Denylist {
    path: PathBuf,
    state: Arc<RwLock<State>>,
}

impl Denylist {
    /// Loads the file; a missing or unreadable file is an error at start.
    pub fn load(path: &Path) -> Result<Self> {
        let list = Self {
            path: path.to_owned(),
            state: Arc::default(),
        };
        list.reload_if_changed()?;
        Ok(list)
    }

    /// A list that holds exactly `entries` (tests).
    pub fn fixed(entries: &[&str]) -> Self {
        let state = State {
            entries: entries.iter().map(|s| (*s).to_owned()).collect(),
            stamp: None,
        };
        Self {
            path: PathBuf::new(),
            state: Arc::new(RwLock::new(state)),
        }
    }

    /// Whether `value` (a jti or a sub) is revoked.
    pub fn contains(&self, value: &str) -> bool {
        // A poisoned lock only means a reload panicked midway; the set itself is intact.
        let state = self
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.entries.contains(value)
    }

    /// How many values are revoked.
    pub fn len(&self) -> usize {
        let state = self
            .state
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.entries.len()
    }

    /// Whether nothing is revoked.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Re-reads the file if it changed since the last read. Blocking: call it from
    /// `spawn_blocking`. Returns whether it reloaded.
    pub fn reload_if_changed(&self) -> Result<bool> {
        let meta = std::fs::metadata(&self.path)
            .map_err(|e| Error::io("cannot read denylist", &self.path, e))?;
        let stamp = Stamp::of(&meta);
        {
            let state = self
                .state
                .read()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if state.stamp == Some(stamp) {
                return Ok(false);
            }
        }
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| Error::io("cannot read denylist", &self.path, e))?;
        let entries = parse(&text);
        let mut state = self
            .state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        state.entries = entries;
        state.stamp = Some(stamp);
        Ok(true)
    }

    /// Polls the file until `cancel` fires.
    pub async fn watch(self, cancel: CancellationToken) {
        let mut warned = false;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(POLL_INTERVAL) => {}
            }
            let list = self.clone();
            match crate::blocking::spawn(move || list.reload_if_changed()).await {
                Ok(Ok(true)) => {
                    warned = false;
                    tracing::info!(path = %self.path.display(), entries = self.len(), "denylist reloaded");
                }
                Ok(Ok(false)) => warned = false,
                Ok(Err(e)) => {
                    if !warned {
                        tracing::warn!("{e}; keeping the last denylist ({} entries)", self.len());
                        warned = true;
                    }
                }
                Err(e) => tracing::error!("denylist reload task failed: {e}"),
            }
        }
    }
}

fn parse(text: &str) -> HashSet<String> {
    text.lines()
        .map(|line| {
            line.split_once('#')
                .map_or(line, |(before, _)| before)
                .trim()
        })
        .filter(|line| !line.is_empty())
        .map(str::to_owned)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_skips_comments_and_blank_lines() {
        let set = parse("# revoked\n\nabc123\n  ci-bot  # leaked on 2026-01-01\n#x\n");
        assert_eq!(set.len(), 2);
        assert!(set.contains("abc123") && set.contains("ci-bot"));
    }

    #[test]
    fn changes_to_the_file_are_picked_up() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", "/tmp", e))?;
        let path = dir.path().join("deny");
        std::fs::write(&path, "one\n").map_err(|e| Error::io("write", &path, e))?;
        let list = Denylist::load(&path)?;
        assert!(list.contains("one") && !list.contains("two"));
        assert!(!list.reload_if_changed()?);
        // Replace by rename (a new inode), as editors and `mv` do.
        let tmp = dir.path().join("deny.new");
        std::fs::write(&tmp, "one\ntwo\n").map_err(|e| Error::io("write", &tmp, e))?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &path, e))?;
        assert!(list.reload_if_changed()?);
        assert!(list.contains("two"));
        // A vanished file keeps the last list.
        std::fs::remove_file(&path).map_err(|e| Error::io("rm", &path, e))?;
        assert!(list.reload_if_changed().is_err());
        assert!(list.contains("two"));
        Ok(())
    }

    #[test]
    fn a_missing_file_is_refused_at_start() {
        assert!(Denylist::load(Path::new("/nonexistent/scipcache/deny")).is_err());
    }
}
