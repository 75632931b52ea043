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
use crate::scip::tables::TableBuilder;
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
    let mut builder = TableBuilder::new();
    builder.feed(&blob);
    let expected = builder.finish().map_err(|e| Error::Format(e.0))?;
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
