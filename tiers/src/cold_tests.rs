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
                let loc = Location { pack, offset, len };
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
async fn packs_written_now_end_in_a_format_1_trailer() -> Result<()> {
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
    assert_eq!(&tail[12..], b"SCP\x01");
    Ok(())
}

#[tokio::test]
async fn a_pack_of_a_newer_format_is_refused_with_a_clear_message() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let cold = memory_tier(dir.path())?;
    let items: Vec<_> = (0..2).map(chunk).collect();
    let path = put_pack_by_hand(&cold, TENANT, &items, b"SCP\x02")
        .await?
        .to_string();
    let err = cold.get(items[0].0).await.expect_err("newer pack refused");
    let text = err.to_string();
    assert!(
        matches!(
            err,
            Error::NewerFormat {
                found: 2,
                supported: 1,
                ..
            }
        ),
        "{text}"
    );
    for part in [
        path.as_str(),
        "newer scipcached",
        "format 2",
        "up to format 1",
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
