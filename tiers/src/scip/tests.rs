//! Round trips of synthetic indexes through cutting and normalization.

use proptest::prelude::*;

use super::synthetic::{document, field, index};
use super::versions::MARK;
use super::*;
use crate::chunking::ChunkerSpec;
use crate::error::Result;

/// Cuts `data`, fed in blocks of `block` bytes.
fn cut_all(data: &[u8], mode: CutMode, block: usize) -> Result<(Vec<Cut>, VersionTable)> {
    feed(Cutter::new(ChunkerSpec::fastcdc(4096), mode)?, data, block)
}

/// Feeds `data` to `cutter` in blocks of `block` bytes; every chunk and the table.
fn feed(mut cutter: Cutter, data: &[u8], block: usize) -> Result<(Vec<Cut>, VersionTable)> {
    let mut cuts = Vec::new();
    for piece in data.chunks(block.max(1)) {
        cutter.push(piece);
        while let Some(c) = cutter.next_cut(false)? {
            cuts.push(c);
        }
    }
    while let Some(c) = cutter.next_cut(true)? {
        cuts.push(c);
    }
    Ok((cuts, cutter.finish()))
}

/// The blob the chunks stand for.
fn restore(cuts: &[Cut], table: &VersionTable) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    for c in cuts {
        if c.normalized {
            out.extend(table.restore(&c.data)?);
        } else {
            out.extend_from_slice(&c.data);
        }
    }
    Ok(out)
}

fn round_trips(data: &[u8], block: usize) -> std::result::Result<(), TestCaseError> {
    let fail = |e: crate::Error| TestCaseError::fail(e.to_string());
    for mode in [CutMode::Plain, CutMode::Documents, CutMode::Normalized] {
        let (cuts, table) = cut_all(data, mode, block).map_err(fail)?;
        prop_assert_eq!(restore(&cuts, &table).map_err(fail)?, data, "{:?}", mode);
        prop_assert!(
            cuts.iter()
                .all(|c| !c.data.is_empty() && c.data.len() <= 16384)
        );
    }
    Ok(())
}

fn version() -> impl Strategy<Value = String> {
    prop_oneof![
        "[0-9a-f]{40}",
        "[0-9]\\.[0-9]{1,2}\\.[0-9]{1,3}",
        "[a-z0-9.+-]{1,12}",
        Just(".".to_string()),
        Just("v\u{1}x".to_string()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn synthetic_indexes_round_trip_in_every_mode(
        v in version(),
        docs in prop::collection::vec(0usize..300, 0..12),
        externals in 0usize..200,
        block in 1usize..70_000,
    ) {
        round_trips(&index(&v, &docs, externals), block)?;
    }

    #[test]
    fn indexes_differing_only_in_same_length_versions_cut_to_the_same_chunks(
        docs in prop::collection::vec(1usize..300, 1..10),
        externals in 0usize..100,
        a in "[0-9a-f]{40}",
        b in "[0-9a-f]{40}",
    ) {
        let fail = |e: crate::Error| TestCaseError::fail(e.to_string());
        let (x, tx) = cut_all(&index(&a, &docs, externals), CutMode::Normalized, 1 << 20).map_err(fail)?;
        let (y, ty) = cut_all(&index(&b, &docs, externals), CutMode::Normalized, 1 << 20).map_err(fail)?;
        prop_assert_eq!(x, y);
        prop_assert_eq!(tx.len(), ty.len());
    }

    #[test]
    fn bytes_that_almost_parse_as_an_index_round_trip(
        docs in prop::collection::vec(0usize..100, 1..6),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
        block in 1usize..10_000,
    ) {
        let mut data = index("1.2.3", &docs, 5);
        for (at, byte) in flips {
            let i = at.index(data.len());
            data[i] = byte;
        }
        data.truncate(cut.index(data.len() + 1));
        round_trips(&data, block)?;
    }

    #[test]
    fn arbitrary_bytes_round_trip(data in prop::collection::vec(any::<u8>(), 0..40_000), block in 1usize..9000) {
        round_trips(&data, block)?;
    }
}

#[test]
fn the_empty_index_has_no_chunks() -> Result<()> {
    for mode in [CutMode::Plain, CutMode::Documents, CutMode::Normalized] {
        assert!(cut_all(&[], mode, 1)?.0.is_empty());
    }
    Ok(())
}

#[test]
fn one_huge_document_is_cut_inside_without_splitting_a_placeholder() -> Result<()> {
    let sha = "eb5ef2ac708a6e70ec253d78955d04e20c3c9784";
    let data = index(sha, &[20_000], 0);
    let (cuts, table) = cut_all(&data, CutMode::Normalized, 1 << 16)?;
    assert!(cuts.len() > 50, "{} chunks", cuts.len());
    let normalized = cuts.iter().filter(|c| c.normalized).count();
    assert!(
        normalized + 2 >= cuts.len(),
        "{normalized} of {} pieces",
        cuts.len()
    );
    assert_eq!(restore(&cuts, &table)?, data);
    let other = index("0123456789012345678901234567890123456789", &[20_000], 0);
    assert_eq!(cut_all(&other, CutMode::Normalized, 1 << 16)?.0, cuts);
    Ok(())
}

#[test]
fn reordered_documents_keep_their_chunks() -> Result<()> {
    let docs: Vec<Vec<u8>> = (0..8)
        .map(|i| document(&format!("d{i}.ts"), "3.5.40", 200 + i * 10, &[]))
        .collect();
    let forward: Vec<u8> = docs.concat();
    let backward: Vec<u8> = docs.iter().rev().flatten().copied().collect();
    let (a, _) = cut_all(&forward, CutMode::Normalized, 1 << 20)?;
    let (b, _) = cut_all(&backward, CutMode::Normalized, 1 << 20)?;
    let set: std::collections::HashSet<_> = a.iter().map(|c| c.data.clone()).collect();
    assert!(b.iter().all(|c| set.contains(&c.data)));
    Ok(())
}

#[test]
fn a_chunk_holding_what_looks_like_a_placeholder_is_stored_as_it_is() -> Result<()> {
    let sha = "eb5ef2ac708a6e70ec253d78955d04e20c3c9784";
    // A placeholder-looking string already in the input, beside real versions.
    let fake = super::versions::placeholder(b"scip-python python sqlalchemy", 40);
    let framed = [b" ".as_slice(), &fake, b" "].concat();
    let doc = document("p.py", sha, 60, &field(50, &framed));
    let (cuts, table) = cut_all(&doc, CutMode::Normalized, 1 << 20)?;
    assert_eq!(cuts.len(), 1);
    assert!(!cuts[0].normalized);
    assert_eq!(restore(&cuts, &table)?, doc);
    // Loose mark bytes (protobuf is full of them) do not stop normalization.
    let doc = document("p.py", sha, 60, &field(50, &[MARK, b'a', MARK]));
    let (cuts, table) = cut_all(&doc, CutMode::Normalized, 1 << 20)?;
    assert_eq!(cuts.len(), 1);
    assert!(cuts[0].normalized);
    assert_eq!(restore(&cuts, &table)?, doc);
    Ok(())
}

#[test]
fn two_versions_of_one_package_keep_the_second_as_it_is() -> Result<()> {
    let mut data = document("a.ts", "3.5.40", 300, &[]);
    data.extend(document("b.ts", "3.5.41", 300, &[]));
    let (cuts, table) = cut_all(&data, CutMode::Normalized, 1 << 20)?;
    assert_eq!(restore(&cuts, &table)?, data);
    let versions: Vec<&[u8]> = table.entries().iter().map(|(_, v)| *v).collect();
    assert!(versions.contains(&b"3.5.40".as_slice()));
    assert!(!versions.contains(&b"3.5.41".as_slice()));
    Ok(())
}

#[test]
fn the_chunks_and_the_table_do_not_depend_on_how_many_threads_scan() -> Result<()> {
    // Over a MiB of documents, where two versions of one package of the same length compete
    // for its placeholder (the first in blob order must win) and a malformed unit sits in the
    // middle.
    let mut data = Vec::new();
    for i in 0..200 {
        let version = if i % 7 == 3 { "3.5.41" } else { "3.5.40" };
        data.extend(document(&format!("src/f{i}.ts"), version, 40 + i % 50, &[]));
        if i == 100 {
            data.extend(field(2, &[0x0b, 1, 2]));
        }
    }
    data.extend(index("9.9.9", &[30, 300], 400));
    assert!(data.len() > 1 << 20, "{} bytes", data.len());
    let cut_with = |threads: usize, block: usize| -> Result<(Vec<Cut>, VersionTable)> {
        let cutter = Cutter::new(ChunkerSpec::fastcdc(4096), CutMode::Normalized)?;
        feed(cutter.with_scan_threads(threads), &data, block)
    };
    let (one, table) = cut_with(1, data.len())?;
    assert!(one.iter().any(|c| c.normalized));
    assert_eq!(restore(&one, &table)?, data);
    for (threads, block) in [(2, data.len()), (3, 1 << 20), (4, 700_001), (2, 4096)] {
        let (cuts, t) = cut_with(threads, block)?;
        assert_eq!(t, table, "{threads} threads, blocks of {block}");
        assert!(
            cuts == one,
            "{threads} threads, blocks of {block}: other chunks"
        );
    }
    Ok(())
}

#[test]
fn tiny_external_symbols_are_grouped() -> Result<()> {
    let data = index("1.0.0", &[], 2000);
    let (cuts, _) = cut_all(&data, CutMode::Documents, 1 << 20)?;
    let avg = data.len() / cuts.len();
    assert!(
        avg >= 1024,
        "{} chunks of {avg} bytes on average",
        cuts.len()
    );
    Ok(())
}
