//! The command line: clap's view of it, then the checked values the commands run with.
//!
//! Namespaces, keys, prefixes, `--ttl` and `--label` are taken as text by clap and checked
//! here, so that a bad one fails like every other error (one `invalid argument: ...` line,
//! exit 2) and before any connection is made.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use scipcache_client::{ClientConfig, DEFAULT_SERVER, Error, KeyPrefix, Namespace, RefKey, Result};

/// Push and pull SCIP index caches to and from scipcached.
#[derive(Debug, Parser)]
#[command(name = "scipcache", version)]
pub(crate) struct Cli {
    /// The server: http://host:port or https://host:port.
    #[arg(
        long,
        global = true,
        env = "SCIPCACHE_SERVER",
        default_value = DEFAULT_SERVER,
        value_name = "URL"
    )]
    pub(crate) server: String,
    /// Bearer token (a JWT from `scipcached token`).
    #[arg(
        long,
        global = true,
        env = "SCIPCACHE_TOKEN",
        hide_env_values = true,
        value_name = "TOKEN"
    )]
    pub(crate) token: Option<String>,
    /// CA certificate (PEM) for an https:// server.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) ca: Option<PathBuf>,
    /// Client certificate (PEM) for mutual TLS.
    #[arg(long, global = true, value_name = "FILE")]
    pub(crate) cert: Option<PathBuf>,
    /// Private key (PEM) of --cert.
    // Not named `key`: global options share ids with the commands' arguments, and KEY is one.
    #[arg(long = "key", global = true, value_name = "FILE")]
    pub(crate) tls_key: Option<PathBuf>,
    /// Print one JSON object on stdout, and nothing else there.
    #[arg(long, global = true)]
    pub(crate) json: bool,
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Chunk and hash FILE locally, send only the chunks the server lacks, then set the ref.
    Push {
        /// Namespace: tenant/team/project.
        ns: String,
        /// Ref key, e.g. commit/SHA.
        key: String,
        /// The blob to push.
        file: PathBuf,
        /// Expire the ref after this long: 90s, 30m, 24h, 7d.
        #[arg(long, value_name = "D")]
        ttl: Option<String>,
        /// A label stored with the ref; repeat for more.
        #[arg(long = "label", value_name = "k=v")]
        labels: Vec<String>,
    },
    /// Resolve KEY (or the newest ref under the first PREFIX that has one), stream and verify.
    Pull {
        /// Namespace: tenant/team/project.
        ns: String,
        /// Ref key, e.g. commit/SHA.
        key: String,
        /// Write the blob to FILE (atomically) instead of stdout.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        /// Key prefix to fall back to when KEY is absent; repeat for more, tried in order.
        #[arg(long = "fallback", value_name = "PREFIX")]
        fallbacks: Vec<String>,
    },
    /// List refs, newest first.
    Ls {
        /// Namespace: tenant/team/project.
        ns: String,
        /// Only keys starting with P.
        #[arg(long, value_name = "P", default_value = "")]
        prefix: String,
    },
    /// Delete a ref, or with --prefix every ref under a prefix (needs write access).
    Rm {
        /// Namespace: tenant/team/project.
        ns: String,
        /// Ref key (or --prefix instead).
        key: Option<String>,
        /// Delete every ref whose key starts with P instead of one ref.
        #[arg(long, value_name = "P")]
        prefix: Option<String>,
    },
    /// Per-tier chunks, stored bytes, logical bytes and hit counts (needs admin).
    Stat,
    /// Promote a ref's chunks into the server's hot tier, within its budget, before a burst of
    /// reads (needs read access).
    Warm {
        /// Namespace: tenant/team/project.
        ns: String,
        /// Ref key, e.g. branch/main.
        key: String,
    },
    /// One document of a SCIP index: its occurrences and symbols, read from the server's
    /// tables without pulling the index (needs read access).
    Doc {
        /// Namespace: tenant/team/project.
        ns: String,
        /// Ref key, e.g. commit/SHA.
        key: String,
        /// The document's relative path in the index, e.g. src/main.ts.
        path: String,
        /// Key prefix to fall back to when KEY is absent; repeat for more, tried in order.
        #[arg(long = "fallback", value_name = "PREFIX")]
        fallbacks: Vec<String>,
    },
    /// Where a SCIP symbol is defined and referenced in the index under a ref (needs read
    /// access).
    Symbol {
        /// Namespace: tenant/team/project.
        ns: String,
        /// Ref key, e.g. commit/SHA.
        key: String,
        /// The symbol, as SCIP spells it (quote it: it holds spaces).
        symbol: String,
        /// Key prefix to fall back to when KEY is absent; repeat for more, tried in order.
        #[arg(long = "fallback", value_name = "PREFIX")]
        fallbacks: Vec<String>,
    },
    /// Garbage-collect: apply retention and expiry, then sweep unreferenced chunks and
    /// compact sparse packs (needs admin; the operator's token covers every tenant). Ctrl-C
    /// cancels the run on the server.
    Gc {
        /// Report what would go, delete nothing.
        #[arg(long)]
        dry_run: bool,
        /// Keep unreferenced chunks younger than D (default: the server's --gc-grace).
        #[arg(long, value_name = "D")]
        grace: Option<String>,
    },
    /// Check every stored copy and manifest; exit 1 if something is missing or corrupt
    /// (needs the operator's token). Ctrl-C cancels the run on the server.
    Fsck {
        /// Repair what has a good copy elsewhere.
        #[arg(long)]
        repair: bool,
    },
}

/// A command with its arguments checked.
#[derive(Debug, PartialEq)]
pub(crate) enum Action {
    Push {
        ns: Namespace,
        key: RefKey,
        file: PathBuf,
        ttl: Option<Duration>,
        labels: Vec<(String, String)>,
    },
    Pull {
        ns: Namespace,
        key: RefKey,
        output: Option<PathBuf>,
        fallbacks: Vec<KeyPrefix>,
    },
    Ls {
        ns: Namespace,
        prefix: KeyPrefix,
    },
    Rm {
        ns: Namespace,
        key: RefKey,
    },
    RmPrefix {
        ns: Namespace,
        prefix: KeyPrefix,
    },
    Stat,
    Warm {
        ns: Namespace,
        key: RefKey,
    },
    Doc {
        ns: Namespace,
        key: RefKey,
        path: String,
        fallbacks: Vec<KeyPrefix>,
    },
    Symbol {
        ns: Namespace,
        key: RefKey,
        symbol: String,
        fallbacks: Vec<KeyPrefix>,
    },
    Gc {
        dry_run: bool,
        grace: Option<Duration>,
    },
    Fsck {
        repair: bool,
    },
}

impl Cli {
    /// How to connect.
    pub(crate) fn config(&self) -> ClientConfig {
        // An empty SCIPCACHE_SERVER (`SCIPCACHE_SERVER=` in a CI file) means the default.
        let url = match self.server.trim() {
            "" => DEFAULT_SERVER.to_owned(),
            url => url.to_owned(),
        };
        ClientConfig {
            url,
            token: self.token.clone().filter(|t| !t.trim().is_empty()),
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.tls_key.clone(),
            ..ClientConfig::default()
        }
    }

    /// The command with its arguments checked.
    pub(crate) fn action(&self) -> Result<Action> {
        Ok(match &self.command {
            Command::Push {
                ns,
                key,
                file,
                ttl,
                labels,
            } => Action::Push {
                ns: parse_ns(ns)?,
                key: key.parse()?,
                file: file.clone(),
                ttl: ttl.as_deref().map(parse_ttl).transpose()?,
                labels: labels
                    .iter()
                    .map(|l| parse_label(l))
                    .collect::<Result<_>>()?,
            },
            Command::Pull {
                ns,
                key,
                output,
                fallbacks,
            } => {
                if self.json && output.is_none() {
                    return Err(Error::InvalidArgument(
                        "--json needs -o FILE: without it the blob itself goes to stdout".into(),
                    ));
                }
                Action::Pull {
                    ns: parse_ns(ns)?,
                    key: key.parse()?,
                    output: output.clone(),
                    fallbacks: parse_fallbacks(fallbacks)?,
                }
            }
            Command::Ls { ns, prefix } => Action::Ls {
                ns: parse_ns(ns)?,
                prefix: prefix.parse()?,
            },
            Command::Rm { ns, key, prefix } => match (key, prefix) {
                (Some(key), None) => Action::Rm {
                    ns: parse_ns(ns)?,
                    key: key.parse()?,
                },
                (None, Some(prefix)) => Action::RmPrefix {
                    ns: parse_ns(ns)?,
                    prefix: parse_delete_prefix(prefix)?,
                },
                (Some(_), Some(_)) => {
                    return Err(Error::InvalidArgument(
                        "rm takes a KEY or --prefix P, not both".into(),
                    ));
                }
                (None, None) => {
                    return Err(Error::InvalidArgument(
                        "rm needs a KEY, or --prefix P to delete every ref under a prefix".into(),
                    ));
                }
            },
            Command::Stat => Action::Stat,
            Command::Warm { ns, key } => Action::Warm {
                ns: parse_ns(ns)?,
                key: key.parse()?,
            },
            Command::Doc {
                ns,
                key,
                path,
                fallbacks,
            } => Action::Doc {
                ns: parse_ns(ns)?,
                key: key.parse()?,
                path: non_empty(
                    path,
                    "PATH",
                    "a document's relative path such as src/main.ts",
                )?,
                fallbacks: parse_fallbacks(fallbacks)?,
            },
            Command::Symbol {
                ns,
                key,
                symbol,
                fallbacks,
            } => Action::Symbol {
                ns: parse_ns(ns)?,
                key: key.parse()?,
                symbol: non_empty(
                    symbol,
                    "SYMBOL",
                    "a SCIP symbol such as 'npm pkg 1.0.0 a/f().'",
                )?,
                fallbacks: parse_fallbacks(fallbacks)?,
            },
            Command::Gc { dry_run, grace } => Action::Gc {
                dry_run: *dry_run,
                grace: grace.as_deref().map(parse_grace).transpose()?,
            },
            Command::Fsck { repair } => Action::Fsck { repair: *repair },
        })
    }

    /// The server-side run the command starts, if it is one that Ctrl-C cancels there.
    pub(crate) fn server_run(&self) -> Option<&'static str> {
        match self.command {
            Command::Gc { .. } => Some("gc"),
            Command::Fsck { .. } => Some("fsck"),
            _ => None,
        }
    }
}

/// `--fallback P`, repeated.
fn parse_fallbacks(texts: &[String]) -> Result<Vec<KeyPrefix>> {
    texts.iter().map(|p| Ok(p.parse()?)).collect()
}

/// A positional argument that must not be empty.
fn non_empty(text: &str, name: &str, example: &str) -> Result<String> {
    if text.is_empty() {
        return Err(Error::InvalidArgument(format!(
            "{name} is empty; give {example}"
        )));
    }
    Ok(text.to_owned())
}

/// `rm --prefix P`: a key prefix, not empty (that would be every ref of the namespace).
pub(crate) fn parse_delete_prefix(text: &str) -> Result<KeyPrefix> {
    if text.is_empty() {
        return Err(Error::InvalidArgument(
            "an empty --prefix would delete every ref of the namespace; name a prefix such as \
             commit/"
                .into(),
        ));
    }
    Ok(text.parse()?)
}

/// `gc --grace D`: a humantime duration; `0s` is allowed (sweep everything unreferenced).
pub(crate) fn parse_grace(text: &str) -> Result<Duration> {
    humantime::parse_duration(text).map_err(|e| {
        Error::InvalidArgument(format!(
            "invalid --grace {text:?}: {e}; use a duration such as 0s, 30m or 1h"
        ))
    })
}

/// NS: `tenant/team/project`, with the whole namespace named in the error.
pub(crate) fn parse_ns(text: &str) -> Result<Namespace> {
    text.parse::<Namespace>().map_err(|e| {
        let why = e.to_string();
        let why = why
            .strip_prefix(&format!("invalid namespace {text:?}: "))
            .unwrap_or(&why)
            .to_owned();
        Error::InvalidArgument(format!("invalid namespace {text:?}: {why}"))
    })
}

/// `--ttl`: a humantime duration of at least a second.
pub(crate) fn parse_ttl(text: &str) -> Result<Duration> {
    let ttl = humantime::parse_duration(text).map_err(|e| {
        Error::InvalidArgument(format!(
            "invalid --ttl {text:?}: {e}; use a duration such as 90s, 30m, 24h or 7d"
        ))
    })?;
    if ttl < Duration::from_secs(1) {
        return Err(Error::InvalidArgument(format!(
            "invalid --ttl {text:?}: a TTL must be at least 1s"
        )));
    }
    Ok(ttl)
}

/// `--label k=v`: split at the first `=`; the key must not be empty, the value may be.
pub(crate) fn parse_label(text: &str) -> Result<(String, String)> {
    match text.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_owned(), v.to_owned())),
        _ => Err(Error::InvalidArgument(format!(
            "invalid --label {text:?}: expected key=value"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> std::result::Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("scipcache").chain(args.iter().copied()))
    }

    fn action(args: &[&str]) -> Result<Action> {
        parse(args)
            .map_err(|e| Error::InvalidArgument(e.to_string()))?
            .action()
    }

    #[test]
    fn labels_split_at_the_first_equals_sign() -> Result<()> {
        assert_eq!(parse_label("ci=github")?, ("ci".into(), "github".into()));
        assert_eq!(parse_label("expr=a=b")?, ("expr".into(), "a=b".into()));
        assert_eq!(parse_label("empty=")?, ("empty".into(), String::new()));
        for bad in ["novalue", "=v", ""] {
            assert!(parse_label(bad).is_err(), "{bad:?} was accepted");
        }
        Ok(())
    }

    #[test]
    fn ttls_are_humantime_and_at_least_a_second() -> Result<()> {
        assert_eq!(parse_ttl("90s")?, Duration::from_secs(90));
        assert_eq!(parse_ttl("30m")?, Duration::from_secs(1800));
        assert_eq!(parse_ttl("24h")?, Duration::from_secs(86_400));
        assert_eq!(parse_ttl("7d")?, Duration::from_secs(7 * 86_400));
        for bad in ["0s", "10ms", "soon", "-1h", ""] {
            let err = parse_ttl(bad).err();
            assert_eq!(err.map(|e| e.exit_code()), Some(2), "{bad:?}");
        }
        Ok(())
    }

    #[test]
    fn push_takes_repeated_labels_and_a_ttl() -> Result<()> {
        let got = action(&[
            "push",
            "acme/web/app",
            "commit/abc",
            "index.scip",
            "--ttl",
            "7d",
            "--label",
            "ci=gh",
            "--label",
            "lang=go",
        ])?;
        let Action::Push {
            ns, ttl, labels, ..
        } = got
        else {
            panic!("not a push: {got:?}");
        };
        assert_eq!(ns.as_str(), "acme/web/app");
        assert_eq!(ttl, Some(Duration::from_secs(7 * 86_400)));
        assert_eq!(labels.len(), 2);
        Ok(())
    }

    #[test]
    fn bad_names_are_bad_usage_before_any_connection() {
        for args in [
            &["push", "Acme/web/app", "commit/abc", "f"][..],
            &["push", "acme/web/app", "commit//abc", "f"],
            &["push", "acme/web/app", "k", "f", "--label", "nokey"],
            &["pull", "acme/web", "k"],
            &["pull", "acme/web/app", "k", "--fallback", "bad prefix"],
            &["rm", "acme/web/app", "../x"],
            &["ls", "acme/web/app", "--prefix", "a b"],
            &["warm", "acme/web", "branch/main"],
            &["warm", "acme/web/app", "branch//main"],
        ] {
            let err = action(args).err();
            assert_eq!(err.map(|e| e.exit_code()), Some(2), "{args:?}");
        }
    }

    #[test]
    fn namespace_errors_name_the_whole_namespace() {
        for bad in ["Acme/web/app", "acme/web", "acme//app"] {
            let msg = parse_ns(bad)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                msg.starts_with(&format!("invalid namespace {bad:?}: ")),
                "{msg}"
            );
            assert_eq!(msg.matches("invalid namespace").count(), 1, "{msg}");
        }
    }

    #[test]
    fn an_empty_server_setting_means_the_default() -> Result<()> {
        let cli =
            parse(&["--server", "", "stat"]).map_err(|e| Error::InvalidArgument(e.to_string()))?;
        assert_eq!(cli.config().url, DEFAULT_SERVER);
        Ok(())
    }

    #[test]
    fn pull_with_json_needs_an_output_file() -> Result<()> {
        let err = action(&["--json", "pull", "acme/web/app", "k"]).err();
        assert!(matches!(&err, Some(Error::InvalidArgument(m)) if m.contains("-o FILE")));
        assert_eq!(err.map(|e| e.exit_code()), Some(2));
        let ok = action(&["pull", "acme/web/app", "k", "-o", "out", "--json"])?;
        assert!(matches!(
            ok,
            Action::Pull {
                output: Some(_),
                ..
            }
        ));
        let fallbacks = action(&[
            "pull",
            "acme/web/app",
            "commit/abc",
            "--fallback",
            "branch/main",
            "--fallback",
            "commit/",
        ])?;
        let Action::Pull { fallbacks, .. } = fallbacks else {
            panic!("not a pull");
        };
        let texts: Vec<&str> = fallbacks.iter().map(KeyPrefix::as_str).collect();
        assert_eq!(texts, ["branch/main", "commit/"]);
        Ok(())
    }

    #[test]
    fn global_options_go_before_or_after_the_command() -> Result<()> {
        let before = parse(&["--server", "http://h:1", "--json", "stat"])
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        let after = parse(&["stat", "--server", "http://h:1", "--json"])
            .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        assert_eq!(before.server, "http://h:1");
        assert_eq!(after.server, "http://h:1");
        assert!(before.json && after.json);
        let tls = parse(&[
            "rm", "a/b/c", "commit/x", "--key", "k.pem", "--cert", "c.pem",
        ])
        .map_err(|e| Error::InvalidArgument(e.to_string()))?;
        assert_eq!(tls.tls_key, Some(PathBuf::from("k.pem")));
        assert_eq!(tls.config().key, Some(PathBuf::from("k.pem")));
        assert!(matches!(tls.action()?, Action::Rm { key, .. } if key.as_str() == "commit/x"));
        Ok(())
    }

    #[test]
    fn unknown_commands_and_flags_are_clap_usage_errors() {
        for args in [&["nope"][..], &["push"], &["ls", "a/b/c", "--bogus"], &[]] {
            let err = parse(args).err();
            assert_eq!(err.map(|e| e.exit_code()), Some(2), "{args:?}");
        }
    }

    #[test]
    fn warm_takes_a_namespace_and_a_key() -> Result<()> {
        let got = action(&["--json", "warm", "acme/web/app", "branch/main"])?;
        let Action::Warm { ns, key } = got else {
            panic!("not a warm-up: {got:?}");
        };
        assert_eq!((ns.as_str(), key.as_str()), ("acme/web/app", "branch/main"));
        assert!(parse(&["warm", "acme/web/app"]).is_err(), "KEY is required");
        Ok(())
    }

    #[test]
    fn rm_takes_a_key_or_a_prefix_but_not_both_or_neither() -> Result<()> {
        let got = action(&["rm", "acme/web/app", "--prefix", "pr/"])?;
        assert!(
            matches!(&got, Action::RmPrefix { prefix, .. } if prefix.as_str() == "pr/"),
            "{got:?}"
        );
        assert!(matches!(
            action(&["rm", "acme/web/app", "commit/x"])?,
            Action::Rm { .. }
        ));
        for args in [
            &["rm", "acme/web/app", "commit/x", "--prefix", "pr/"][..],
            &["rm", "acme/web/app"],
            &["rm", "acme/web/app", "--prefix", ""],
            &["rm", "acme/web/app", "--prefix", "bad prefix"],
        ] {
            let err = action(args).err();
            assert_eq!(err.map(|e| e.exit_code()), Some(2), "{args:?}");
        }
        Ok(())
    }

    #[test]
    fn gc_takes_dry_run_and_a_grace_and_fsck_takes_repair() -> Result<()> {
        assert_eq!(
            action(&["gc", "--dry-run", "--grace", "0s"])?,
            Action::Gc {
                dry_run: true,
                grace: Some(Duration::ZERO)
            }
        );
        assert_eq!(
            action(&["--json", "gc"])?,
            Action::Gc {
                dry_run: false,
                grace: None
            }
        );
        let err = action(&["gc", "--grace", "soon"]).err();
        assert_eq!(err.map(|e| e.exit_code()), Some(2));
        assert_eq!(
            action(&["fsck", "--repair"])?,
            Action::Fsck { repair: true }
        );
        assert_eq!(action(&["fsck"])?, Action::Fsck { repair: false });
        Ok(())
    }

    #[test]
    fn the_command_line_definition_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
