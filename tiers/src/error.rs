//! The engine's one error type. Variants say what went wrong in terms a caller can act on;
//! the daemon maps them to gRPC status codes in a single place.

use crate::ids::ChunkId;

/// Most chunk ids [`Error::MissingChunks`] lists: a commit naming millions of absent chunks
/// must not cost a list of millions (64 ids are about 4 KiB of hex in a status message).
pub const MAX_LISTED_MISSING: usize = 64;

/// Everything the engine can fail with.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A name, key, id, size or encoding given by a caller is not acceptable.
    #[error("{0}")]
    InvalidArgument(String),
    /// The thing asked for does not exist (or has expired).
    #[error("{0}")]
    NotFound(String),
    /// A chunk's bytes do not hash to its id.
    #[error("chunk {id} is corrupt: its bytes hash to {actual}")]
    Corrupt {
        /// The id the bytes were stored under.
        id: ChunkId,
        /// What the bytes actually hash to.
        actual: String,
    },
    /// No tier holds a good copy of a chunk that an index says exists.
    #[error("chunk {id} failed verification in every tier that holds it ({detail})")]
    DataLoss {
        /// The lost chunk.
        id: ChunkId,
        /// What was tried.
        detail: String,
    },
    /// A manifest refers to chunks the store does not have: the first
    /// [`MAX_LISTED_MISSING`] of them, in manifest order, and how many there are in all.
    #[error("{total} chunks are missing")]
    MissingChunks {
        /// The first missing chunks (each once), at most [`MAX_LISTED_MISSING`].
        listed: Vec<ChunkId>,
        /// Every distinct missing chunk, listed or not.
        total: u64,
    },
    /// A compare-and-set on a ref found another value.
    #[error("{0}")]
    Conflict(String),
    /// The LMDB map or a disk is full.
    #[error("storage full: {0}")]
    Full(String),
    /// A tier cannot be reached (object store down) and no other copy can serve.
    #[error("{0}")]
    Unavailable(String),
    /// Another process holds the data directory.
    #[error("data dir {path} is in use by another process (lock file {path}/lock is held)")]
    Locked {
        /// The data directory.
        path: String,
    },
    /// A stored record could not be decoded: on-disk corruption, or a version no build writes
    /// (a newer version is [`Error::NewerFormat`]).
    #[error("stored record is unreadable: {0}")]
    Format(String),
    /// A data dir or pack was written in a format newer than this build reads.
    #[error(
        "{what} was written by a newer scipcached (format {found}; this build reads up to \
         format {supported}): upgrade scipcached to open it"
    )]
    NewerFormat {
        /// What was being opened (the data dir or pack, with its path).
        what: String,
        /// The format version found.
        found: u64,
        /// The newest format version this build reads.
        supported: u64,
    },
    /// The engine is shutting down.
    #[error("the store is shutting down")]
    ShuttingDown,
    /// Local file I/O failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// LMDB failed.
    #[cfg(feature = "backends")]
    #[error("lmdb: {0}")]
    Lmdb(#[source] heed::Error),
    /// The object store failed.
    #[cfg(feature = "backends")]
    #[error("object store: {0}")]
    ObjectStore(#[source] object_store::Error),
}

impl Error {
    /// Wraps an I/O error with what was being done; a full disk becomes [`Error::Full`].
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        if source.kind() == std::io::ErrorKind::StorageFull {
            return Self::Full(format!("{}: the disk is full", context.into()));
        }
        Self::Io {
            context: context.into(),
            source,
        }
    }
}

#[cfg(feature = "backends")]
impl From<heed::Error> for Error {
    fn from(e: heed::Error) -> Self {
        match e {
            heed::Error::Mdb(heed::MdbError::MapFull) => Self::Full(
                "the LMDB map is full; raise map_size (--lmdb-map-size) or free space".into(),
            ),
            heed::Error::Io(io) if io.raw_os_error() == Some(libc::ENOSPC) => {
                Self::Full(format!("disk full while writing LMDB: {io}"))
            }
            other => Self::Lmdb(other),
        }
    }
}

#[cfg(feature = "backends")]
impl From<object_store::Error> for Error {
    fn from(e: object_store::Error) -> Self {
        match e {
            object_store::Error::NotFound { path, .. } => {
                Self::NotFound(format!("object {path} not found in the cold tier"))
            }
            other => Self::ObjectStore(other),
        }
    }
}

/// Result with the engine's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_is_reported_as_storage_full() {
        let e = Error::io(
            "appending to a warm pack",
            std::io::Error::from(std::io::ErrorKind::StorageFull),
        );
        assert!(matches!(e, Error::Full(_)), "{e:?}");
        let e = Error::io("reading", std::io::Error::other("EIO"));
        assert!(matches!(e, Error::Io { .. }), "{e:?}");
    }
}
