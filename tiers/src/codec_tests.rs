//! Chunk frame tests: round trips of every codec and both formats, and damage detection.

use super::*;
use proptest::prelude::*;

fn all_compressions() -> [Compression; 4] {
    [
        Compression::Raw,
        Compression::Lz4,
        Compression::Zstd(3),
        Compression::Zstd(19),
    ]
}

/// The format-1 frame an old encoder wrote for the same payload.
fn as_format_1(frame: &Frame) -> Frame {
    let mut old = vec![FRAME_FORMAT_V1];
    old.extend_from_slice(&frame.as_bytes()[1..6]);
    old.extend_from_slice(frame.payload());
    Frame(Bytes::from(old))
}

fn fail(e: Error) -> TestCaseError {
    TestCaseError::fail(e.to_string())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn frames_round_trip_every_codec(data in prop::collection::vec(any::<u8>(), 0..70_000), rep in 1usize..50) {
        let repetitive: Vec<u8> = data.iter().copied().cycle().take(data.len() * rep).take(MAX_CHUNK_LEN).collect();
        for raw in [&data, &repetitive] {
            for c in all_compressions() {
                let frame = Frame::encode(raw, c).map_err(fail)?;
                prop_assert!(frame.has_checksum());
                let again = Frame::from_bytes(frame.as_bytes().clone()).map_err(fail)?;
                again.verify_checksum().map_err(fail)?;
                let out = again.decode_verified(&ChunkId::of(raw), MAX_CHUNK_LEN).map_err(fail)?;
                prop_assert_eq!(&out[..], &raw[..]);
                // The same into a caller's buffer, as a reader decoding many chunks does.
                let mut into = vec![0xAA; raw.len()];
                again.decode_verified_into(&ChunkId::of(raw), &mut into).map_err(fail)?;
                prop_assert_eq!(&into[..], &raw[..]);
            }
        }
    }

    #[test]
    fn format_1_frames_still_decode_and_recode_upgrades_them(data in prop::collection::vec(any::<u8>(), 0..20_000), rep in 1usize..20) {
        let raw: Vec<u8> = data.iter().copied().cycle().take(data.len() * rep).collect();
        for c in all_compressions() {
            let old = as_format_1(&Frame::encode(&raw, c).map_err(fail)?);
            let old = Frame::from_bytes(old.into_bytes()).map_err(fail)?;
            prop_assert!(!old.has_checksum());
            prop_assert!(old.verify_checksum().is_err());
            let out = old.decode_verified(&ChunkId::of(&raw), MAX_CHUNK_LEN).map_err(fail)?;
            prop_assert_eq!(&out[..], &raw[..]);
            let upgraded = old.recode(&raw, c).map_err(fail)?;
            prop_assert!(upgraded.has_checksum());
            prop_assert_eq!(upgraded.codec(), old.codec());
            prop_assert_eq!(upgraded.payload(), old.payload());
            upgraded.verify_checksum().map_err(fail)?;
        }
    }
}

#[test]
fn incompressible_chunk_is_stored_raw_and_grows_by_header_only() -> Result<()> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    let random: Vec<u8> = (0..65_536)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    for c in all_compressions() {
        let frame = Frame::encode(&random, c)?;
        assert_eq!(frame.codec(), CodecId::Raw);
        assert_eq!(frame.stored_len(), random.len() + FRAME_HEADER_LEN);
    }
    Ok(())
}

#[test]
fn declared_length_over_limit_is_refused_before_decoding() -> Result<()> {
    let frame = Frame::encode(&vec![7u8; 100_000], Compression::Zstd(3))?;
    assert!(matches!(frame.decode(65_536), Err(Error::Format(_))));
    // A header that lies about its length is caught too.
    let mut bytes = frame.as_bytes().to_vec();
    bytes[2..6].copy_from_slice(&(u32::MAX).to_le_bytes());
    let liar = Frame::from_bytes(Bytes::from(bytes))?;
    assert!(liar.decode(MAX_CHUNK_LEN).is_err());
    Ok(())
}

#[test]
fn flipped_payload_byte_is_reported_corrupt() -> Result<()> {
    let raw = b"hello hello hello hello hello hello hello hello".repeat(100);
    for c in all_compressions() {
        let frame = Frame::encode(&raw, c)?;
        for format_1 in [false, true] {
            let frame = if format_1 {
                as_format_1(&frame)
            } else {
                frame.clone()
            };
            let mut bytes = frame.as_bytes().to_vec();
            let last = bytes.len() - 1;
            bytes[last] ^= 0x55;
            let bad = Frame::from_bytes(Bytes::from(bytes))?;
            let result = bad.decode_verified(&ChunkId::of(&raw), MAX_CHUNK_LEN);
            assert!(
                matches!(result, Err(Error::Corrupt { .. })),
                "{c:?} format 1: {format_1}: {result:?}"
            );
        }
    }
    Ok(())
}

#[test]
fn checksum_catches_a_damaged_payload_header_or_checksum_without_decoding() -> Result<()> {
    let raw = b"scip scip scip scip scip".repeat(400);
    for c in all_compressions() {
        let frame = Frame::encode(&raw, c)?;
        frame.verify_checksum()?;
        // Every byte but the format byte: codec, length, checksum and payload.
        for at in [1, 2, 5, 6, 13, FRAME_HEADER_LEN, frame.stored_len() - 1] {
            let mut bytes = frame.as_bytes().to_vec();
            if at == 1 {
                // Another known codec, so that the header still parses.
                bytes[1] = (bytes[1] + 1) % 3;
            } else {
                bytes[at] ^= 0x10;
            }
            let bad = Frame::from_bytes(Bytes::from(bytes))?;
            let err = bad.verify_checksum().err();
            assert!(
                err.as_ref()
                    .is_some_and(|e| e.to_string().contains("checksum mismatch")),
                "{c:?}, byte {at}: {err:?}"
            );
        }
    }
    Ok(())
}

#[test]
fn a_wrong_checksum_fails_decode_verified_although_the_payload_is_good() -> Result<()> {
    let raw = b"a good payload under a bad checksum ".repeat(50);
    let frame = Frame::encode(&raw, Compression::Lz4)?;
    let mut bytes = frame.as_bytes().to_vec();
    bytes[6] ^= 1;
    let bad = Frame::from_bytes(Bytes::from(bytes))?;
    assert_eq!(bad.decode(MAX_CHUNK_LEN)?, &raw[..]);
    let result = bad.decode_verified(&ChunkId::of(&raw), MAX_CHUNK_LEN);
    assert!(
        matches!(&result, Err(Error::Corrupt { actual, .. }) if actual.contains("checksum")),
        "{result:?}"
    );
    Ok(())
}

#[test]
fn format_1_frame_written_by_hand_decodes() -> Result<()> {
    // 0xC1, raw codec, length 5 (u32 LE), payload: the layout of format 1.
    let old = Frame::from_bytes(Bytes::from_static(b"\xC1\x00\x05\x00\x00\x00hello"))?;
    assert!(!old.has_checksum());
    assert_eq!(
        old.decode_verified(&ChunkId::of(b"hello"), 5)?,
        &b"hello"[..]
    );
    Ok(())
}

#[test]
fn zstd_frames_of_different_levels_on_one_thread_all_decode() -> Result<()> {
    let raw = b"context reuse across levels ".repeat(300);
    let frames = [3, 19, 1, 3]
        .into_iter()
        .map(|level| Frame::encode(&raw, Compression::Zstd(level)))
        .collect::<Result<Vec<_>>>()?;
    for f in &frames {
        assert_eq!(f.codec(), CodecId::Zstd);
        assert_eq!(
            f.decode_verified(&ChunkId::of(&raw), MAX_CHUNK_LEN)?,
            &raw[..]
        );
    }
    // Level 19 compresses at least as well as level 1.
    assert!(frames[1].stored_len() <= frames[2].stored_len());
    Ok(())
}

#[test]
fn unknown_format_or_codec_or_short_header_is_refused() {
    assert!(Frame::from_bytes(Bytes::from_static(&[0xC3; 20])).is_err());
    assert!(Frame::from_bytes(Bytes::from_static(&[0xC2, 0, 0, 0, 0, 0])).is_err());
    assert!(Frame::from_bytes(Bytes::from_static(&[0xC1, 9, 0, 0, 0, 0])).is_err());
    assert!(
        Frame::from_bytes(Bytes::from_static(&[
            0xC2, 9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
        ]))
        .is_err()
    );
    assert!(Frame::from_bytes(Bytes::from_static(&[0xC1, 0])).is_err());
    assert!(Frame::from_bytes(Bytes::new()).is_err());
}

#[test]
fn decode_into_needs_a_buffer_of_exactly_the_raw_length() -> Result<()> {
    let raw = b"exact length ".repeat(64);
    let frame = Frame::encode(&raw, Compression::Lz4)?;
    for len in [raw.len() - 1, raw.len() + 1, 0] {
        let mut out = vec![0u8; len];
        assert!(matches!(
            frame.decode_into(&mut out),
            Err(Error::InvalidArgument(_))
        ));
    }
    let mut out = vec![0u8; raw.len()];
    let other = ChunkId::of(b"another chunk");
    assert!(matches!(
        frame.decode_verified_into(&other, &mut out),
        Err(Error::Corrupt { .. })
    ));
    frame.decode_verified_into(&ChunkId::of(&raw), &mut out)?;
    assert_eq!(out, raw);
    Ok(())
}
