//! `scipcached rebuild`: recreate the local index (refs, manifests, chunk locations) from the
//! cold tier alone, with the daemon stopped. The engine does the work
//! (`scipcache_tiers::Store::rebuild`); this is its command line.

use clap::Args;
use scipcache_tiers::Store;
use scipcache_tiers::store::RebuildReport;

use crate::config::{Config, ServeArgs};
use crate::error::{Error, Result};

/// `scipcached rebuild [OPTIONS]`: the daemon's own options, given before or after `rebuild`.
#[derive(Debug, Args)]
#[command(
    after_help = "Run it with the same --data-dir, --cold-url and --config as the \
                        daemon, while the daemon is stopped (it takes the data dir's lock). \
                        It reads every pack footer, manifest and ref object in the cold tier, \
                        builds a new index, moves an existing meta/ (and warm/) aside to \
                        meta.broken-<UTC time> (and warm.broken-<UTC time>), and prints what \
                        it found. Deleted and expired refs stay deleted. Start the daemon \
                        again afterwards."
)]
pub struct RebuildArgs {
    /// The daemon's options (only the data dir, cold tier and LMDB map size are used).
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Rebuilds the index of `config`'s data dir from its cold tier.
pub async fn rebuild(config: &Config) -> Result<RebuildReport> {
    match Store::rebuild(config.store_config()).await {
        Ok(report) => Ok(report),
        Err(scipcache_tiers::Error::Locked { path }) => Err(Error::Config(format!(
            "data dir {path} is in use (its lock file {path}/lock is held): stop scipcached \
             before running rebuild"
        ))),
        Err(e) => Err(e.into()),
    }
}
