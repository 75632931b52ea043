//! Lookup tables on a real store: built after a commit, answering from the blob's restored
//! bytes, paged listings, blobs that are not SCIP, restarts and GC.

use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use super::scip_tests::push_blob;
use super::tests::{config, data, key, ns, tmp};
use crate::error::{Error, Result};
use crate::ids::ManifestId;
use crate::names::Namespace;
use crate::scip::CutMode;
use crate::scip::synthetic::{index, symbol};
use crate::scip::tables::build_in_runs;
use crate::store::{Found, GcOptions, LookupSource, LookupState, Progress, Store};

const SHA: &str = "eb5ef2ac708a6e70ec253d78955d04e20c3c9784";

async fn manifest_of(store: &Store, n: &Namespace, k: &str) -> Result<ManifestId> {
    let record = store.get_ref(n, &key(k)).await?;
    record
        .map(|r| r.manifest)
        .ok_or_else(|| Error::NotFound(format!("ref {k}")))
}

/// Waits until the indexer has finished the blob and returns its state.
async fn settled(store: &Store, n: &Namespace, id: ManifestId) -> Result<LookupState> {
    for _ in 0..1500 {
        match store.lookup_state(n.tenant(), id).await? {
            Some(LookupState::Pending) => tokio::time::sleep(Duration::from_millis(20)).await,
            Some(s) => return Ok(s),
            None => return Err(Error::NotFound("no lookup state".into())),
        }
    }
    Err(Error::Unavailable(
        "the indexer did not finish in 30 s".into(),
    ))
}

fn at(n: &Namespace, id: ManifestId) -> LookupSource {
    LookupSource::Manifest(n.tenant().id(), id)
}

/// The answer of a lookup that found its blob.
fn answer<T>(found: Option<Found<T>>) -> Result<T> {
    found
        .map(|f| f.answer)
        .ok_or_else(|| Error::NotFound("the lookup found no blob".into()))
}

async fn gc(store: &Store) -> Result<()> {
    let (tx, _rx) = watch::channel(Progress::default());
    let opts = GcOptions {
        tenant: None,
        grace: Duration::ZERO,
        dry_run: false,
        compact_below: 0.5,
    };
    store
        .gc(opts, CancellationToken::new(), tx)
        .await
        .map(|_| ())
}

#[tokio::test]
async fn lookups_return_the_original_document_bytes_of_a_normalized_blob() -> Result<()> {
    let dir = tmp()?;
    let store = Store::open(config(dir.path())).await?;
    let n = ns("acme/team/proj");
    let blob = index(SHA, &[400, 30, 700, 5, 90], 50);
    push_blob(&store, &n, "commit/1", &blob, CutMode::Normalized).await?;
    let id = manifest_of(&store, &n, "commit/1").await?;
    let expected = build_in_runs(&[&blob], 0).map_err(|e| Error::Format(e.0))?;
    assert_eq!(
        settled(&store, &n, id).await?,
        LookupState::Ready {
            documents: 5,
            symbols: expected.symbols.len() as u32,
        }
    );
    for (path, want) in &expected.documents {
        let (entry, bytes) = answer(store.lookup_document(&at(&n, id), path).await?)?
            .ok_or_else(|| Error::NotFound(path.clone()))?;
        assert_eq!(&entry, want);
        // The stored chunks hold placeholders; the answer holds the version again.
        let at = want.offset as usize;
        assert_eq!(&bytes[..], &blob[at..at + want.len as usize], "{path}");
    }
    assert!(answer(store.lookup_document(&at(&n, id), "src/none.py").await?)?.is_none());

    let s = symbol(1, SHA, 7);
    let (entry, referencing) = answer(store.lookup_symbol(&at(&n, id), &s, 0, 10).await?)?
        .ok_or_else(|| Error::NotFound(s.clone()))?;
    let wanted = expected.symbols.iter().find(|(name, _)| *name == s);
    assert_eq!(Some(&entry), wanted.map(|(_, e)| e));
    assert_eq!(referencing, entry.references.len());
    assert!(entry.definitions.iter().any(|(p, _)| p == "src/f0.py"));
    assert!(answer(store.lookup_symbol(&at(&n, id), "local 4", 0, 10).await?)?.is_none());
    store.shutdown().await
}

#[tokio::test]
async fn listings_page_through_every_name_under_a_prefix_once() -> Result<()> {
    let dir = tmp()?;
    let store = Store::open(config(dir.path())).await?;
    let n = ns("acme/team/proj");
    let blob = index(SHA, &[10; 12], 0);
    push_blob(&store, &n, "commit/1", &blob, CutMode::Documents).await?;
    let id = manifest_of(&store, &n, "commit/1").await?;
    settled(&store, &n, id).await?;
    let (mut seen, mut token) = (Vec::new(), String::new());
    loop {
        let (page, next) = answer(
            store
                .lookup_documents(&at(&n, id), "src/f1", &token, 2)
                .await?,
        )?;
        assert!(page.len() <= 2);
        seen.extend(page.into_iter().map(|(p, _)| p));
        if next.is_empty() {
            break;
        }
        token = next;
    }
    assert_eq!(seen, ["src/f1.py", "src/f10.py", "src/f11.py"]);
    let (all, next) = answer(store.lookup_documents(&at(&n, id), "", "", 1000).await?)?;
    assert_eq!((all.len(), next.as_str()), (12, ""));
    let (symbols, _) = answer(
        store
            .lookup_symbols(&at(&n, id), "scip-python ", "", 1000)
            .await?,
    )?;
    assert!(!symbols.is_empty());
    assert!(symbols.windows(2).all(|w| w[0] < w[1]));
    assert!(symbols.iter().all(|s| s.starts_with("scip-python ")));
    store.shutdown().await
}

#[tokio::test]
async fn a_blob_that_is_not_scip_reads_back_and_refuses_lookups() -> Result<()> {
    let dir = tmp()?;
    let store = Store::open(config(dir.path())).await?;
    let n = ns("acme/team/proj");
    let blob = data(300_000, 9, false);
    push_blob(&store, &n, "commit/1", &blob, CutMode::Documents).await?;
    let id = manifest_of(&store, &n, "commit/1").await?;
    assert!(matches!(
        settled(&store, &n, id).await?,
        LookupState::NotScip(_)
    ));
    match store.lookup_document(&at(&n, id), "a.py").await {
        Err(Error::NoLookups(why)) => assert!(why.contains("not a SCIP index"), "{why}"),
        other => panic!("expected NoLookups, got {other:?}"),
    }
    let back = super::tests::read_all(&store, &n, &key("commit/1")).await?;
    assert_eq!(back, blob);
    store.shutdown().await
}

#[tokio::test]
async fn tables_survive_a_restart_and_leave_with_their_blob() -> Result<()> {
    let dir = tmp()?;
    let c = config(dir.path());
    let n = ns("acme/team/proj");
    let (one, two) = (index(SHA, &[40, 50], 5), index(SHA, &[41, 50, 3], 5));
    {
        let store = Store::open(c.clone()).await?;
        push_blob(&store, &n, "commit/1", &one, CutMode::Documents).await?;
        push_blob(&store, &n, "commit/2", &two, CutMode::Documents).await?;
        for k in ["commit/1", "commit/2"] {
            let id = manifest_of(&store, &n, k).await?;
            settled(&store, &n, id).await?;
        }
        store.shutdown().await?;
    }
    let store = Store::open(c).await?;
    let (one_id, two_id) = (
        manifest_of(&store, &n, "commit/1").await?,
        manifest_of(&store, &n, "commit/2").await?,
    );
    let (_, docs) = answer(store.lookup_document(&at(&n, one_id), "src/f1.py").await?)?
        .ok_or_else(|| Error::NotFound("src/f1.py".into()))?;
    assert!(!docs.is_empty());
    let rows = |store: &Store| {
        let e = store.engine();
        async move { e?.meta.read(|t, txn| t.lookups.len(txn)).await }
    };
    let before = rows(&store).await?;
    store.delete_ref(&n, &key("commit/1")).await?;
    gc(&store).await?;
    assert_eq!(store.lookup_state(n.tenant(), one_id).await?, None);
    let after = rows(&store).await?;
    assert!(after < before && after > 0, "{before} rows, then {after}");
    let (all, _) = answer(store.lookup_documents(&at(&n, two_id), "", "", 10).await?)?;
    assert_eq!(all.len(), 3);
    store.shutdown().await
}

#[tokio::test]
async fn a_ref_source_resolves_its_key_or_the_newest_fallback_in_the_lookup() -> Result<()> {
    let dir = tmp()?;
    let store = Store::open(config(dir.path())).await?;
    let n = ns("acme/team/proj");
    push_blob(
        &store,
        &n,
        "branch/main",
        &index(SHA, &[20, 30], 0),
        CutMode::Documents,
    )
    .await?;
    let id = manifest_of(&store, &n, "branch/main").await?;
    settled(&store, &n, id).await?;
    let source = |k: &str, fallbacks: &[&str]| LookupSource::Ref {
        ns: n.clone(),
        key: key(k),
        fallbacks: fallbacks
            .iter()
            .map(|p| p.parse())
            .collect::<Result<_>>()
            .unwrap_or_default(),
    };
    let found = store
        .lookup_documents(&source("commit/absent", &["tag/", "branch/"]), "", "", 10)
        .await?
        .ok_or_else(|| Error::NotFound("no fallback resolved".into()))?;
    let (resolved, _) = found
        .resolved
        .ok_or_else(|| Error::NotFound("no ref".into()))?;
    assert_eq!(resolved.as_str(), "branch/main");
    assert_eq!(found.manifest, id);
    assert_eq!(found.answer.0.len(), 2);
    assert!(
        store
            .lookup_symbol(&source("commit/absent", &["tag/"]), "x", 0, 1)
            .await?
            .is_none()
    );
    store.shutdown().await
}

/// How many documents' shared rows the store holds (each has one completion row).
async fn shared_documents(store: &Store) -> Result<usize> {
    let e = store.engine()?;
    e.meta
        .read(|t, txn| {
            let mut n = 0;
            for item in t.lookups.raw.iter(txn)? {
                let (k, _) = item?;
                n += usize::from(k.get(40) == Some(&b'H'));
            }
            Ok(n)
        })
        .await
}

/// Every symbol of `expected`, looked up whole, is the entry the test's own assembly gives.
async fn symbols_agree(
    store: &Store,
    source: &LookupSource,
    expected: &[(String, crate::scip::tables::SymbolEntry)],
) -> Result<()> {
    for (name, want) in expected {
        let (got, total) = answer(store.lookup_symbol(source, name, 0, usize::MAX).await?)?
            .ok_or_else(|| Error::NotFound(name.clone()))?;
        assert_eq!(&got, want, "{name}");
        assert_eq!(total, want.references.len(), "{name}");
    }
    Ok(())
}

#[tokio::test]
async fn unchanged_documents_share_their_rows_and_gc_keeps_those_a_live_blob_holds() -> Result<()> {
    let dir = tmp()?;
    let store = Store::open(config(dir.path())).await?;
    let n = ns("acme/team/proj");
    // Commit 2 changes the third document only: it names one more symbol.
    let (one, two) = (
        index(SHA, &[400, 500, 600], 5),
        index(SHA, &[400, 500, 601], 5),
    );
    push_blob(&store, &n, "commit/1", &one, CutMode::Documents).await?;
    let one_id = manifest_of(&store, &n, "commit/1").await?;
    settled(&store, &n, one_id).await?;
    assert_eq!(shared_documents(&store).await?, 3);
    let pages = store.lookup_table_sizes().await?.pages;
    assert!(pages >= 4, "{pages} symbol pages");
    push_blob(&store, &n, "commit/2", &two, CutMode::Documents).await?;
    let two_id = manifest_of(&store, &n, "commit/2").await?;
    settled(&store, &n, two_id).await?;
    assert_eq!(
        shared_documents(&store).await?,
        4,
        "the two unchanged documents are stored once"
    );
    let more = store.lookup_table_sizes().await?.pages - pages;
    assert!(
        (1..=2).contains(&more),
        "only the page of the new symbol changed, yet {more} of {pages} pages are new"
    );
    let expected = build_in_runs(&[&two], 0).map_err(|e| Error::Format(e.0))?;
    symbols_agree(&store, &at(&n, two_id), &expected.symbols).await?;

    store.delete_ref(&n, &key("commit/1")).await?;
    gc(&store).await?;
    assert_eq!(
        shared_documents(&store).await?,
        3,
        "only the document no live blob holds went"
    );
    symbols_agree(&store, &at(&n, two_id), &expected.symbols).await?;
    let (docs, _) = answer(store.lookup_documents(&at(&n, two_id), "", "", 10).await?)?;
    assert_eq!(docs, expected.documents);
    store.shutdown().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_build_written_in_many_runs_answers_like_one_written_at_once() -> Result<()> {
    // About 11 MB: three pieces of the build, and with a run bound of one byte, three runs.
    let blob = index(SHA, &[900; 130], 0);
    let expected = build_in_runs(&[&blob], 0).map_err(|e| Error::Format(e.0))?;
    let n = ns("acme/team/proj");
    let mut answers = Vec::new();
    for run_bytes in [1, 32 << 20] {
        let dir = tmp()?;
        let mut c = config(dir.path());
        c.lookup_run_bytes = run_bytes;
        let store = Store::open(c).await?;
        push_blob(&store, &n, "commit/1", &blob, CutMode::Documents).await?;
        let id = manifest_of(&store, &n, "commit/1").await?;
        assert_eq!(
            settled(&store, &n, id).await?,
            LookupState::Ready {
                documents: 130,
                symbols: expected.symbols.len() as u32,
            }
        );
        let runs = store
            .engine()?
            .indexer
            .runs_written
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(runs > 1, run_bytes == 1, "{runs} runs written");
        let leftover = {
            let e = store.engine()?;
            e.meta
                .read(|t, txn| {
                    let mut n = 0usize;
                    for item in t.lookups.raw.iter(txn)? {
                        let (k, _) = item?;
                        n += usize::from(k.get(40) == Some(&b's'));
                    }
                    Ok(n)
                })
                .await?
        };
        assert_eq!(leftover, 0, "runs are dropped once paged");
        let sample: Vec<_> = expected.symbols.iter().step_by(97).cloned().collect();
        symbols_agree(&store, &at(&n, id), &sample).await?;
        let (mut listed, mut token) = (Vec::new(), String::new());
        loop {
            let (page, next) = answer(store.lookup_symbols(&at(&n, id), "", &token, 333).await?)?;
            listed.extend(page);
            if next.is_empty() {
                break;
            }
            token = next;
        }
        answers.push(listed);
        store.shutdown().await?;
    }
    let names: Vec<String> = expected.symbols.iter().map(|(s, _)| s.clone()).collect();
    assert_eq!(answers[0], names, "each symbol listed once, in order");
    assert_eq!(answers[1], names);
    Ok(())
}

#[tokio::test]
async fn names_too_long_for_a_key_are_found_and_only_long_paths_are_left_out_of_listings()
-> Result<()> {
    use crate::scip::synthetic::{field, varint_field};
    let dir = tmp()?;
    let store = Store::open(config(dir.path())).await?;
    let n = ns("acme/team/proj");
    let path = format!("src/{}.py", "deep/".repeat(150));
    let long = format!("scip-python python demo 1.0 {}.", "Nested#".repeat(100));
    let mut occ = field(1, &[1, 2, 3]);
    occ.extend(field(2, long.as_bytes()));
    occ.extend(varint_field(3, 1));
    let mut doc = field(1, path.as_bytes());
    doc.extend(field(2, &occ));
    let mut blob = field(2, &doc);
    blob.extend(index(SHA, &[3], 0));
    push_blob(&store, &n, "commit/1", &blob, CutMode::Documents).await?;
    let id = manifest_of(&store, &n, "commit/1").await?;
    settled(&store, &n, id).await?;

    let (entry, bytes) = answer(store.lookup_document(&at(&n, id), &path).await?)?
        .ok_or_else(|| Error::NotFound(path.clone()))?;
    assert_eq!(
        &bytes[..],
        &blob[entry.offset as usize..][..entry.len as usize]
    );
    let (symbol, _) = answer(store.lookup_symbol(&at(&n, id), &long, 0, 10).await?)?
        .ok_or_else(|| Error::NotFound(long.clone()))?;
    assert_eq!(symbol.definitions, vec![(path.clone(), vec![1, 2, 3])]);
    let (docs, _) = answer(store.lookup_documents(&at(&n, id), "", "", 10).await?)?;
    assert_eq!(
        docs.iter().map(|(p, _)| p.as_str()).collect::<Vec<_>>(),
        ["src/f0.py"]
    );
    let (symbols, _) = answer(store.lookup_symbols(&at(&n, id), "", "", 1000).await?)?;
    assert!(symbols.contains(&long), "symbols of any length are listed");
    store.shutdown().await
}
