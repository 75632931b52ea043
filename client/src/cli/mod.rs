//! The `scipcache` commands: check the arguments, connect, call the library, print.

pub(crate) mod args;
pub(crate) mod output;
pub(crate) mod term;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use scipcache_client::{
    Client, DeletePrefixReport, Error, GcOptions, KeyPrefix, LookupRef, Namespace, PullOptions,
    PushOptions, RefKey, Result, SharedProgress, scip_json,
};
use tokio::io::AsyncWriteExt;

use self::args::{Action, Cli};
use self::output::{LsJson, RmJson, StatJson, print_json, print_lines};
use self::term::{RunBar, TermProgress};

/// Runs the command until it ends or a signal interrupts it. On interruption the command's
/// future is dropped, which removes a pull's temporary file.
pub(crate) async fn run(cli: Cli) -> Result<()> {
    let server_run = cli.server_run();
    tokio::select! {
        result = run_command(cli) => result,
        () = interrupted() => Err(match server_run {
            // Dropping the command closed its stream: the server cancels the run.
            Some(what) => Error::Cancelled(format!(
                "{what} interrupted: the server cancels the run at its next safe point; what it \
                 finished stays done, run {what} again to complete it"
            )),
            None => Error::Interrupted,
        }),
    }
}

async fn interrupted() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        if let Ok(mut term) = signal(SignalKind::terminate()) {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            return;
        }
    }
    if tokio::signal::ctrl_c().await.is_err() {
        // No signal handling available: never interrupt.
        std::future::pending::<()>().await;
    }
}

async fn run_command(cli: Cli) -> Result<()> {
    // Arguments are checked before connecting: bad usage fails fast, without a server.
    let action = cli.action()?;
    let json = cli.json;
    let client = Client::connect(cli.config()).await?;
    match action {
        Action::Push {
            ns,
            key,
            file,
            ttl,
            labels,
        } => {
            let opts = PushOptions {
                ttl,
                labels,
                progress: progress("push", json),
                cutting: None,
            };
            let report = client.push_file(&ns, &key, &file, &opts).await?;
            if json {
                print_json(&report)
            } else {
                print_lines(&[output::push_line(&report)])
            }
        }
        Action::Pull {
            ns,
            key,
            output: Some(path),
            fallbacks,
        } => pull_to_file(&client, &ns, &key, &fallbacks, &path, json).await,
        Action::Pull {
            ns,
            key,
            output: None,
            fallbacks,
        } => {
            let opts = PullOptions {
                progress: progress("pull", json),
            };
            let mut stdout = tokio::io::stdout();
            let report = client
                .pull(&ns, &key, &fallbacks, &mut stdout, &opts)
                .await?;
            stdout
                .flush()
                .await
                .map_err(|e| Error::io("cannot write to stdout", e))?;
            // stdout holds the blob; the summary goes to stderr.
            eprintln!("{}", output::pull_line(&report, "stdout"));
            Ok(())
        }
        Action::Ls { ns, prefix } => {
            let list = client.list_refs(&ns, &prefix).await?;
            if json {
                return print_json(&LsJson::new(ns.as_str(), prefix.as_str(), &list));
            }
            print_lines(&output::ls_lines(&list))?;
            if list.truncated {
                eprintln!("(more refs match; narrow the listing with --prefix)");
            }
            Ok(())
        }
        Action::Rm { ns, key } => {
            let deleted = client.delete_ref(&ns, &key).await?;
            if json {
                print_json(&RmJson {
                    ns: ns.as_str(),
                    key: key.as_str(),
                    deleted,
                })
            } else if deleted {
                print_lines(&[format!("deleted {ns} {key}")])
            } else {
                print_lines(&[format!("{ns} {key}: no such ref, nothing deleted")])
            }
        }
        Action::RmPrefix { ns, prefix } => {
            let deleted = client.delete_prefix(&ns, &prefix).await?;
            if json {
                print_json(&DeletePrefixReport {
                    ns: ns.to_string(),
                    prefix: prefix.as_str().to_owned(),
                    deleted,
                })
            } else {
                print_lines(&[format!(
                    "deleted {deleted} refs under {prefix} in {ns}",
                    prefix = prefix.as_str()
                )])
            }
        }
        Action::Doc {
            ns,
            key,
            path,
            fallbacks,
        } => {
            let at = LookupRef {
                ns: &ns,
                key: &key,
                fallbacks: &fallbacks,
            };
            let found = client.document(at, &path).await?;
            let doc = scip_json::decode_document(&found.bytes)?;
            if json {
                print_json(&doc)
            } else {
                print_lines(&output::doc_lines(&found, &doc))
            }
        }
        Action::Symbol {
            ns,
            key,
            symbol,
            fallbacks,
        } => {
            let at = LookupRef {
                ns: &ns,
                key: &key,
                fallbacks: &fallbacks,
            };
            let report = client.symbol(at, &symbol).await?;
            if json {
                print_json(&report)
            } else {
                print_lines(&output::symbol_lines(&report))
            }
        }
        Action::Gc { dry_run, grace } => {
            let bar = RunBar::new("gc", show_bar(json));
            let report = client
                .gc(&GcOptions { dry_run, grace }, |p| bar.update(p))
                .await;
            bar.finish();
            let report = report?;
            if json {
                print_json(&report)
            } else {
                print_lines(&output::gc_lines(&report))
            }
        }
        Action::Fsck { repair } => {
            let bar = RunBar::new("fsck", show_bar(json));
            let report = client.fsck(repair, |p| bar.update(p)).await;
            bar.finish();
            let report = report?;
            if json {
                print_json(&report)?;
            } else {
                print_lines(&output::fsck_lines(&report))?;
            }
            if report.has_unrepaired() {
                return Err(Error::Damaged(report.damage_message()));
            }
            Ok(())
        }
        Action::Stat => {
            let stats = client.stats().await?;
            if json {
                print_json(&StatJson::new(&stats))
            } else {
                print_lines(&output::stat_lines(&stats))
            }
        }
        Action::Warm { ns, key } => {
            let report = client.warm(&ns, &key).await?;
            if json {
                print_json(&report)
            } else {
                print_lines(&[output::warm_line(&report)])
            }
        }
    }
}

/// A progress bar for human output on a terminal.
fn progress(verb: &'static str, json: bool) -> Option<SharedProgress> {
    show_bar(json).then(|| Arc::new(TermProgress::new(verb)) as SharedProgress)
}

/// Whether progress is shown: human output with stderr on a terminal.
fn show_bar(json: bool) -> bool {
    !json && std::io::stderr().is_terminal()
}

/// Pulls into a temporary file next to `path` and renames it into place only once the blob
/// is verified, so a failed or interrupted pull leaves `path` as it was.
async fn pull_to_file(
    client: &Client,
    ns: &Namespace,
    key: &RefKey,
    fallbacks: &[KeyPrefix],
    path: &Path,
    json: bool,
) -> Result<()> {
    let shown = path.display().to_string();
    let temp = temp_file_beside(path)?;
    let std_file = temp
        .as_file()
        .try_clone()
        .map_err(|e| Error::io(format!("cannot open a temporary file for {shown}"), e))?;
    let opts = PullOptions {
        progress: progress("pull", json),
    };
    // No fsync: the rename keeps FILE intact if the pull fails, and a restored cache need not
    // survive a power cut (an fsync of a 100 MB file costs more than the pull).
    let report = client
        .pull_file(ns, key, fallbacks, std_file, &opts)
        .await?;
    temp.persist(path)
        .map_err(|e| Error::io(format!("cannot move the pulled blob into {shown}"), e.error))?;
    if json {
        print_json(&report)
    } else {
        print_lines(&[output::pull_line(&report, &shown)])
    }
}

/// A temporary file in `path`'s directory (a rename across file systems is not atomic),
/// removed when dropped unless persisted. Created like `File::create` would (umask applies).
fn temp_file_beside(path: &Path) -> Result<tempfile::NamedTempFile> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::InvalidArgument(format!("-o {}: not a file name", path.display())))?;
    let prefix = format!(".{name}.");
    let mut builder = tempfile::Builder::new();
    builder.prefix(&prefix).suffix(".partial");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(&dir).map_err(|e| {
        Error::io(
            format!("cannot create a temporary file in {}", dir.display()),
            e,
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn temp_files_sit_beside_the_target_and_vanish_unless_persisted()
    -> std::result::Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let target = dir.path().join("index.scip");
        std::fs::write(&target, b"old")?;
        let temp = temp_file_beside(&target)?;
        assert_eq!(temp.path().parent(), Some(dir.path()));
        let temp_path = temp.path().to_path_buf();
        drop(temp);
        assert!(!temp_path.exists());
        assert_eq!(std::fs::read(&target)?, b"old");

        let temp = temp_file_beside(&target)?;
        std::fs::write(temp.path(), b"new")?;
        temp.persist(&target)?;
        assert_eq!(std::fs::read(&target)?, b"new");
        Ok(())
    }

    #[test]
    fn a_directory_is_not_an_output_file_name() {
        assert!(matches!(
            temp_file_beside(Path::new("..")),
            Err(Error::InvalidArgument(_))
        ));
    }
}
