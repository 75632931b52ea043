//! The one way this crate runs blocking work (files, CPU-heavy decoding and hashing) from
//! async code. Nothing else in the crate calls `spawn_blocking` (clippy.toml enforces it).

/// Starts `f` on tokio's blocking pool; the handle gives its result.
#[allow(clippy::disallowed_methods)]
pub(crate) fn spawn<T, F>(f: F) -> tokio::task::JoinHandle<T>
where
    F: FnOnce() -> T + Send + 'static,
    T: Send + 'static,
{
    tokio::task::spawn_blocking(f)
}
