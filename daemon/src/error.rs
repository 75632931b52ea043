//! The daemon's one error type: what can stop it from starting or serving. Errors of single
//! calls are `tonic::Status` values, made in [`crate::status`].

use std::path::PathBuf;

/// Everything that can keep the daemon (or `scipcached token`) from doing its job.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An option has a bad value, or options contradict each other.
    #[error("{0}")]
    Config(String),
    /// A file could not be read or written.
    #[error("{context} {}: {source}", path.display())]
    Io {
        /// What was being done.
        context: &'static str,
        /// The file.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A signing or verification key is unusable.
    #[error("{0}")]
    Key(String),
    /// A token could not be minted.
    #[error("cannot mint a token: {0}")]
    Mint(String),
    /// The storage engine refused to open or failed.
    #[error("{0}")]
    Store(#[from] scipcache_tiers::Error),
    /// The gRPC server failed (TLS setup or serving).
    #[error("gRPC server: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// Metrics could not be registered or rendered.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// A background task panicked or was cancelled.
    #[error("internal task failed: {0}")]
    Task(#[from] tokio::task::JoinError),
}

impl Error {
    /// An I/O error on `path` while doing `context` (e.g. "cannot read").
    pub fn io(context: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            context,
            path: path.into(),
            source,
        }
    }
}

/// Result with the daemon's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
