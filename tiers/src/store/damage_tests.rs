//! Damaged metadata records (one flipped byte in each kind of sealed record, records that are
//! gone): found when read, answered with `MetadataLoss` naming what is damaged, repaired where
//! another copy exists; and the index walk that finds them at start.

use std::time::Duration;

use super::tests::{config, data, key, ns, read_all, tmp};
use crate::error::{Error, Result};
use crate::hot;
use crate::meta::{ChunkKey, Meta, Tables, manifest_key};
use crate::names::Namespace;
use crate::refs::{RefOptions, ref_table_key};
use crate::sealed::{SEAL_LEN, Sealed};
use crate::store::{Store, StoreConfig};

/// Chooses a sealed table.
type Pick = fn(&Tables) -> Sealed;

/// Flips one byte of the stored (sealed) value under `k` in the table `pick` chooses.
async fn flip_record(store: &Store, pick: Pick, k: Vec<u8>, at: usize) -> Result<()> {
    store
        .engine()?
        .meta
        .write(move |t, txn| {
            let table = pick(t).raw;
            let mut v = table
                .get(txn, &k)?
                .ok_or_else(|| Error::NotFound("record to damage".into()))?
                .to_vec();
            let at = at.min(v.len() - 1);
            v[at] ^= 0x20;
            table.put(txn, &k, &v)?;
            Ok(())
        })
        .await
}

/// Whether the stored value under `k` passes its checksum.
async fn intact(store: &Store, pick: Pick, k: Vec<u8>) -> Result<bool> {
    store
        .engine()?
        .meta
        .read(move |t, txn| match pick(t).get(txn, &k) {
            Ok(found) => Ok(found.is_some()),
            Err(Error::MetadataLoss(_)) => Ok(false),
            Err(e) => Err(e),
        })
        .await
}

fn metadata_loss_naming(r: &Result<impl std::fmt::Debug>, what: &str) -> bool {
    matches!(r, Err(Error::MetadataLoss(m)) if m.contains(what))
}

async fn stored_blob(cfg: StoreConfig, n: &Namespace) -> Result<(Store, Vec<u8>)> {
    let store = Store::open(cfg).await?;
    let blob = data(150_000, 4, true);
    store
        .write_blob(n, &key("k"), &blob[..], RefOptions::default())
        .await?;
    Ok((store, blob))
}

#[tokio::test]
async fn a_flipped_ref_record_is_metadata_loss_naming_the_ref_never_not_found() -> Result<()> {
    let dir = tmp()?;
    let n = ns("acme/web/app");
    let (store, _) = stored_blob(config(dir.path()), &n).await?;
    let rkey = ref_table_key(&n, &key("k"));
    flip_record(&store, |t| t.refs, rkey.clone(), 40).await?;
    let got = store.get_ref(&n, &key("k")).await;
    assert!(metadata_loss_naming(&got, "ref acme/web/app k"), "{got:?}");
    let listed = store.list_refs(&n, &"".parse()?, 10).await;
    assert!(
        metadata_loss_naming(&listed, "ref acme/web/app k"),
        "{listed:?}"
    );
    // A damaged ref can still be deleted (and then is absent).
    assert!(store.delete_ref(&n, &key("k")).await?);
    assert!(store.get_ref(&n, &key("k")).await?.is_none());
    store.shutdown().await
}

#[tokio::test]
async fn a_flipped_manifest_is_served_from_its_cold_copy_and_repaired_else_metadata_loss()
-> Result<()> {
    let dir = tmp()?;
    let n = ns("acme/web/app");
    let (store, blob) = stored_blob(config(dir.path()), &n).await?;
    store.flush_cold().await?;
    let record = store
        .get_ref(&n, &key("k"))
        .await?
        .ok_or_else(|| Error::NotFound("ref".into()))?;
    let mkey = manifest_key(n.tenant().id(), &record.manifest).to_vec();
    flip_record(&store, |t| t.manifests, mkey.clone(), 70).await?;
    assert_eq!(read_all(&store, &n, &key("k")).await?, blob);
    assert!(
        intact(&store, |t| t.manifests, mkey.clone()).await?,
        "the local manifest was repaired from the cold copy"
    );

    flip_record(&store, |t| t.manifests, mkey, 70).await?;
    let cold = dir
        .path()
        .join("cold/manifests")
        .join(hex::encode(n.tenant().id().0));
    std::fs::remove_dir_all(&cold).map_err(|e| Error::io("removing cold manifests", e))?;
    let got = store.manifest(n.tenant(), record.manifest).await;
    assert!(
        metadata_loss_naming(&got, &format!("manifest {}", record.manifest.to_hex())),
        "{got:?}"
    );
    store.shutdown().await
}

#[tokio::test]
async fn a_ref_whose_manifest_no_tier_holds_is_metadata_loss_not_a_cache_miss() -> Result<()> {
    let dir = tmp()?;
    let n = ns("acme/web/app");
    let (store, _) = stored_blob(config(dir.path()), &n).await?;
    store.flush_cold().await?;
    let record = store
        .get_ref(&n, &key("k"))
        .await?
        .ok_or_else(|| Error::NotFound("ref".into()))?;
    let mkey = manifest_key(n.tenant().id(), &record.manifest);
    store
        .engine()?
        .meta
        .write(move |t, txn| t.manifests.delete(txn, &mkey).map(drop))
        .await?;
    let cold = dir
        .path()
        .join("cold/manifests")
        .join(hex::encode(n.tenant().id().0));
    std::fs::remove_dir_all(&cold).map_err(|e| Error::io("removing cold manifests", e))?;
    let got = store.manifest(n.tenant(), record.manifest).await;
    assert!(metadata_loss_naming(&got, "is stored neither"), "{got:?}");
    store.shutdown().await
}

#[tokio::test]
async fn a_chunk_the_manifest_lists_that_no_tier_holds_is_metadata_loss() -> Result<()> {
    let dir = tmp()?;
    let n = ns("acme/web/app");
    let mut cfg = config(dir.path());
    // Nothing reaches the cold tier, so deleting the hot copy loses the chunk.
    cfg.cold_flush_after = Duration::from_secs(3600);
    cfg.cold_pack_target = 1 << 30;
    let (store, _) = stored_blob(cfg, &n).await?;
    let record = store
        .get_ref(&n, &key("k"))
        .await?
        .ok_or_else(|| Error::NotFound("ref".into()))?;
    let manifest = store.manifest(n.tenant(), record.manifest).await?;
    let id = manifest.entries()[1].id;
    let ck = ChunkKey::new(n.tenant().id(), &id);
    store
        .engine()?
        .meta
        .write(move |t, txn| hot::delete_in_txn(t, txn, ck).map(drop))
        .await?;
    let mut out = Vec::new();
    let got = store.read_blob_to(n.tenant(), manifest, &mut out).await;
    assert!(metadata_loss_naming(&got, &id.to_hex()), "{got:?}");
    let single = store.get_chunk(n.tenant(), id).await;
    assert!(matches!(single, Err(Error::NotFound(_))), "{single:?}");
    store.shutdown().await
}

#[tokio::test]
async fn a_flipped_chunk_entry_counts_as_missing_and_the_next_upload_rewrites_it() -> Result<()> {
    let dir = tmp()?;
    let n = ns("acme/web/app");
    let (store, blob) = stored_blob(config(dir.path()), &n).await?;
    let record = store
        .get_ref(&n, &key("k"))
        .await?
        .ok_or_else(|| Error::NotFound("ref".into()))?;
    let manifest = store.manifest(n.tenant(), record.manifest).await?;
    let id = manifest.entries()[0].id;
    let ck = ChunkKey::new(n.tenant().id(), &id);
    flip_record(&store, |t| t.chunks, ck.as_bytes().to_vec(), 2).await?;
    assert_eq!(store.find_missing(n.tenant(), vec![id]).await?, vec![id]);
    // The blob still reads: the entry is not needed to serve it.
    assert_eq!(read_all(&store, &n, &key("k")).await?, blob);
    let frame = store.get_chunk(n.tenant(), id).await?;
    store.put_chunks(n.tenant(), vec![(id, frame)]).await?;
    assert!(intact(&store, |t| t.chunks, ck.as_bytes().to_vec()).await?);
    assert!(store.find_missing(n.tenant(), vec![id]).await?.is_empty());
    store.shutdown().await
}

#[tokio::test]
async fn flipped_locations_are_bad_copies_served_from_another_tier_else_metadata_loss() -> Result<()>
{
    let dir = tmp()?;
    let n = ns("acme/web/app");
    let (store, blob) = stored_blob(config(dir.path()), &n).await?;
    store.flush_cold().await?;
    let record = store
        .get_ref(&n, &key("k"))
        .await?
        .ok_or_else(|| Error::NotFound("ref".into()))?;
    let manifest = store.manifest(n.tenant(), record.manifest).await?;
    let id = manifest.entries()[0].id;
    let ck = ChunkKey::new(n.tenant().id(), &id);
    store.demote(n.tenant(), vec![id], true).await?;

    // Warm location damaged: served from cold, and the warm copy is written again.
    flip_record(&store, |t| t.warm, ck.as_bytes().to_vec(), 5).await?;
    assert_eq!(read_all(&store, &n, &key("k")).await?, blob);
    assert!(
        store.scrub_chunk(n.tenant(), id).await?.is_empty(),
        "every copy is good again"
    );
    assert!(intact(&store, |t| t.warm, ck.as_bytes().to_vec()).await?);

    // Cold location damaged and the only copy: metadata loss naming the chunk.
    store.evict_to_cold(n.tenant(), vec![id]).await?;
    flip_record(&store, |t| t.cold, ck.as_bytes().to_vec(), 10).await?;
    let got = read_all(&store, &n, &key("k")).await;
    assert!(
        metadata_loss_naming(&got, &format!("cold location of chunk {}", id.to_hex())),
        "{got:?}"
    );
    store.shutdown().await
}

/// Rewrites every sealed record unsealed and records `format`: a data dir as an older build
/// left it.
fn unseal_everything(meta_dir: &std::path::Path, format: u64) -> Result<()> {
    let meta = Meta::open(meta_dir, 2 << 30)?;
    meta.write_blocking(move |t, txn| {
        for table in [t.chunks, t.warm, t.cold, t.manifests, t.refs] {
            let all: Vec<(Vec<u8>, Vec<u8>)> = table
                .raw
                .iter(txn)?
                .map(|item| item.map(|(k, v)| (k.to_vec(), v[..v.len() - SEAL_LEN].to_vec())))
                .collect::<heed::Result<_>>()?;
            for (k, v) in all {
                table.raw.put(txn, &k, &v)?;
            }
        }
        crate::meta::state_put(t, txn, crate::version::FORMAT_KEY, format)
    })?;
    meta.close();
    drop(meta);
    Ok(())
}

#[tokio::test]
async fn a_format_2_data_dir_is_sealed_when_it_opens_and_reads_back() -> Result<()> {
    let dir = tmp()?;
    let n = ns("acme/web/app");
    let (store, blob) = stored_blob(config(dir.path()), &n).await?;
    store.flush_cold().await?;
    store.shutdown().await?;
    let meta_dir = dir.path().join("meta");
    crate::blocking::run(move || unseal_everything(&meta_dir, 2)).await?;
    let walked = crate::index_check::walk(dir.path())?;
    assert!(
        !walked.sealed,
        "a format-2 index is walked without checksums"
    );

    let store = Store::open(config(dir.path())).await?;
    assert_eq!(read_all(&store, &n, &key("k")).await?, blob);
    let rkey = ref_table_key(&n, &key("k"));
    assert!(intact(&store, |t| t.refs, rkey).await?);
    store.shutdown().await?;
    let walked = crate::index_check::walk(dir.path())?;
    assert!(walked.sealed, "{walked:?}");
    assert!(walked.records() > 10, "{walked:?}");
    Ok(())
}

#[tokio::test]
async fn the_walk_at_start_finds_a_flipped_record_of_every_sealed_kind() -> Result<()> {
    let dir = tmp()?;
    let n = ns("acme/web/app");
    let (store, _) = stored_blob(config(dir.path()), &n).await?;
    store.flush_cold().await?;
    let record = store
        .get_ref(&n, &key("k"))
        .await?
        .ok_or_else(|| Error::NotFound("ref".into()))?;
    let manifest = store.manifest(n.tenant(), record.manifest).await?;
    let id = manifest.entries()[0].id;
    store.demote(n.tenant(), vec![id], false).await?;
    store.shutdown().await?;
    let walked = crate::index_check::walk(dir.path())?;
    assert!(walked.sealed && walked.records() > 10, "{walked:?}");

    let ck = ChunkKey::new(n.tenant().id(), &id).as_bytes().to_vec();
    let cases: [(&str, Pick, Vec<u8>); 5] = [
        ("refs", |t| t.refs, ref_table_key(&n, &key("k"))),
        (
            "manifests",
            |t| t.manifests,
            manifest_key(n.tenant().id(), &record.manifest).to_vec(),
        ),
        ("chunks", |t| t.chunks, ck.clone()),
        ("warm", |t| t.warm, ck.clone()),
        ("cold", |t| t.cold, ck),
    ];
    for (name, pick, k) in cases {
        let store = Store::open(config(dir.path())).await?;
        flip_record(&store, pick, k.clone(), 3).await?;
        store.shutdown().await?;
        match crate::index_check::walk(dir.path()) {
            Err(e @ Error::IndexDamaged { .. }) => {
                let m = e.to_string();
                assert!(
                    m.contains(&format!("table {name}")) && m.contains("scipcached rebuild"),
                    "{name}: {m}"
                );
            }
            other => panic!("{name}: the walk passed a damaged record: {other:?}"),
        }
        // Undo the damage for the next kind.
        let store = Store::open(config(dir.path())).await?;
        flip_record(&store, pick, k, 3).await?;
        store.shutdown().await?;
    }
    Ok(())
}
