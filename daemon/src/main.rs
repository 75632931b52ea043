//! `scipcached`: parse the command line, set up logging, bind, run until SIGINT/SIGTERM.
//! `scipcached token …` mints a token instead; `scipcached rebuild` recreates the local index
//! from the cold tier.

use std::io::IsTerminal;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use scipcache_daemon::cli::{Cli, Command};
use scipcache_daemon::config::{LogFormat, ServeArgs};
use scipcache_daemon::rebuild::RebuildArgs;
use scipcache_daemon::{Config, run};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    // First, while this is the only thread: everything created from here on is owner-only.
    scipcache_daemon::file_modes::restrict_umask();
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Command::Token(args)) => mint(args),
        Some(Command::CheckIndex(args)) => args.run().map_err(anyhow::Error::from),
        Some(Command::Rebuild(args)) => rebuild(&cli.serve, args),
        None => serve(&cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("scipcached: error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes on one line, skipping causes the message already quotes.
fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
}

fn mint(args: &scipcache_daemon::token::TokenArgs) -> anyhow::Result<()> {
    let minted = args.mint()?;
    println!("{}", minted.token);
    eprintln!("{}", minted.jti);
    Ok(())
}

fn rebuild(outer: &ServeArgs, args: &RebuildArgs) -> anyhow::Result<()> {
    let serve = args.serve.over(outer)?;
    let config = Config::load(&serve)?;
    if serve.print_config {
        print!("{}", config.to_toml()?);
        return Ok(());
    }
    init_tracing(config.log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("scipcached-rebuild")
        .build()
        .context("cannot start the async runtime")?;
    let report = runtime.block_on(scipcache_daemon::rebuild::rebuild(&config))?;
    println!("{report}");
    Ok(())
}

fn serve(cli: &Cli) -> anyhow::Result<()> {
    let config = Config::load(&cli.serve)?;
    if cli.serve.print_config {
        print!("{}", config.to_toml()?);
        return Ok(());
    }
    init_tracing(config.log_format);
    // Before anything maps the index: damaged pages fault the child, not the daemon.
    let exe = std::env::current_exe().context("cannot find this program to walk the index")?;
    scipcache_daemon::index_check::walk_in_child(&exe, &config.data_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("scipcached")
        .build()
        .context("cannot start the async runtime")?;
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {} (--listen)", config.listen))?;
        let metrics_listener = tokio::net::TcpListener::bind(config.metrics_listen)
            .await
            .with_context(|| {
                format!(
                    "cannot listen on {} (--metrics-listen)",
                    config.metrics_listen
                )
            })?;
        tracing::info!(
            version = env!("CARGO_PKG_VERSION"),
            data_dir = %config.data_dir.display(),
            "starting scipcached"
        );
        run(config, listener, metrics_listener, shutdown_signal()).await?;
        anyhow::Ok(())
    });
    // Calls aborted at the end of the grace period may still hold runtime tasks; do not wait
    // for them.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    result
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Human => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_current_span(false).init(),
    }
}

/// Completes at the first SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                tracing::warn!("cannot listen for SIGTERM ({e}); stopping on SIGINT only");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
