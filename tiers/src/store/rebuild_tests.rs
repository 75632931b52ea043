//! Cold ref objects and rebuilds: a lost index is refused, a rebuild restores what the cold
//! tier holds, and deleted or expired refs stay gone whatever order their events took.

use std::time::Duration;

use super::tests::{config, data, key, ns, read_all, tmp};
use crate::clock::Clock;
use crate::cold::ColdTier;
use crate::cold::refs::{RefChange, RefEvent};
use crate::error::{Error, Result};
use crate::ids::{BlobId, ManifestId};
use crate::meta::Meta;
use crate::refs::{RefOptions, RefRecord};
use crate::store::Store;

fn remove_index(dir: &std::path::Path) -> Result<()> {
    std::fs::remove_dir_all(dir.join("meta")).map_err(|e| Error::io("removing meta/", e))
}

#[tokio::test]
async fn a_lost_index_is_refused_and_a_rebuild_restores_live_refs_only() -> Result<()> {
    let dir = tmp()?;
    let mut c = config(dir.path());
    c.clock = Clock::manual(1_700_000_000_000);
    let n = ns("acme/web/app");
    let (a, b, d) = (
        data(300_000, 1, true),
        data(200_000, 2, false),
        data(90_000, 4, true),
    );
    let store = Store::open(c.clone()).await?;
    store
        .write_blob(&n, &key("commit/a"), &a[..], RefOptions::default())
        .await?;
    store
        .write_blob(&n, &key("commit/b"), &b[..], RefOptions::default())
        .await?;
    let short = RefOptions {
        ttl: Some(Duration::from_secs(60)),
        ..RefOptions::default()
    };
    store
        .write_blob(&n, &key("commit/c"), &a[..50_000], short)
        .await?;
    store
        .write_blob(&n, &key("branch/main"), &b[..], RefOptions::default())
        .await?;
    // Both events of each of these refs are queued at once: the later one must win.
    assert!(store.delete_ref(&n, &key("commit/b")).await?);
    store
        .write_blob(&n, &key("branch/main"), &d[..], RefOptions::default())
        .await?;
    store.flush_cold().await?;
    store.shutdown().await?;

    c.clock.advance(Duration::from_secs(120));
    remove_index(dir.path())?;
    let refused = Store::open(c.clone()).await;
    assert!(
        matches!(&refused, Err(Error::IndexLost { .. })),
        "{refused:?}"
    );
    let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("scipcached rebuild"), "{message}");
    // The refusal stamps nothing: it still refuses.
    assert!(matches!(
        Store::open(c.clone()).await,
        Err(Error::IndexLost { .. })
    ));

    let report = Store::rebuild(c.clone()).await?;
    assert_eq!(
        (
            report.refs_restored,
            report.refs_deleted,
            report.refs_expired
        ),
        (2, 1, 1),
        "{report}"
    );
    assert!(
        report.refs_incomplete.is_empty() && report.damaged.is_empty(),
        "{report}"
    );
    assert!(report.packs > 0 && report.chunks > 0, "{report}");
    assert!(
        report
            .moved_aside
            .iter()
            .all(|p| p.to_string_lossy().contains(".broken-")),
        "{report}"
    );

    let store = Store::open(c.clone()).await?;
    assert_eq!(read_all(&store, &n, &key("commit/a")).await?, a);
    assert_eq!(read_all(&store, &n, &key("branch/main")).await?, d);
    assert!(store.get_ref(&n, &key("commit/b")).await?.is_none());
    assert!(store.get_ref(&n, &key("commit/c")).await?.is_none());
    // Versions go on from the largest the bucket holds: a deletion after the rebuild wins
    // over the set that the rebuild restored, and a set again over an older deletion.
    assert!(store.delete_ref(&n, &key("commit/a")).await?);
    store
        .write_blob(&n, &key("commit/b"), &b[..], RefOptions::default())
        .await?;
    store.flush_cold().await?;
    store.shutdown().await?;

    let report = Store::rebuild(c.clone()).await?;
    assert!(
        report
            .moved_aside
            .iter()
            .any(|p| p.to_string_lossy().contains("meta.broken-")),
        "an existing index is moved aside: {report}"
    );
    let store = Store::open(c).await?;
    assert!(store.get_ref(&n, &key("commit/a")).await?.is_none());
    assert_eq!(read_all(&store, &n, &key("commit/b")).await?, b);
    assert_eq!(read_all(&store, &n, &key("branch/main")).await?, d);
    store.shutdown().await
}

#[tokio::test]
async fn a_rebuild_is_refused_while_a_store_holds_the_data_dir() -> Result<()> {
    let dir = tmp()?;
    let store = Store::open(config(dir.path())).await?;
    let refused = Store::rebuild(config(dir.path())).await;
    assert!(matches!(refused, Err(Error::Locked { .. })), "{refused:?}");
    store.shutdown().await
}

fn event(version: u64, change: RefChange) -> RefEvent {
    RefEvent {
        ns: ns("acme/web/app"),
        key: key("commit/x"),
        version,
        at_ms: version,
        change,
    }
}

fn set(version: u64) -> RefChange {
    RefChange::Set(RefRecord {
        blob: BlobId::of(&version.to_le_bytes()),
        manifest: ManifestId::of(&version.to_le_bytes()),
        size: 1,
        chunks: 1,
        created_at_ms: version,
        expires_at_ms: None,
        labels: Vec::new(),
    })
}

#[tokio::test]
async fn ref_events_uploaded_in_any_order_leave_only_the_newest() -> Result<()> {
    let dir = tmp()?;
    let meta = Meta::open(&dir.path().join("meta"), 1 << 24)?;
    let url = format!("file://{}", dir.path().join("cold").display());
    let cold = ColdTier::open(&url, &[], 4, meta.clone())?;
    let tenant = ns("acme/web/app").tenant().id();
    let events = [
        event(1, set(1)),
        event(2, RefChange::Deleted),
        event(3, set(3)),
        event(4, RefChange::Deleted),
    ];
    // Deletion newest, then (another ref history) a set again after a deletion newest.
    for (order, newest) in [(&[3, 0, 2, 1][..], 3), (&[1, 2, 0][..], 2)] {
        let folder = dir.path().join("cold").join("refs");
        if folder.exists() {
            std::fs::remove_dir_all(&folder).map_err(|e| Error::io("clearing refs/", e))?;
        }
        for &i in order {
            cold.put_ref_event(tenant, &events[i].encode()).await?;
        }
        let (names, foreign) = cold.list_ref_objects().await?;
        assert_eq!(foreign, 0);
        assert_eq!(names.len(), 1, "older versions are pruned: {names:?}");
        assert_eq!(cold.read_ref_object(&names[0]).await?, events[newest]);
    }
    drop(cold);
    crate::blocking::run(move || {
        meta.close();
        Ok(())
    })
    .await
}

#[tokio::test]
async fn a_damaged_newest_ref_object_is_reported_and_its_ref_not_restored() -> Result<()> {
    let dir = tmp()?;
    let c = config(dir.path());
    let n = ns("acme/web/app");
    let store = Store::open(c.clone()).await?;
    for k in ["commit/keep", "commit/hurt"] {
        store
            .write_blob(
                &n,
                &key(k),
                &data(40_000, 9, true)[..],
                RefOptions::default(),
            )
            .await?;
    }
    store.flush_cold().await?;
    store.shutdown().await?;
    let hash = crate::cold::refs::ref_hash(&n, &key("commit/hurt"));
    let folder = dir
        .path()
        .join("cold/refs")
        .join(hex::encode(n.tenant().id().0))
        .join(hex::encode(hash));
    let object = std::fs::read_dir(&folder)
        .map_err(|e| Error::io("listing the ref folder", e))?
        .next()
        .ok_or_else(|| Error::NotFound("no ref object".into()))?
        .map_err(|e| Error::io("listing the ref folder", e))?
        .path();
    let mut bytes = std::fs::read(&object).map_err(|e| Error::io("reading", e))?;
    bytes[20] ^= 1;
    std::fs::write(&object, bytes).map_err(|e| Error::io("writing", e))?;
    remove_index(dir.path())?;

    let report = Store::rebuild(c.clone()).await?;
    assert_eq!(report.refs_restored, 1, "{report}");
    assert_eq!(report.damaged.len(), 1, "{report}");
    assert!(report.damaged[0].contains("checksum"), "{report}");
    let store = Store::open(c).await?;
    assert!(store.get_ref(&n, &key("commit/keep")).await?.is_some());
    assert!(store.get_ref(&n, &key("commit/hurt")).await?.is_none());
    store.shutdown().await
}
