//! Cold tier tests: conformance on a folder and in memory, manifests, pack formats.

use super::*;

#[tokio::test]
async fn cold_tier_on_a_local_folder_passes_the_conformance_suite() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let meta = Meta::open(&dir.path().join("meta"), 1 << 30)?;
    let url = format!("file://{}", dir.path().join("cold").display());
    let cold = ColdTier::open(&url, &[], 4, meta)?;
    crate::tier::conformance::put_get_contains_delete_list(&cold).await
}

#[tokio::test]
async fn cold_tier_in_memory_passes_the_conformance_suite() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let meta = Meta::open(&dir.path().join("meta"), 1 << 30)?;
    let cold = ColdTier::open("memory://", &[], 4, meta)?;
    crate::tier::conformance::put_get_contains_delete_list(&cold).await
}

#[tokio::test]
async fn manifests_round_trip_through_the_bucket() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let meta = Meta::open(&dir.path().join("meta"), 1 << 30)?;
    let cold = ColdTier::open("memory://", &[], 4, meta)?;
    let id = ManifestId::of(b"m");
    let body = b"manifest bytes".repeat(100);
    cold.put_manifest(TenantId([3; 8]), &id, &body).await?;
    cold.put_manifest(TenantId([3; 8]), &id, &body).await?;
    assert_eq!(
        cold.get_manifest(TenantId([3; 8]), &id, 1 << 20).await?,
        Some(body)
    );
    assert_eq!(
        cold.get_manifest(TenantId([4; 8]), &id, 1 << 20).await?,
        None
    );
    Ok(())
}

const TENANT: TenantId = TenantId([3; 8]);

fn chunk(n: u32) -> (ChunkKey, Frame, Vec<u8>) {
    let raw = format!("cold chunk {n} ")
        .repeat(300 + n as usize)
        .into_bytes();
    let key = ChunkKey::new(TENANT, &crate::ids::ChunkId::of(&raw));
    let frame = Frame::encode(&raw, crate::codec::Compression::Zstd(3)).expect("encode");
    (key, frame, raw)
}

/// Stores a pack built byte by byte: frames, footer entries, tenant, count, then `tail` (magic
/// and format byte), and indexes its chunks. Returns the object's path.
async fn put_pack_by_hand(
    cold: &ColdTier,
    trailer_tenant: TenantId,
    items: &[(ChunkKey, Frame, Vec<u8>)],
    tail: &[u8; 4],
) -> Result<Path> {
    let mut bytes = Vec::new();
    let mut footer = Vec::new();
    let mut index = Vec::new();
    for (key, frame, raw) in items {
        let offset = bytes.len() as u64;
        let len = frame.stored_len() as u32;
        bytes.extend_from_slice(frame.as_bytes());
        footer.extend_from_slice(key.id().as_bytes());
        footer.extend_from_slice(&offset.to_le_bytes());
        footer.extend_from_slice(&len.to_le_bytes());
        footer.extend_from_slice(&(raw.len() as u32).to_le_bytes());
        index.push((*key, offset, len));
    }
    bytes.extend_from_slice(&footer);
    bytes.extend_from_slice(&trailer_tenant.0);
    bytes.extend_from_slice(&(items.len() as u32).to_le_bytes());
    bytes.extend_from_slice(tail);
    let pack = *blake3::hash(&bytes).as_bytes();
    let path = cold.pack_path(TENANT, &pack);
    cold.store
        .put(&path, PutPayload::from(bytes))
        .await
        .map_err(Error::from)?;
    cold.meta
        .write(move |t, txn| {
            for (key, offset, len) in index {
                let loc = Location::whole(pack, offset, len);
                t.cold.put(txn, key.as_bytes(), &loc.encode())?;
            }
            Ok(())
        })
        .await?;
    Ok(path)
}

fn memory_tier(dir: &std::path::Path) -> Result<ColdTier> {
    let meta = Meta::open(&dir.join("meta"), 1 << 30)?;
    ColdTier::open("memory://", &[], 4, meta)
}

#[tokio::test]
async fn packs_in_the_first_layout_read_back() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let cold = memory_tier(dir.path())?;
    let items: Vec<_> = (0..4).map(chunk).collect();
    put_pack_by_hand(&cold, TENANT, &items, b"SCP\x01").await?;
    for _ in 0..2 {
        for (key, _, raw) in &items {
            let frame = cold.get(*key).await?.expect("indexed chunk");
            assert_eq!(&frame.decode_verified(&key.id(), 1 << 20)?[..], &raw[..]);
        }
    }
    Ok(())
}

#[tokio::test]
async fn packs_written_now_end_in_a_format_2_trailer() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let cold = memory_tier(dir.path())?;
    let items: Vec<_> = (0..3).map(chunk).collect();
    cold.put(items.iter().map(|(k, f, _)| (*k, f.clone())).collect())
        .await?;
    let listed: Vec<_> = futures::StreamExt::collect::<Vec<_>>(cold.store.list(None)).await;
    let packs: Vec<_> = listed
        .into_iter()
        .map(|m| m.map_err(Error::from))
        .collect::<Result<_>>()?;
    assert_eq!(packs.len(), 1);
    let bytes = cold.store.get(&packs[0].location).await?.bytes().await?;
    let tail = &bytes[bytes.len() - 16..];
    assert_eq!(&tail[..8], &TENANT.0);
    assert_eq!(le_u32(&tail[8..12]), 3);
    assert_eq!(&tail[12..], b"SCP\x02");
    Ok(())
}

#[tokio::test]
async fn a_pack_of_a_newer_format_is_refused_with_a_clear_message() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let cold = memory_tier(dir.path())?;
    let items: Vec<_> = (0..2).map(chunk).collect();
    let path = put_pack_by_hand(&cold, TENANT, &items, b"SCP\x03")
        .await?
        .to_string();
    let err = cold.get(items[0].0).await.expect_err("newer pack refused");
    let text = err.to_string();
    assert!(
        matches!(
            err,
            Error::NewerFormat {
                found: 3,
                supported: 2,
                ..
            }
        ),
        "{text}"
    );
    for part in [
        path.as_str(),
        "newer scipcached",
        "format 3",
        "up to format 2",
        "upgrade scipcached",
    ] {
        assert!(text.contains(part), "{text:?} names {part:?}");
    }
    Ok(())
}

#[tokio::test]
async fn packs_with_a_foreign_or_damaged_trailer_are_refused() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let cold = memory_tier(dir.path())?;
    let cases: [(TenantId, &[u8; 4], u32); 3] = [
        (TenantId([4; 8]), b"SCP\x01", 0),
        (TENANT, b"ZIP\x01", 10),
        (TENANT, b"SCP\x00", 20),
    ];
    for (trailer_tenant, tail, first) in cases {
        let items = vec![chunk(first)];
        put_pack_by_hand(&cold, trailer_tenant, &items, tail).await?;
        let err = cold.get(items[0].0).await.expect_err("bad trailer refused");
        assert!(matches!(err, Error::Format(_)), "{tail:?}: {err}");
    }
    Ok(())
}

/// Stores `items` as one pack of blocks of about `target` raw bytes, at zstd 3.
async fn put_blocks(
    cold: &ColdTier,
    items: &[(ChunkKey, Frame, Vec<u8>)],
    target: usize,
    fast: bool,
) -> Result<u64> {
    let how = block::BlockEncoding {
        compression: Compression::Zstd(3),
        fresh: true,
        target,
    };
    let frames = items.iter().map(|(k, f, _)| (*k, f.clone())).collect();
    cold.put_pack(TENANT, block::build(frames, how)?, fast, false)
        .await
}

/// The chunks of `items` grouped by the block offset their location names, in pack order.
async fn blocks_of(
    cold: &ColdTier,
    items: &[(ChunkKey, Frame, Vec<u8>)],
) -> Result<Vec<Vec<usize>>> {
    let mut by_offset: std::collections::BTreeMap<u64, Vec<usize>> = Default::default();
    for (i, (key, _, _)) in items.iter().enumerate() {
        let loc = cold.location(*key).await?.expect("a cold location");
        by_offset.entry(loc.offset).or_default().push(i);
    }
    Ok(by_offset.into_values().collect())
}

async fn only_pack(cold: &ColdTier) -> Result<scan::PackObject> {
    let (mut packs, _) = cold.list_packs().await?;
    assert_eq!(packs.len(), 1, "one pack object");
    Ok(packs.remove(0))
}

#[tokio::test]
async fn chunks_sharing_blocks_read_back_one_by_one_and_in_batches() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let cold = memory_tier(dir.path())?;
    let items: Vec<_> = (0..10).map(chunk).collect();
    assert_eq!(put_blocks(&cold, &items, 16 << 10, false).await?, 10);
    let groups = blocks_of(&cold, &items).await?;
    assert!(
        groups.len() > 1 && groups.iter().any(|g| g.len() > 1),
        "{groups:?}"
    );
    for (key, _, raw) in &items {
        let frame = cold.get(*key).await?.expect("a cold copy");
        assert_eq!(&frame.decode_verified(&key.id(), 1 << 20)?[..], &raw[..]);
    }
    let mut keys: Vec<ChunkKey> = items.iter().map(|(k, _, _)| *k).collect();
    keys.push(chunk(99).0);
    let got = cold.get_many(keys).await?;
    assert!(matches!(got[10], Ok(None)), "a chunk never stored");
    for ((key, _, raw), frame) in items.iter().zip(got) {
        let frame = frame?.expect("a cold copy");
        assert_eq!(&frame.decode_verified(&key.id(), 1 << 20)?[..], &raw[..]);
    }
    // Every stored byte of the body is charged to exactly one chunk.
    let object = only_pack(&cold).await?;
    let used = cold.pack_use(Some(TENANT)).await?;
    assert_eq!(used[0].live, used[0].size - 10 * 56 - 16);
    // The footer alone gives back the index's locations (what a rebuild indexes).
    for c in cold.read_footer(&object).await? {
        assert_eq!(Some(c.location()), cold.location(c.key).await?);
    }
    Ok(())
}

#[tokio::test]
async fn a_damaged_shared_block_is_reported_for_each_member_and_never_served() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let cold = memory_tier(dir.path())?;
    let items: Vec<_> = (0..6).map(chunk).collect();
    put_blocks(&cold, &items, 64 << 10, false).await?;
    let object = only_pack(&cold).await?;
    let mut bytes = cold.store.get(&object.path).await?.bytes().await?.to_vec();
    bytes[40] ^= 0x55;
    cold.store
        .put(&object.path, PutPayload::from(bytes))
        .await
        .map_err(Error::from)?;
    for (key, _, _) in &items {
        let err = cold.get(*key).await.expect_err("a damaged block");
        assert!(matches!(err, Error::Format(_)), "{err}");
    }
    let keys = items.iter().map(|(k, _, _)| *k).collect();
    for got in cold.get_many(keys).await? {
        assert!(matches!(got, Err(Error::Format(_))), "{got:?}");
    }
    Ok(())
}

#[tokio::test]
async fn compaction_copies_live_blocks_and_re_encodes_what_is_left_of_partly_dead_ones()
-> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let cold = memory_tier(dir.path())?;
    let items: Vec<_> = (0..12).map(chunk).collect();
    put_blocks(&cold, &items, 16 << 10, false).await?;
    let groups = blocks_of(&cold, &items).await?;
    assert!(groups.len() >= 3 && groups[0].len() > 1, "{groups:?}");
    // One member of the first block dies, the whole second block dies, the rest stays.
    let mut dead: Vec<usize> = vec![groups[0][0]];
    dead.extend(&groups[1]);
    let dead_keys: Vec<ChunkKey> = dead.iter().map(|i| items[*i].0).collect();
    cold.delete(dead_keys).await?;
    let kept_block = groups[2].clone();
    let before: Vec<Location> = {
        let mut v = Vec::new();
        for i in &kept_block {
            v.push(cold.location(items[*i].0).await?.expect("live"));
        }
        v
    };
    let object = only_pack(&cold).await?;
    let (deleted, written) = cold.compact(TENANT, vec![object.clone()], 8 << 20).await?;
    assert_eq!(deleted, 1);
    assert!(written > 0);
    let new = only_pack(&cold).await?;
    assert_ne!(new.pack, object.pack);
    for (i, (key, _, raw)) in items.iter().enumerate() {
        match cold.get(*key).await? {
            Some(frame) => {
                assert!(!dead.contains(&i), "chunk {i} was deleted");
                assert_eq!(&frame.decode_verified(&key.id(), 1 << 20)?[..], &raw[..]);
            }
            None => assert!(dead.contains(&i), "chunk {i} lost"),
        }
    }
    // The fully live block was copied as it was: same length and members, new place.
    for (i, was) in kept_block.iter().zip(before) {
        let now = cold.location(items[*i].0).await?.expect("live");
        assert_eq!((now.pack, now.len, now.part), (new.pack, was.len, was.part));
    }
    let used = cold.pack_use(Some(TENANT)).await?;
    let live = items.len() - dead.len();
    assert_eq!(used[0].live, used[0].size - live as u64 * 56 - 16);
    // Re-encoded at the fast level: the new pack waits for recompression.
    assert_eq!(cold.next_to_recompress().await?, Some((TENANT, new.pack)));
    Ok(())
}

#[tokio::test]
async fn recompression_regroups_the_live_chunks_of_a_pack_of_blocks() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let cold = memory_tier(dir.path())?;
    let items: Vec<_> = (0..8).map(chunk).collect();
    put_blocks(&cold, &items, 8 << 10, true).await?;
    let object = only_pack(&cold).await?;
    assert_eq!(
        cold.next_to_recompress().await?,
        Some((TENANT, object.pack))
    );
    cold.delete(vec![items[3].0]).await?;
    let how = block::BlockEncoding {
        compression: Compression::Zstd(9),
        fresh: true,
        target: 64 << 10,
    };
    let done = cold
        .recompress(TENANT, object.pack, |frames| async move {
            block::build(frames, how)
        })
        .await?;
    assert_eq!(done.chunks, 7);
    assert!(done.after < done.before, "{done:?}");
    assert_eq!(cold.next_to_recompress().await?, None);
    for (i, (key, _, raw)) in items.iter().enumerate() {
        if i == 3 {
            continue;
        }
        let loc = cold.location(*key).await?.expect("live");
        assert_ne!(loc.pack, object.pack);
        let frame = cold.get(*key).await?.expect("a cold copy");
        assert_eq!(&frame.decode_verified(&key.id(), 1 << 20)?[..], &raw[..]);
    }
    Ok(())
}
