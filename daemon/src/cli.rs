//! The command line of `scipcached`: the daemon's options ([`ServeArgs`], `config.rs`) and
//! the subcommands beside them (`token`, and the hidden `check-index`).

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
    /// Walk every page and record of a data dir's index and exit 0 if it is intact (the
    /// daemon runs this in a child process before it serves).
    #[command(hide = true)]
    CheckIndex(crate::index_check::CheckIndexArgs),
}
