//! The command line of `scipcached`: the daemon's options ([`ServeArgs`], `config.rs`) and
//! the subcommands beside them (`token`, `rebuild`, and the hidden `check-index`).

use clap::{Parser, Subcommand};

use crate::config::ServeArgs;
use crate::token::TokenArgs;

/// `scipcached`: the command line.
#[derive(Debug, Parser)]
#[command(
    name = "scipcached",
    version,
    about = "scipcache daemon: a content-addressed cache for SCIP code indexes, served over gRPC",
    after_help = "Every option can also be set in the environment (SCIPCACHE_<NAME>, e.g. \
                  SCIPCACHE_DATA_DIR) or in the --config TOML file (key = option name with '_', \
                  e.g. data_dir). Precedence: flag > environment > file > default."
)]
pub struct Cli {
    /// A subcommand; without one the daemon runs.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Options of the daemon.
    #[command(flatten)]
    pub serve: ServeArgs,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Mint a token signed with the local key: prints only the token on stdout, its jti on
    /// stderr. Works while the daemon runs (it only reads the key file).
    Token(TokenArgs),
    /// Recreate the local index (refs, manifests, chunk locations) from the cold tier alone,
    /// with the daemon stopped, and print what was found. Deleted and expired refs stay
    /// deleted.
    Rebuild(Box<crate::rebuild::RebuildArgs>),
    /// Walk every page and record of a data dir's index and exit 0 if it is intact (the
    /// daemon runs this in a child process before it serves).
    #[command(hide = true)]
    CheckIndex(crate::index_check::CheckIndexArgs),
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::config::Config;
    use crate::error::{Error, Result};

    #[test]
    fn rebuild_takes_the_daemons_options_before_or_after_the_subcommand() -> Result<()> {
        let cli = Cli::try_parse_from([
            "scipcached",
            "--data-dir",
            "/before",
            "--cold-url",
            "file:///cold-before",
            "rebuild",
            "--data-dir",
            "/after",
        ])
        .map_err(|e| Error::Config(e.to_string()))?;
        let Some(Command::Rebuild(args)) = &cli.command else {
            return Err(Error::Config("not parsed as rebuild".into()));
        };
        let merged = args.serve.over(&cli.serve)?;
        let c = Config::layered(
            &merged,
            toml::from_str("lmdb_map_size = 1024").map_err(|e| Error::Config(e.to_string()))?,
        )?;
        assert_eq!(
            c.data_dir,
            PathBuf::from("/after"),
            "after the subcommand wins"
        );
        assert_eq!(c.cold_url.as_deref(), Some("file:///cold-before"));
        assert_eq!(
            c.lmdb_map_size.map(|s| s.0),
            Some(1024),
            "the file still counts"
        );
        Ok(())
    }
}
