//! Warm tier tests: conformance, crash and fault recovery, pack formats.

use super::*;
use crate::ids::ChunkId;

fn open(dir: &Path) -> Result<(Meta, WarmTier)> {
    let meta = Meta::open(&dir.join("meta"), 1 << 30)?;
    let warm = WarmTier::open(
        &dir.join("warm"),
        meta.clone(),
        Compression::Zstd(3),
        1 << 20,
    )?;
    Ok((meta, warm))
}

fn item(n: u32) -> (ChunkKey, Frame, Vec<u8>) {
    let raw = format!("warm chunk {n} ")
        .repeat(500 + n as usize)
        .into_bytes();
    let key = ChunkKey::new(TenantId([7; 8]), &ChunkId::of(&raw));
    (
        key,
        Frame::encode(&raw, Compression::Lz4).expect("encode"),
        raw,
    )
}

#[tokio::test]
async fn warm_tier_passes_the_conformance_suite() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let (_meta, warm) = open(dir.path())?;
    crate::tier::conformance::put_get_contains_delete_list(&warm).await
}

#[tokio::test]
async fn crash_before_commit_leaves_no_torn_chunk_and_acknowledged_chunks_survive() -> Result<()> {
    for fault in [Fault::AfterAppend, Fault::AfterSync] {
        let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
        let acknowledged: Vec<_> = (0..10).map(item).collect();
        let torn: Vec<_> = (10..20).map(item).collect();
        {
            let (meta, warm) = open(dir.path())?;
            warm.put(
                acknowledged
                    .iter()
                    .map(|(k, f, _)| (*k, f.clone()))
                    .collect(),
            )
            .await?;
            warm.inject_fault(Some(fault));
            let crashed = warm
                .put(torn.iter().map(|(k, f, _)| (*k, f.clone())).collect())
                .await;
            assert!(crashed.is_err(), "{fault:?}: the injected crash surfaces");
            crate::blocking::run(move || {
                meta.close();
                Ok(())
            })
            .await?;
        }
        let pack = pack_path(&dir.path().join("warm"), 1);
        let before = std::fs::metadata(&pack)
            .map_err(|e| Error::io("stat", e))?
            .len();
        let (_meta, warm) = open(dir.path())?;
        let after = std::fs::metadata(&pack)
            .map_err(|e| Error::io("stat", e))?
            .len();
        assert!(
            after < before,
            "{fault:?}: the torn tail is cut at open ({before} -> {after})"
        );
        for (key, _, raw) in &acknowledged {
            let frame = warm.get(*key).await?.expect("acknowledged chunk present");
            assert_eq!(
                &frame.decode_verified(&key.id(), MAX_CHUNK_LEN)?[..],
                &raw[..]
            );
        }
        for (key, _, _) in &torn {
            assert!(
                !warm.contains(*key).await?,
                "{fault:?}: no index entry for torn bytes"
            );
        }
        // And the pack keeps working after recovery.
        warm.put(torn.iter().map(|(k, f, _)| (*k, f.clone())).collect())
            .await?;
        for (key, _, raw) in &torn {
            let frame = warm.get(*key).await?.expect("re-put chunk present");
            assert_eq!(
                &frame.decode_verified(&key.id(), MAX_CHUNK_LEN)?[..],
                &raw[..]
            );
        }
    }
    Ok(())
}

#[tokio::test]
async fn packs_are_sealed_at_the_size_limit() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let (_meta, warm) = open(dir.path())?;
    for n in 0..400 {
        let mut x = (n as u64) * 0x9e37_79b9 + 1;
        let raw: Vec<u8> = (0..8192)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                (x >> 32) as u8
            })
            .collect();
        let key = ChunkKey::new(TenantId([1; 8]), &ChunkId::of(&raw));
        warm.put(vec![(key, Frame::encode(&raw, Compression::Raw)?)])
            .await?;
    }
    let packs = std::fs::read_dir(dir.path().join("warm"))
        .map_err(|e| Error::io("ls", e))?
        .count();
    assert!(
        packs >= 3,
        "400 × 8 KiB raw chunks over 1 MiB packs make several packs, got {packs}"
    );
    Ok(())
}

fn frames(items: &[(ChunkKey, Frame, Vec<u8>)]) -> Vec<(ChunkKey, Frame)> {
    items.iter().map(|(k, f, _)| (*k, f.clone())).collect()
}

async fn assert_reads_back(warm: &WarmTier, items: &[(ChunkKey, Frame, Vec<u8>)], what: &str) {
    for (key, _, raw) in items {
        let frame = warm
            .get(*key)
            .await
            .unwrap_or_else(|e| panic!("{what}: reading {key:?}: {e}"))
            .unwrap_or_else(|| panic!("{what}: {key:?} is indexed"));
        let out = frame
            .decode_verified(&key.id(), MAX_CHUNK_LEN)
            .unwrap_or_else(|e| panic!("{what}: {key:?} verifies: {e}"));
        assert_eq!(&out[..], &raw[..], "{what}: {key:?}");
    }
}

fn file_len(path: &Path) -> Result<u64> {
    Ok(std::fs::metadata(path)
        .map_err(|e| Error::io("stat", e))?
        .len())
}

fn durable_len(meta: &Meta, pack: u32) -> Result<u64> {
    meta.read_now(|t, txn| {
        t.warm_packs
            .get(txn, &pack.to_be_bytes())?
            .map(PackRow::decode)
            .transpose()
    })
    .map(|row| row.map_or(0, |r| r.durable_len))
}

async fn close(meta: Meta) -> Result<()> {
    crate::blocking::run(move || {
        meta.close();
        Ok(())
    })
    .await
}

#[tokio::test]
async fn failed_writes_and_syncs_do_not_shift_later_puts_in_the_same_process() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let batch = |b: u32| -> Vec<_> { (b * 10..b * 10 + 10).map(item).collect() };
    let (into_empty_pack, first, sync_failed, midway, later, after_reopen) =
        (batch(0), batch(1), batch(2), batch(3), batch(4), batch(5));
    let pack = pack_path(&dir.path().join("warm"), 1);
    {
        let (meta, warm) = open(dir.path())?;
        // A short write into the empty pack (its header is part of the lost bytes).
        warm.inject_fault(Some(Fault::WriteFailsMidway));
        let failed = warm.put(frames(&into_empty_pack)).await;
        assert!(matches!(failed, Err(Error::DiskFull { .. })), "{failed:?}");
        warm.inject_fault(None);
        warm.put(frames(&first)).await?;
        warm.inject_fault(Some(Fault::SyncFails));
        let failed = warm.put(frames(&sync_failed)).await;
        assert!(matches!(failed, Err(Error::Io { .. })), "{failed:?}");
        warm.inject_fault(Some(Fault::WriteFailsMidway));
        let failed = warm.put(frames(&midway)).await;
        assert!(matches!(failed, Err(Error::DiskFull { .. })), "{failed:?}");
        warm.inject_fault(None);
        for (key, _, _) in into_empty_pack.iter().chain(&sync_failed).chain(&midway) {
            assert!(!warm.contains(*key).await?, "a failed put indexes nothing");
        }
        warm.put(frames(&later)).await?;
        // The failed batches succeed when retried.
        for retried in [&into_empty_pack, &sync_failed, &midway] {
            assert_eq!(warm.put(frames(retried)).await?, 10);
        }
        for (items, what) in [
            (&first, "put before the failures"),
            (&later, "put after the failures"),
            (
                &into_empty_pack,
                "retried after a short write into an empty pack",
            ),
            (&sync_failed, "retried after a failed sync"),
            (&midway, "retried after a short write"),
        ] {
            assert_reads_back(&warm, items, what).await;
        }
        assert_eq!(
            file_len(&pack)?,
            durable_len(&meta, 1)?,
            "no stray bytes past the durable length"
        );
        close(meta).await?;
    }
    let before = file_len(&pack)?;
    let (meta, warm) = open(dir.path())?;
    assert_eq!(file_len(&pack)?, before, "nothing to cut at open");
    warm.put(frames(&after_reopen)).await?;
    for items in [
        &into_empty_pack,
        &first,
        &sync_failed,
        &midway,
        &later,
        &after_reopen,
    ] {
        assert_reads_back(&warm, items, "after reopen").await;
    }
    close(meta).await
}

#[tokio::test]
async fn new_packs_start_with_a_header_naming_their_format() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let (_meta, warm) = open(dir.path())?;
    warm.put(frames(&[item(1)])).await?;
    let bytes =
        std::fs::read(pack_path(&dir.path().join("warm"), 1)).map_err(|e| Error::io("read", e))?;
    assert_eq!(&bytes[..8], b"SCPWPACK");
    assert_eq!(le_u32(&bytes[8..12]), 2);
    assert_eq!(&bytes[12..16], &[0; 4]);
    assert_eq!(
        &bytes[16..24],
        &[7; 8],
        "the first record follows the header"
    );
    Ok(())
}

/// Writes `items` as records after `header` into pack `id`, indexes them (with `durable_len`
/// set to the end of the records) and returns the pack's path.
async fn write_pack_by_hand(
    dir: &Path,
    meta: &Meta,
    id: u32,
    header: &[u8],
    items: &[(ChunkKey, Frame, Vec<u8>)],
) -> Result<PathBuf> {
    let mut bytes = header.to_vec();
    let mut index = Vec::new();
    for (key, frame, _) in items {
        let len = frame.stored_len() as u32;
        bytes.extend_from_slice(key.as_bytes());
        bytes.extend_from_slice(&len.to_le_bytes());
        let offset = bytes.len() as u64;
        bytes.extend_from_slice(frame.as_bytes());
        index.push((
            *key,
            Location {
                pack: id,
                offset,
                len,
            },
        ));
    }
    std::fs::create_dir_all(dir.join("warm")).map_err(|e| Error::io("mkdir", e))?;
    let path = pack_path(&dir.join("warm"), id);
    std::fs::write(&path, &bytes).map_err(|e| Error::io("write", e))?;
    let row = PackRow {
        durable_len: bytes.len() as u64,
        live_bytes: 0,
        dead_bytes: 0,
    };
    let meta = meta.clone();
    crate::blocking::run(move || {
        meta.write_blocking(move |t, txn| {
            for (key, loc) in index {
                t.warm.put(txn, key.as_bytes(), &loc.encode())?;
            }
            t.warm_packs.put(txn, &id.to_be_bytes(), &row.encode())?;
            Ok(())
        })
    })
    .await?;
    Ok(path)
}

#[tokio::test]
async fn packs_in_the_headerless_first_layout_still_read_append_and_recover() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let old: Vec<_> = (0..5).map(item).collect();
    let new: Vec<_> = (5..10).map(item).collect();
    let path = {
        let meta = Meta::open(&dir.path().join("meta"), 1 << 30)?;
        let path = write_pack_by_hand(dir.path(), &meta, 1, &[], &old).await?;
        close(meta).await?;
        path
    };
    let durable = file_len(&path)?;
    // A torn tail after the last indexed record.
    let mut torn = std::fs::read(&path).map_err(|e| Error::io("read", e))?;
    torn.extend_from_slice(&[0xAB; 100]);
    std::fs::write(&path, &torn).map_err(|e| Error::io("write", e))?;
    {
        let (meta, warm) = open(dir.path())?;
        assert_eq!(file_len(&path)?, durable, "the torn tail is cut at open");
        assert_reads_back(&warm, &old, "format 1 pack").await;
        warm.put(frames(&new)).await?;
        assert_reads_back(&warm, &new, "appended to a format 1 pack").await;
        close(meta).await?;
    }
    let bytes = std::fs::read(&path).map_err(|e| Error::io("read", e))?;
    assert_eq!(
        &bytes[..8],
        &[7; 8],
        "appending kept the pack headerless (format 1)"
    );
    let (meta, warm) = open(dir.path())?;
    assert_reads_back(&warm, &old, "format 1 pack after reopen").await;
    assert_reads_back(&warm, &new, "appended records after reopen").await;
    close(meta).await
}

#[tokio::test]
async fn a_pack_of_a_newer_format_is_refused_with_a_clear_message() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let mut header = pack_header();
    header[8..12].copy_from_slice(&3u32.to_le_bytes());
    let items: Vec<_> = (0..3).map(item).collect();
    let meta = Meta::open(&dir.path().join("meta"), 1 << 30)?;
    let path = write_pack_by_hand(dir.path(), &meta, 1, &header, &items).await?;
    let check = |e: Error| {
        let text = e.to_string();
        assert!(
            matches!(
                e,
                Error::NewerFormat {
                    found: 3,
                    supported: 2,
                    ..
                }
            ),
            "{text}"
        );
        for part in [
            path.display().to_string().as_str(),
            "newer scipcached",
            "format 3",
            "up to format 2",
            "upgrade scipcached",
        ] {
            assert!(text.contains(part), "{text:?} names {part:?}");
        }
    };
    // As the pack puts would append to: open fails.
    let refused = WarmTier::open(
        &dir.path().join("warm"),
        meta.clone(),
        Compression::Zstd(3),
        1 << 30,
    );
    check(refused.expect_err("appending to a newer pack refused"));
    // As a full pack (puts go to the next one): reads of it fail, the rest works.
    let warm = WarmTier::open(
        &dir.path().join("warm"),
        meta.clone(),
        Compression::Zstd(3),
        64,
    )?;
    check(warm.get(items[0].0).await.expect_err("newer pack refused"));
    warm.put(frames(&[item(9)])).await?;
    assert_reads_back(&warm, &[item(9)], "a current pack beside it").await;
    close(meta).await
}
