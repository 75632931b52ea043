//! `scipcache`: push and pull SCIP index caches to and from scipcached.
//!
//! A thin shell over the `scipcache_client` library: parse the command line, run the command
//! on a tokio runtime, and turn any failure into the contract's single stderr line
//! (`<status in words>: <message>`) and exit code (0 ok, 2 bad usage, 3 not found, 4 refused,
//! 1 anything else).

mod cli;

use std::process::ExitCode;

use clap::Parser;
use clap::error::ErrorKind;

use crate::cli::args::Cli;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return usage_error(&e),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("internal: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(cli::run(cli));
    // Do not wait for blocking reads of stdin/stdout still parked in the pool.
    runtime.shutdown_background();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{}", cli::output::error_line(&e));
            ExitCode::from(e.exit_code())
        }
    }
}

/// `--help` and `--version` print as clap does and succeed; anything else clap refuses is bad
/// usage: one `invalid argument: ...` line and exit 2.
fn usage_error(e: &clap::Error) -> ExitCode {
    if !e.use_stderr() {
        // Help or version on stdout; a closed stdout is no reason to fail.
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let message = if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
        "a command is required: push, pull, ls, rm, stat, warm, gc or fsck".to_owned()
    } else {
        clap_cause(&e.render().to_string())
    };
    eprintln!("invalid argument: {message} (see scipcache --help)");
    ExitCode::from(2)
}

/// The cause in clap's rendered error, on one line: the paragraph after `error: `, without
/// the usage and tips that follow it.
fn clap_cause(rendered: &str) -> String {
    let paragraph: Vec<&str> = rendered
        .lines()
        .map(str::trim)
        .take_while(|line| !line.is_empty())
        .collect();
    let joined = paragraph.join(" ");
    joined.strip_prefix("error: ").unwrap_or(&joined).to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_errors_become_one_line_causes() {
        let rendered = "error: the following required arguments were not provided:\n  <KEY>\n  \
                        <FILE>\n\nUsage: scipcache push <NS> <KEY> <FILE>\n\n\
                        For more information, try '--help'.\n";
        assert_eq!(
            clap_cause(rendered),
            "the following required arguments were not provided: <KEY> <FILE>"
        );
        assert_eq!(
            clap_cause("error: unexpected argument '--bogus' found\n\n  tip: ...\n"),
            "unexpected argument '--bogus' found"
        );
    }
}
