//! Progress reporting: a small trait the CLI implements with an indicatif bar, and that
//! library users (IDE plugins) can implement however they show progress.

use std::sync::Arc;

/// Receives a transfer's progress. Called from several tasks, so implementations must be cheap
/// and thread-safe.
pub trait Progress: Send + Sync {
    /// A transfer of `total` bytes begins (again, when a push is retried from the start).
    fn start(&self, total: u64);
    /// `bytes` more bytes are done.
    fn advance(&self, bytes: u64);
    /// The transfer ended, successfully or not.
    fn finish(&self);
}

/// A shared progress sink, as the options of a transfer hold it.
pub type SharedProgress = Arc<dyn Progress>;

/// Calls `f` on the sink, if there is one.
pub(crate) fn report(progress: Option<&SharedProgress>, f: impl FnOnce(&dyn Progress)) {
    if let Some(p) = progress {
        f(p.as_ref());
    }
}
