//! The data-dir lock: an exclusive `flock` on `<data_dir>/lock`, held until the LMDB
//! environment behind it has closed, so a store reopened in the same process never meets a
//! half-closed environment.

use std::path::Path;
use std::time::Duration;

use crate::error::{Error, Result};

/// Longest a released lock waits for the environment's last handle to go.
const ENV_CLOSE_WAIT: Duration = Duration::from_secs(10);

/// The held lock. Dropping it waits (bounded) for the environment to close, then unlocks: drop
/// it on a blocking thread.
pub(crate) struct DirLock {
    file: std::fs::File,
    env_closed: Option<heed::EnvClosingEvent>,
}

impl std::fmt::Debug for DirLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("DirLock")
    }
}

impl DirLock {
    /// Creates `dir` if needed and locks it (blocking), failing with [`Error::Locked`] when
    /// another store holds it.
    pub(crate) fn acquire(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("creating data dir {}", dir.display()), e))?;
        let path = dir.join("lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        match file.try_lock() {
            Ok(()) => Ok(Self {
                file,
                env_closed: None,
            }),
            Err(std::fs::TryLockError::WouldBlock) => Err(Error::Locked {
                path: dir.display().to_string(),
            }),
            Err(std::fs::TryLockError::Error(e)) => {
                Err(Error::io(format!("locking {}", path.display()), e))
            }
        }
    }

    /// Makes the release wait for this environment to close.
    pub(crate) fn guard_env(&mut self, closed: heed::EnvClosingEvent) {
        self.env_closed = Some(closed);
    }
}

impl Drop for DirLock {
    fn drop(&mut self) {
        if let Some(closed) = &self.env_closed
            && !closed.wait_timeout(ENV_CLOSE_WAIT)
        {
            tracing::warn!(
                "the LMDB environment is still in use {ENV_CLOSE_WAIT:?} after the store closed; \
                 releasing the data-dir lock anyway"
            );
        }
        // Unlocked when the file closes; say so explicitly for readers.
        let _ = self.file.unlock();
    }
}
