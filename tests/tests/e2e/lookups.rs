//! Document and symbol lookups end to end: what `Lookups/*` and `scipcache doc`/`symbol` answer
//! for a shared index agrees with an independent decode of the file (prost types written here,
//! not the daemon's tables code); the tables survive a restart, a kill -9 while they are being
//! built, and a gc that removes other refs.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use prost::Message;
use scipcache_proto::pb;
use scipcache_proto::pb::lookups_client::LookupsClient;
use scipcache_tests::{Daemon, DaemonOptions, NS, data};
use tonic::transport::Channel;
use tonic::{Code, Request, Status};

use crate::common::p;

// ---- SCIP, decoded independently ---------------------------------------------------------

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Index {
    #[prost(message, repeated, tag = "2")]
    pub documents: Vec<Document>,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Document {
    #[prost(string, tag = "1")]
    pub relative_path: String,
    #[prost(message, repeated, tag = "2")]
    pub occurrences: Vec<Occurrence>,
    #[prost(message, repeated, tag = "3")]
    pub symbols: Vec<SymbolInformation>,
    #[prost(string, tag = "4")]
    pub language: String,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct Occurrence {
    #[prost(int32, repeated, tag = "1")]
    pub range: Vec<i32>,
    #[prost(string, tag = "2")]
    pub symbol: String,
    #[prost(int32, tag = "3")]
    pub symbol_roles: i32,
}

#[derive(Clone, PartialEq, Message)]
pub(crate) struct SymbolInformation {
    #[prost(string, tag = "1")]
    pub symbol: String,
}

/// What an index says of one global symbol: definitions and references (definition
/// occurrences not among them), by document path.
#[derive(Debug, Default, PartialEq)]
struct Expected {
    definitions: BTreeSet<(String, Vec<i32>)>,
    references: BTreeMap<String, Vec<Vec<i32>>>,
}

fn expected_symbols(index: &Index) -> BTreeMap<&str, Expected> {
    let mut all: BTreeMap<&str, Expected> = BTreeMap::new();
    for doc in &index.documents {
        for o in &doc.occurrences {
            if o.symbol.is_empty() || o.symbol.starts_with("local ") {
                continue;
            }
            let e = all.entry(&o.symbol).or_default();
            if o.symbol_roles & 1 != 0 {
                e.definitions
                    .insert((doc.relative_path.clone(), o.range.clone()));
            } else {
                e.references
                    .entry(doc.relative_path.clone())
                    .or_default()
                    .push(o.range.clone());
            }
        }
    }
    all
}

/// A small SCIP index: `docs` documents, each defining `pkg f{i}().` and referencing the
/// previous document's function, with `version` in every symbol.
pub(crate) fn synthetic_index(docs: usize, version: &str) -> Vec<u8> {
    let symbol = |i: usize| format!("scip-typescript npm pkg {version} src/f{i}().");
    let documents = (0..docs)
        .map(|i| {
            let mut occurrences = vec![Occurrence {
                range: vec![i as i32, 4, 6],
                symbol: symbol(i),
                symbol_roles: 1,
            }];
            if i > 0 {
                occurrences.push(Occurrence {
                    range: vec![i as i32 + 1, 2, 4],
                    symbol: symbol(i - 1),
                    symbol_roles: 8,
                });
            }
            occurrences.push(Occurrence {
                range: vec![0, 0, 1],
                symbol: "local 0".into(),
                symbol_roles: 1,
            });
            Document {
                relative_path: format!("src/f{i}.ts"),
                occurrences,
                symbols: vec![SymbolInformation { symbol: symbol(i) }],
                language: "TypeScript".into(),
            }
        })
        .collect();
    Index { documents }.encode_to_vec()
}

// ---- raw lookups ---------------------------------------------------------------------------

struct Lookups {
    client: LookupsClient<Channel>,
    token: String,
}

fn target(key: &str) -> Option<pb::LookupTarget> {
    Some(pb::LookupTarget {
        namespace: NS.to_owned(),
        key: key.to_owned(),
        fallback_prefixes: Vec::new(),
    })
}

impl Lookups {
    async fn connect(d: &Daemon, token: &str) -> Result<Self> {
        let channel = Channel::from_shared(d.url())?.connect().await?;
        Ok(Self {
            client: LookupsClient::new(channel)
                .max_decoding_message_size(scipcache_proto::MAX_MESSAGE_BYTES),
            token: token.to_owned(),
        })
    }

    fn req<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        let bearer = format!("Bearer {}", self.token);
        if let Ok(v) = bearer.parse() {
            req.metadata_mut().insert(scipcache_proto::AUTHORIZATION, v);
        }
        req
    }

    /// Retries while the server answers UNAVAILABLE (still indexing), up to `patience`.
    async fn retrying<T, F, Fut>(&self, patience: Duration, mut call: F) -> Result<T, Status>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Status>>,
    {
        let deadline = Instant::now() + patience;
        loop {
            match call().await {
                Err(s) if s.code() == Code::Unavailable && Instant::now() < deadline => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                other => return other,
            }
        }
    }

    async fn document(&self, key: &str, path: &str) -> Result<pb::DocumentResponse, Status> {
        self.retrying(Duration::from_secs(120), || {
            let mut c = self.client.clone();
            let req = self.req(pb::DocumentRequest {
                target: target(key),
                path: path.to_owned(),
            });
            async move { c.document(req).await.map(tonic::Response::into_inner) }
        })
        .await
    }

    async fn all_documents(&self, key: &str, page_size: u32) -> Result<Vec<pb::DocumentSummary>> {
        let mut token = String::new();
        let mut all = Vec::new();
        loop {
            let page = self
                .retrying(Duration::from_secs(120), || {
                    let mut c = self.client.clone();
                    let req = self.req(pb::ListDocumentsRequest {
                        target: target(key),
                        prefix: String::new(),
                        page_size,
                        page_token: token.clone(),
                    });
                    async move { c.documents(req).await.map(tonic::Response::into_inner) }
                })
                .await?;
            ensure!(
                page.documents.len() <= page_size as usize,
                "a page of {} documents for page_size {page_size}",
                page.documents.len()
            );
            all.extend(page.documents);
            if page.next_page_token.is_empty() {
                return Ok(all);
            }
            token = page.next_page_token;
        }
    }

    /// A symbol's definitions and all its references, in pages of `page_size` documents.
    async fn symbol(&self, key: &str, symbol: &str, page_size: u32) -> Result<Expected> {
        let mut token = String::new();
        let mut got = Expected::default();
        loop {
            let page = self
                .retrying(Duration::from_secs(120), || {
                    let mut c = self.client.clone();
                    let req = self.req(pb::SymbolRequest {
                        target: target(key),
                        symbol: symbol.to_owned(),
                        page_size,
                        page_token: token.clone(),
                    });
                    async move { c.symbol(req).await.map(tonic::Response::into_inner) }
                })
                .await
                .with_context(|| format!("Lookups/Symbol {symbol:?}"))?;
            ensure!(
                page.symbol == symbol,
                "asked {symbol:?}, got {:?}",
                page.symbol
            );
            got.definitions = page
                .definitions
                .into_iter()
                .map(|d| (d.path, d.range.map(|r| r.range).unwrap_or_default()))
                .collect();
            for r in page.references {
                got.references
                    .entry(r.path)
                    .or_default()
                    .extend(r.ranges.into_iter().map(|r| r.range));
            }
            if page.next_page_token.is_empty() {
                ensure!(
                    page.referencing_documents == got.references.len() as u64,
                    "{symbol:?}: referencing_documents {} but {} documents in the pages",
                    page.referencing_documents,
                    got.references.len()
                );
                return Ok(got);
            }
            token = page.next_page_token;
        }
    }
}

// ---- tests ---------------------------------------------------------------------------------

#[tokio::test]
async fn lookups_agree_with_an_independent_decode_of_a_shared_index() -> Result<()> {
    let Some(a) = data::series_a() else {
        return Ok(());
    };
    let file = &a.files[0];
    let bytes = std::fs::read(file.path()?)?;
    let index = Index::decode(bytes.as_slice()).context("decode the shared index with prost")?;
    let d = Daemon::start(DaemonOptions::new())?;
    let token = d.token("acme", &["web/app:read", "web/app:write"], "1h")?;
    let key = file.key();
    d.cli(&token, &["--json", "push", NS, &key, p(file.path()?)])?
        .success()?;
    let lookups = Lookups::connect(&d, &token).await?;

    // Every document, listed in pages and read one by one.
    let listed = lookups.all_documents(&key, 37).await?;
    let mut want_paths: Vec<&str> = index
        .documents
        .iter()
        .map(|d| d.relative_path.as_str())
        .collect();
    want_paths.sort_unstable();
    let got_paths: Vec<&str> = listed.iter().map(|s| s.path.as_str()).collect();
    ensure!(
        got_paths == want_paths,
        "Lookups/Documents lists {} paths, the index has {}",
        got_paths.len(),
        want_paths.len()
    );
    for doc in &index.documents {
        let answer = lookups.document(&key, &doc.relative_path).await?;
        let summary = answer.summary.context("no summary")?;
        let got = Document::decode(answer.document.as_ref())
            .with_context(|| format!("{}: not a scip.Document", doc.relative_path))?;
        ensure!(
            &got == doc,
            "{}: the document read back differs from the index's",
            doc.relative_path
        );
        ensure!(
            summary.occurrences as usize == doc.occurrences.len()
                && summary.symbols as usize == doc.symbols.len()
                && summary.language == doc.language
                && summary.size == answer.document.len() as u64,
            "{}: summary {summary:?} does not describe the document",
            doc.relative_path
        );
        let at = summary.offset as usize;
        ensure!(
            bytes.get(at..at + answer.document.len()) == Some(answer.document.as_ref()),
            "{}: offset {at} does not point at the document's bytes in the blob",
            doc.relative_path
        );
    }
    let missing = lookups.document(&key, "no/such/file.ts").await;
    ensure!(
        matches!(&missing, Err(s) if s.code() == Code::NotFound),
        "a missing path: {missing:?}"
    );

    // A sample of symbols: every 97th, and the most referenced one (many pages).
    let expected = expected_symbols(&index);
    ensure!(
        expected.len() > 1000,
        "only {} global symbols",
        expected.len()
    );
    let busiest = expected
        .iter()
        .max_by_key(|(_, e)| e.references.len())
        .map(|(s, _)| *s)
        .context("no symbols")?;
    let mut sample: Vec<&str> = expected.keys().step_by(97).copied().collect();
    sample.push(busiest);
    for symbol in &sample {
        let got = lookups.symbol(&key, symbol, 16).await?;
        let want = &expected[symbol];
        ensure!(
            got.definitions == want.definitions,
            "{symbol:?}: definitions {:?}, the index says {:?}",
            got.definitions,
            want.definitions
        );
        ensure!(
            got.references == want.references,
            "{symbol:?}: references in {} documents ({} ranges), the index says {} ({})",
            got.references.len(),
            got.references.values().map(Vec::len).sum::<usize>(),
            want.references.len(),
            want.references.values().map(Vec::len).sum::<usize>()
        );
    }

    // The CLI: `doc --json` and `symbol --json` in the contract's shapes.
    let doc = &index.documents[index.documents.len() / 2];
    let j = d
        .cli(&token, &["--json", "doc", NS, &key, &doc.relative_path])?
        .success()?
        .json()?;
    ensure!(
        j["path"] == doc.relative_path.as_str()
            && j["language"] == doc.language.as_str()
            && j["occurrences"].as_array().map(Vec::len) == Some(doc.occurrences.len())
            && j["symbols"].as_array().map(Vec::len) == Some(doc.symbols.len()),
        "doc --json does not describe {}: {j}",
        doc.relative_path
    );
    let first = &doc.occurrences[0];
    ensure!(
        j["occurrences"][0]["symbol"] == first.symbol.as_str()
            && j["occurrences"][0]["symbol_roles"] == first.symbol_roles
            && j["occurrences"][0]["range"] == serde_json::json!(first.range),
        "doc --json's first occurrence: {}",
        j["occurrences"][0]
    );
    let j = d
        .cli(&token, &["--json", "symbol", NS, &key, busiest])?
        .success()?
        .json()?;
    let want = &expected[busiest];
    let refs = j["references"].as_array().context("references")?;
    ensure!(
        j["symbol"] == busiest
            && j["definition"].as_array().map(Vec::len) == Some(want.definitions.len())
            && refs.len() == want.references.len(),
        "symbol --json for {busiest:?}: {} definitions and {} documents, want {} and {}",
        j["definition"],
        refs.len(),
        want.definitions.len(),
        want.references.len()
    );
    let out = d.cli(&token, &["symbol", NS, &key, "npm nothing 0.0.0 none."])?;
    out.expect_code(3)?;

    // A reader that closed the pipe before the output came (`… | head -0`) ends it quietly.
    let mut cmd = d.cli_command(Some(&token), &["doc", NS, &key, &doc.relative_path]);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn()?;
    drop(child.stdout.take());
    let done = child.wait_with_output()?;
    let stderr = String::from_utf8_lossy(&done.stderr);
    ensure!(
        done.status.success() && stderr.trim().is_empty(),
        "doc into a closed pipe: {} {stderr}",
        done.status
    );
    Ok(())
}

#[tokio::test]
async fn tables_survive_restart_kill9_during_indexing_and_gc_of_other_refs() -> Result<()> {
    let mut d = Daemon::start(DaemonOptions::new())?;
    let admin = d.token("acme", &["*:admin"], "1h")?;
    let keep = d.scratch().join("keep.scip");
    std::fs::write(&keep, synthetic_index(400, "1.2.3"))?;
    let other = d.scratch().join("other.scip");
    std::fs::write(&other, synthetic_index(50, "9.9.9"))?;
    // Pushed and killed at once: the tables were queued with the ref, built after restart.
    d.cli(&admin, &["push", NS, "commit/keep", p(&keep)])?
        .success()?;
    // A real index takes long enough to index that the kill lands while it is being built.
    let big = data::series_a().map(|a| &a.files[0]);
    if let Some(file) = big {
        d.cli(&admin, &["push", NS, "commit/big", p(file.path()?)])?
            .success()?;
    } else {
        eprintln!("lookups: series A absent; the kill lands after a small index only");
    }
    d.kill9()?;
    d.restart()?;
    let symbol = "scip-typescript npm pkg 1.2.3 src/f7().";
    let check = |d: &Daemon, when: &str| -> Result<()> {
        let j = d
            .cli(&admin, &["--json", "symbol", NS, "commit/keep", symbol])?
            .success()
            .with_context(|| format!("symbol lookup {when}"))?
            .json()?;
        ensure!(
            j["definition"] == serde_json::json!([{"path": "src/f7.ts", "range": [7, 4, 6]}])
                && j["references"]
                    == serde_json::json!([{"path": "src/f8.ts", "ranges": [[9, 2, 4]]}]),
            "{when}: {j}"
        );
        let j = d
            .cli(&admin, &["--json", "doc", NS, "commit/keep", "src/f399.ts"])?
            .success()?
            .json()?;
        ensure!(
            j["occurrences"].as_array().map(Vec::len) == Some(3),
            "{when}: {j}"
        );
        Ok(())
    };
    check_patiently(&d, "after kill -9 and restart", &check)?;
    if big.is_some() {
        let j = d
            .cli(
                &admin,
                &[
                    "--json",
                    "doc",
                    NS,
                    "commit/big",
                    "packages/runtime-core/src/apiWatch.ts",
                ],
            )?
            .success()?
            .json()?;
        ensure!(
            j["occurrences"].as_array().is_some_and(|o| !o.is_empty()),
            "a document of the index killed while it was indexed: {j}"
        );
        // The restarted daemon built tables: the kill had left them pending.
        ensure!(
            d.log().contains("built a blob's lookup tables"),
            "the restarted daemon built no tables, so the kill did not land before indexing \
             ended:\n{}",
            d.log()
        );
    }

    d.cli(&admin, &["push", NS, "commit/other", p(&other)])?
        .success()?;
    d.cli(&admin, &["rm", NS, "commit/other"])?.success()?;
    d.cli(&admin, &["gc", "--grace", "0s"])?.success()?;
    check(&d, "after a gc of another ref")?;
    let gone = d.cli(&admin, &["doc", NS, "commit/other", "src/f1.ts"])?;
    gone.expect_code(3)?;

    d.sigterm()?;
    d.restart()?;
    check(&d, "after a restart")?;
    Ok(())
}

/// Runs `check` until it passes or 60 s go by: right after a restart the tables may still be
/// building, which the CLI reports as `unavailable` once its retries run out.
fn check_patiently(
    d: &Daemon,
    when: &str,
    check: &dyn Fn(&Daemon, &str) -> Result<()>,
) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match check(d, when) {
            Ok(()) => return Ok(()),
            Err(e) if Instant::now() < deadline => {
                eprintln!("{when}: not yet ({e:#}); retrying");
                std::thread::sleep(Duration::from_millis(500));
            }
            Err(e) => bail!("{when}: {e:#}"),
        }
    }
}
