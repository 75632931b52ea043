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
    /// Metadata a read needs is damaged (its checksum fails, `sealed.rs`) or missing (the
    /// manifest a ref names, a chunk a stored manifest lists): the message names what.
    #[error("{0}")]
    MetadataLoss(String),
    /// The LMDB index is damaged: the file is shorter than its meta pages record, is not an
    /// LMDB file, or a page or record failed the walk at start (`index_check.rs`).
    #[error(
        "the index {path} is damaged ({detail}); nothing was changed. Stop scipcached and run \
         `scipcached rebuild` with the same --data-dir, --cold-url and config to recreate it \
         from the cold tier"
    )]
    IndexDamaged {
        /// The LMDB data file.
        path: String,
        /// What is wrong with it.
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
    /// The filesystem holding a file the engine writes is full (`ENOSPC`, a quota, or LMDB's
    /// `EIO` for a short write with little left free: `disk_space.rs`).
    #[error(
        "the disk holding {path} is full ({} free; {detail}): free space on that filesystem \
         or give it more room; writes work again as soon as there is room, without a restart",
        human_bytes(*.available)
    )]
    DiskFull {
        /// The file or directory whose write failed.
        path: String,
        /// Bytes still free there (for an unprivileged writer).
        available: u64,
        /// What failed, and how.
        detail: String,
    },
    /// A document or symbol lookup on a blob that has no lookup tables: it is not a SCIP
    /// index, or it was stored before lookups existed. The message says which, and what to do.
    #[error("{0}")]
    NoLookups(String),
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
    /// The data dir's index has no format record (deleted or emptied) while the cold tier
    /// holds data: starting would look like an empty cache.
    #[error(
        "data dir {data_dir} has no index ({data_dir}/meta holds no format record) but its cold \
         tier {cold_url} holds data: run `scipcached rebuild` with the same --data-dir, \
         --cold-url and config to restore the index from the cold tier, then start again"
    )]
    IndexLost {
        /// The data directory.
        data_dir: String,
        /// The cold tier's URL.
        cold_url: String,
    },
    /// A garbage collection is already running; only one runs at a time.
    #[error(
        "a garbage collection is already running (started {started_s} s ago); wait for it to \
         finish and run gc again if needed"
    )]
    GcRunning {
        /// Seconds since the running one started.
        started_s: u64,
    },
    /// A long-running operation was cancelled by its caller at a safe point.
    #[error("{0} was cancelled; what it finished stays done, run it again to complete it")]
    Cancelled(String),
    /// A write would take a tenant over its storage quota.
    #[error(
        "tenant {tenant} would exceed its quota of {} (it stores {}, this push adds {}): \
         delete refs and run gc, or raise the quota in [quotas]",
        human_bytes(*.quota), human_bytes(*.usage), human_bytes(*.adding)
    )]
    QuotaExceeded {
        /// The tenant.
        tenant: String,
        /// Its quota in stored bytes.
        quota: u64,
        /// What it stores now (each chunk once, at its largest stored size).
        usage: u64,
        /// What the refused write would have added.
        adding: u64,
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

/// `bytes` for people: `512 B`, `3.2 MiB`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
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

    #[test]
    fn sizes_read_as_people_write_them() {
        assert_eq!(human_bytes(512), "512 B");
        assert_eq!(human_bytes(3 << 20), "3.0 MiB");
        assert_eq!(human_bytes(1536), "1.5 KiB");
    }
}
