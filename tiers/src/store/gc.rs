//! Garbage collection (API placeholder on the helper branch; the engine side is built on main).

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::Store;
use super::lifecycle_types::{FsckReport, GcOptions, GcReport, Progress};
use crate::error::{Error, Result};
use crate::names::Tenant;

impl Store {
    /// Runs one garbage collection.
    pub async fn gc(
        &self,
        opts: GcOptions,
        cancel: CancellationToken,
        progress: watch::Sender<Progress>,
    ) -> Result<GcReport> {
        let _ = (opts, cancel, progress);
        Err(Error::Unavailable("gc placeholder".into()))
    }

    /// Checks every stored copy and manifest.
    pub async fn fsck(
        &self,
        repair: bool,
        cancel: CancellationToken,
        progress: watch::Sender<Progress>,
    ) -> Result<FsckReport> {
        let _ = (repair, cancel, progress);
        Err(Error::Unavailable("fsck placeholder".into()))
    }

    /// What a tenant stores for its quota (each chunk once, at its largest stored size).
    pub async fn tenant_usage(&self, tenant: &Tenant) -> Result<u64> {
        let _ = tenant;
        Ok(0)
    }
}
