//! The one way this crate runs blocking work (LMDB, files, CPU-heavy codecs) from async code.

use crate::error::{Error, Result};

/// Runs `f` on tokio's blocking pool and waits for it.
pub(crate) async fn run<T, F>(f: F) -> Result<T>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(Error::ShuttingDown),
    }
}
