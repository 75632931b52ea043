//! The process's open-file limit and what the daemon may spend of it on connections.
//!
//! Every connection costs a descriptor, and so does every file the engine opens (LMDB, pack
//! files, cold-tier objects, sockets to the object store). At start the soft limit is raised
//! to the hard limit; of the result, [`ConnectionBudget`] keeps a reserve for the engine that
//! connections never use, however `--max-connections` is set.

use crate::error::{Error, Result};

/// The default `--max-connections` is the limit divided by this...
const DEFAULT_SHARE: u64 = 4;
/// ...and at least this.
const DEFAULT_MIN: u64 = 64;
/// Descriptors kept for the engine's own files and the metrics port: a quarter of the limit,
/// at least this many.
const RESERVED_MIN: u64 = 128;
/// At the smallest limits connections still get this many.
const CONNECTIONS_FLOOR: u64 = 8;

/// The open-file limit after [`raise_to_hard_limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenFileLimit {
    /// The soft limit before.
    pub before: u64,
    /// The soft limit now.
    pub soft: u64,
    /// The hard limit.
    pub hard: u64,
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit. An error says why it could not; the
/// limit then stays as it was (see [`current`]).
#[cfg(unix)]
pub fn raise_to_hard_limit() -> Result<OpenFileLimit> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (before, hard) = getrlimit(Resource::RLIMIT_NOFILE)
        .map_err(|e| Error::Config(format!("cannot read the open-file limit: {e}")))?;
    if before >= hard {
        return Ok(OpenFileLimit {
            before,
            soft: before,
            hard,
        });
    }
    setrlimit(Resource::RLIMIT_NOFILE, hard, hard).map_err(|e| {
        Error::Config(format!(
            "cannot raise the open-file limit from {before} to the hard limit {hard}: {e}"
        ))
    })?;
    Ok(OpenFileLimit {
        before,
        soft: hard,
        hard,
    })
}

/// Without `setrlimit` there is nothing to raise.
#[cfg(not(unix))]
pub fn raise_to_hard_limit() -> Result<OpenFileLimit> {
    Err(Error::Config(
        "the open-file limit cannot be read on this platform".into(),
    ))
}

/// The soft open-file limit now, if the platform has one.
#[cfg(unix)]
pub fn current() -> Option<u64> {
    nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE)
        .ok()
        .map(|(soft, _)| soft)
}

/// The soft open-file limit now, if the platform has one.
#[cfg(not(unix))]
pub fn current() -> Option<u64> {
    None
}

/// How many connections the daemon holds at most, and what that leaves for its files.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConnectionBudget {
    /// The effective `--max-connections`.
    pub max_connections: usize,
    /// Whether the configured value was lowered to keep the reserve.
    pub lowered_from: Option<usize>,
    /// Descriptors no connection may use.
    pub reserved: u64,
}

impl ConnectionBudget {
    /// The budget under the soft limit `limit` (`None`: unknown, then only `configured`, or
    /// the default for a 1024-descriptor process, counts).
    pub fn new(limit: Option<u64>, configured: Option<usize>) -> Self {
        let limit = limit.unwrap_or(1024);
        let reserved = (limit / 4).max(RESERVED_MIN).min(limit);
        let cap = limit.saturating_sub(reserved).max(CONNECTIONS_FLOOR);
        let default = (limit / DEFAULT_SHARE).max(DEFAULT_MIN).min(cap);
        let wanted = configured.map_or(default, |n| u64::try_from(n).unwrap_or(u64::MAX));
        let max = wanted.min(cap);
        let max_connections = usize::try_from(max).unwrap_or(usize::MAX);
        Self {
            max_connections,
            lowered_from: configured.filter(|&n| n > max_connections),
            reserved,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_is_a_quarter_of_the_limit_and_at_least_64() {
        assert_eq!(ConnectionBudget::new(Some(1024), None).max_connections, 256);
        assert_eq!(
            ConnectionBudget::new(Some(65_536), None).max_connections,
            16_384
        );
        assert_eq!(ConnectionBudget::new(Some(256), None).max_connections, 64);
    }

    #[test]
    fn a_configured_bound_never_eats_the_reserve() {
        let b = ConnectionBudget::new(Some(1024), Some(5000));
        assert_eq!((b.max_connections, b.reserved), (768, 256));
        assert_eq!(b.lowered_from, Some(5000));
        let fits = ConnectionBudget::new(Some(1024), Some(100));
        assert_eq!((fits.max_connections, fits.lowered_from), (100, None));
        let tiny = ConnectionBudget::new(Some(64), None);
        assert_eq!(tiny.max_connections, 8, "a floor even below the reserve");
    }

    #[test]
    fn the_soft_limit_ends_at_the_hard_limit() -> Result<()> {
        let raised = raise_to_hard_limit()?;
        assert_eq!(raised.soft, raised.hard);
        assert_eq!(current(), Some(raised.hard));
        Ok(())
    }
}
