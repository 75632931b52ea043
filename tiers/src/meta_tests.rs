//! Data dir format versions: stamped at creation, unstamped data dirs open as format 1,
//! newer ones are refused.

use super::*;
use crate::version::{DATA_DIR_FORMAT, FORMAT_KEY, UNSTAMPED_FORMAT};

fn stored_format(meta: &Meta) -> Result<Option<u64>> {
    meta.read_now(|t, txn| Ok(t.state.get(txn, FORMAT_KEY.as_bytes())?.map(le_u64)))
}

fn set_format(meta: &Meta, value: Option<u64>) -> Result<()> {
    meta.write_blocking(move |t, txn| {
        match value {
            Some(v) => state_put(t, txn, FORMAT_KEY, v)?,
            None => {
                t.state.delete(txn, FORMAT_KEY.as_bytes())?;
            }
        }
        Ok(())
    })
}

fn close(meta: Meta) {
    meta.close();
    drop(meta);
}

#[test]
fn a_new_data_dir_is_stamped_with_this_builds_format() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let meta = Meta::open(dir.path(), 1 << 20)?;
    assert_eq!(stored_format(&meta)?, Some(DATA_DIR_FORMAT));
    close(meta);
    Ok(())
}

#[test]
fn a_data_dir_with_data_and_no_format_key_opens_as_format_1_with_its_data() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let meta = Meta::open(dir.path(), 1 << 20)?;
    meta.write_blocking(|t, txn| {
        // Unsealed, as builds before format 3 wrote records.
        t.refs.raw.put(txn, b"acme/web/app\0commit/1", b"record")?;
        state_put(t, txn, "cold_seq", 7)
    })?;
    // What a data dir written before the key existed looks like.
    set_format(&meta, None)?;
    close(meta);

    let meta = Meta::open(dir.path(), 1 << 20)?;
    assert_eq!(UNSTAMPED_FORMAT, 1);
    assert_eq!(stored_format(&meta)?, Some(DATA_DIR_FORMAT));
    let kept = meta.read_now(|t, txn| {
        Ok((
            t.refs
                .get(txn, b"acme/web/app\0commit/1")?
                .map(<[u8]>::to_vec),
            state_get(t, txn, "cold_seq")?,
        ))
    })?;
    assert_eq!(
        kept,
        (Some(b"record".to_vec()), 7),
        "its data is as it was (and sealed: it reads through the checksum)"
    );
    close(meta);
    Ok(())
}

#[test]
fn a_data_dir_of_a_newer_format_is_refused_with_a_clear_message_and_left_alone() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let newer = DATA_DIR_FORMAT + 2;
    let meta = Meta::open(&dir.path().join("meta"), 1 << 20)?;
    set_format(&meta, Some(newer))?;
    close(meta);
    for _ in 0..2 {
        let err = Meta::open(&dir.path().join("meta"), 1 << 20).expect_err("newer refused");
        let text = err.to_string();
        assert!(
            matches!(err, Error::NewerFormat { found, supported, .. }
                if found == newer && supported == DATA_DIR_FORMAT),
            "{text}"
        );
        let expected = [
            format!("data dir {}", dir.path().display()),
            "newer scipcached".to_owned(),
            format!("format {newer}"),
            format!("up to format {DATA_DIR_FORMAT}"),
            "upgrade scipcached".to_owned(),
        ];
        for part in expected {
            assert!(text.contains(&part), "{text:?} names {part:?}");
        }
    }
    Ok(())
}

#[test]
fn a_malformed_format_key_is_reported_as_unreadable() -> Result<()> {
    let dir = tempfile::tempdir().map_err(|e| Error::io("tempdir", e))?;
    let meta = Meta::open(dir.path(), 1 << 20)?;
    meta.write_blocking(|t, txn| {
        t.state.put(txn, FORMAT_KEY.as_bytes(), b"two")?;
        Ok(())
    })?;
    close(meta);
    let err = Meta::open(dir.path(), 1 << 20).expect_err("malformed refused");
    assert!(matches!(err, Error::Format(_)), "{err}");
    Ok(())
}
