//! The denylist: revoked token ids (`jti`) and subjects (`sub`), one a line, `#` starts a
//! comment. The file is polled (its modification time, size and inode) about once a second
//! and reloaded when it changes, so revoking a token takes effect within seconds without a
//! restart.
//!
//! A change only takes effect once the file is stable: the same stamp and the same text on
//! two reads [`SETTLE`] apart. A file rewritten in place (emptied, then filled, as `>` in a
//! shell or a naive script does) is read while it is half written; until it settles the
//! previous list stays in force, so no revocation is dropped for that moment. Each reload is
//! logged with its entry count.
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
/// How long after a change is seen the file is read again: the change takes effect only if
/// both reads agree.
pub const SETTLE: Duration = Duration::from_millis(200);

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
    /// A version read once, waiting for a second read that agrees.
    pending: Option<(Stamp, String)>,
}

/// What one [`Denylist::poll`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Poll {
    /// The file is as last applied.
    Unchanged,
    /// The file changed; the previous list stays until a read [`SETTLE`] later agrees.
    Settling,
    /// A stable new version is in force.
    Reloaded,
}

/// The revoked values, shared between the verifier and the reloading task.
#[derive(Clone, Debug)]
pub struct Denylist {
    path: PathBuf,
    state: Arc<RwLock<State>>,
}

impl Denylist {
    /// Loads the file; a missing or unreadable file is an error at start. (Nothing is in
    /// force yet, so its first read is used as it is.)
    pub fn load(path: &Path) -> Result<Self> {
        let list = Self {
            path: path.to_owned(),
            state: Arc::default(),
        };
        let (stamp, text) = list.read()?;
        list.apply(stamp, &text);
        Ok(list)
    }

    /// A list that holds exactly `entries` (tests).
    pub fn fixed(entries: &[&str]) -> Self {
        let state = State {
            entries: entries.iter().map(|s| (*s).to_owned()).collect(),
            ..State::default()
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

    /// Checks the file once. A version that differs from the one in force becomes
    /// pending; it is applied when the next poll reads the same stamp and text, and replaced
    /// if it differs again. Blocking: call it on a blocking thread.
    pub fn poll(&self) -> Result<Poll> {
        let stamp = self.stamp()?;
        {
            let mut state = self.lock_write();
            if state.stamp == Some(stamp) {
                // Back to the version in force (or never left it).
                state.pending = None;
                return Ok(Poll::Unchanged);
            }
        }
        let (stamp, text) = self.read()?;
        let mut state = self.lock_write();
        if matches!(&state.pending, Some((s, t)) if *s == stamp && *t == text) {
            drop(state);
            self.apply(stamp, &text);
            return Ok(Poll::Reloaded);
        }
        state.pending = Some((stamp, text));
        Ok(Poll::Settling)
    }

    fn stamp(&self) -> Result<Stamp> {
        let meta = std::fs::metadata(&self.path)
            .map_err(|e| Error::io("cannot read denylist", &self.path, e))?;
        Ok(Stamp::of(&meta))
    }

    /// The file's text and its stamp after reading. (Text read midway through a change
    /// differs from the next read's, so it never settles.)
    fn read(&self) -> Result<(Stamp, String)> {
        let text = std::fs::read_to_string(&self.path)
            .map_err(|e| Error::io("cannot read denylist", &self.path, e))?;
        Ok((self.stamp()?, text))
    }

    fn apply(&self, stamp: Stamp, text: &str) {
        let entries = parse(text);
        let mut state = self.lock_write();
        state.entries = entries;
        state.stamp = Some(stamp);
        state.pending = None;
    }

    fn lock_write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Polls the file until `cancel` fires: every [`POLL_INTERVAL`], and [`SETTLE`] after
    /// a change was seen.
    pub async fn watch(self, cancel: CancellationToken) {
        let mut warned = false;
        let mut wait = POLL_INTERVAL;
        loop {
            tokio::select! {
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(wait) => {}
            }
            wait = POLL_INTERVAL;
            let list = self.clone();
            match crate::blocking::spawn(move || list.poll()).await {
                Ok(Ok(poll)) => {
                    warned = false;
                    match poll {
                        Poll::Unchanged => {}
                        Poll::Settling => {
                            tracing::debug!(path = %self.path.display(), "denylist changed; reading it again before using it");
                            wait = SETTLE;
                        }
                        Poll::Reloaded => tracing::info!(
                            path = %self.path.display(),
                            entries = self.len(),
                            "denylist reloaded"
                        ),
                    }
                }
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

    fn write(path: &Path, text: &str) -> Result<()> {
        std::fs::write(path, text).map_err(|e| Error::io("write", path, e))
    }

    #[test]
    fn a_change_takes_effect_once_two_reads_agree() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", "/tmp", e))?;
        let path = dir.path().join("deny");
        write(&path, "one\n")?;
        let list = Denylist::load(&path)?;
        assert!(list.contains("one") && !list.contains("two"));
        assert_eq!(list.poll()?, Poll::Unchanged);
        // Replace by rename (a new inode), as editors and `mv` do.
        let tmp = dir.path().join("deny.new");
        write(&tmp, "one\ntwo\n")?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &path, e))?;
        assert_eq!(list.poll()?, Poll::Settling);
        assert!(!list.contains("two"), "not before a second read agrees");
        assert_eq!(list.poll()?, Poll::Reloaded);
        assert!(list.contains("two") && list.len() == 2);
        assert_eq!(list.poll()?, Poll::Unchanged);
        // A vanished file keeps the last list.
        std::fs::remove_file(&path).map_err(|e| Error::io("rm", &path, e))?;
        assert!(list.poll().is_err());
        assert!(list.contains("two"));
        Ok(())
    }

    #[test]
    fn a_file_emptied_then_refilled_in_place_never_drops_a_revocation() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", "/tmp", e))?;
        let path = dir.path().join("deny");
        write(&path, "revoked-jti\nleaked-bot\n")?;
        let list = Denylist::load(&path)?;
        let revoked = |list: &Denylist| list.contains("revoked-jti") && list.contains("leaked-bot");
        assert!(revoked(&list));

        // A rewrite in place: the same inode, emptied first (`>` in a shell), polled while
        // empty, then filled in two writes, each polled.
        let mut file = std::fs::File::create(&path).map_err(|e| Error::io("truncate", &path, e))?;
        assert_eq!(list.poll()?, Poll::Settling);
        assert!(revoked(&list), "the emptied file dropped the revocations");
        use std::io::Write;
        file.write_all(b"revoked-jti\n")
            .map_err(|e| Error::io("write", &path, e))?;
        assert_eq!(list.poll()?, Poll::Settling);
        assert!(revoked(&list), "the half-written file dropped a revocation");
        file.write_all(b"leaked-bot\nnew-jti\n")
            .map_err(|e| Error::io("write", &path, e))?;
        drop(file);
        assert_eq!(list.poll()?, Poll::Settling);
        assert!(revoked(&list) && !list.contains("new-jti"));
        // Stable now: the new version takes effect, with the added entry.
        assert_eq!(list.poll()?, Poll::Reloaded);
        assert!(revoked(&list) && list.contains("new-jti"));
        assert_eq!(list.len(), 3);
        Ok(())
    }

    #[test]
    fn an_emptied_file_that_stays_empty_clears_the_list() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", "/tmp", e))?;
        let path = dir.path().join("deny");
        write(&path, "one\n")?;
        let list = Denylist::load(&path)?;
        write(&path, "")?;
        assert_eq!(list.poll()?, Poll::Settling);
        assert!(list.contains("one"));
        assert_eq!(list.poll()?, Poll::Reloaded);
        assert!(list.is_empty());
        Ok(())
    }

    #[test]
    fn a_change_reverted_before_it_settled_is_forgotten() -> Result<()> {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", "/tmp", e))?;
        let path = dir.path().join("deny");
        write(&path, "one\n")?;
        let list = Denylist::load(&path)?;
        let saved = dir.path().join("deny.saved");
        std::fs::hard_link(&path, &saved).map_err(|e| Error::io("link", &saved, e))?;
        let tmp = dir.path().join("deny.new");
        write(&tmp, "")?;
        std::fs::rename(&tmp, &path).map_err(|e| Error::io("rename", &path, e))?;
        assert_eq!(list.poll()?, Poll::Settling);
        // The original file (same inode, size and mtime) is back.
        std::fs::rename(&saved, &path).map_err(|e| Error::io("rename", &path, e))?;
        assert_eq!(list.poll()?, Poll::Unchanged);
        assert!(list.contains("one"));
        Ok(())
    }

    #[test]
    fn a_missing_file_is_refused_at_start() {
        assert!(Denylist::load(Path::new("/nonexistent/scipcache/deny")).is_err());
    }
}
