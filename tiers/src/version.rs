//! The data dir's format version.
//!
//! The LMDB `state` key `format` holds it, a `u64` little-endian. It covers the LMDB tables
//! (`meta.rs`) and the arrangement of the data dir; pack files, chunk frames, manifests and
//! ref records carry versions of their own (`warm.rs`, `cold.rs`, `codec.rs`, `manifest.rs`,
//! `refs.rs`).
//!
//! # Rule
//!
//! - A new data dir is stamped with [`DATA_DIR_FORMAT`], the newest format this build reads
//!   and writes. "New" means no `format` key and no data: the store first checks that the
//!   cold tier holds nothing either (an index that was lost while the bucket still holds data
//!   must be rebuilt, not silently started empty; `store/mod.rs`), then stamps it.
//! - A data dir with data but no `format` key was made before the key existed: it is format
//!   1 and opens as it is.
//! - A data dir of a newer format is refused with [`Error::NewerFormat`] before anything is
//!   written, so an older build never half-understands a newer layout.
//! - A data dir of an older format is stamped with this build's format when it opens. That is
//!   only allowed while every older format is readable as it is; a change that needs a
//!   migration must run it here, in the same transaction as the stamp.
//! - A change that an older build could misread bumps [`DATA_DIR_FORMAT`] and adds a row
//!   below.
//!
//! # History
//!
//! | format | change |
//! | --- | --- |
//! | 1 | the tables in `meta.rs` (data dirs made before the key existed are format 1 too) |
//! | 2 | every tier may hold chunk frames of format 2 (`0xC2`, with a checksum; `codec.rs`), which format-1 builds cannot read; format-1 frames are still read, so a format-1 dir is stamped 2 as it is |
//! | 3 | every record of `chunks`, `warm`, `cold`, `manifests` and `refs` is sealed: it ends with an XXH3-64 of its key and value (`sealed.rs`), which older builds would misread as part of the record. Opening a format-1 or 2 dir seals every record of those tables in the transaction that stamps the current format ([`seal_records`]) |
//! | 4 | `cold_queue` entries of kinds 3 (ref set) and 4 (ref deleted), which carry a cold ref object (`cold_refs.rs`) instead of an id, and the `state` key `ref_version`; format-3 builds would stop at those entries. Nothing else changes, so a format-3 dir is stamped 4 as it is |

use std::path::Path;

use heed::types::Bytes as RawBytes;
use std::ops::Bound;

use heed::{Database, Env, RoTxn, RwTxn, WithoutTls};

use crate::error::{Error, Result};
use crate::sealed::{Sealed, seal};

/// Newest data dir format this build reads and writes.
pub(crate) const DATA_DIR_FORMAT: u64 = 4;
/// The first format whose metadata records are sealed (`sealed.rs`).
pub(crate) const SEALED_FORMAT: u64 = 3;
/// The format of a data dir that has data but no [`FORMAT_KEY`].
pub(crate) const UNSTAMPED_FORMAT: u64 = 1;
/// The `state` key of the data dir format.
pub(crate) const FORMAT_KEY: &str = "format";

type RawTable = Database<'static, RawBytes, RawBytes>;

/// Refuses a data dir of a newer format and stamps an older one with [`DATA_DIR_FORMAT`],
/// sealing the records of `sealed` when it is older than [`SEALED_FORMAT`]. A new one (no
/// format key, no data) is left unstamped: returns `true` for it, and the caller stamps it
/// with [`stamp`] once it knows that nothing was lost. `state` is the `state` table, `all`
/// every table of the environment in `dir` (the `meta` folder of the data dir).
pub(crate) fn check_data_dir(
    env: &Env<WithoutTls>,
    state: RawTable,
    all: &[RawTable],
    sealed: &[Sealed],
    dir: &Path,
) -> Result<bool> {
    let mut txn = env.write_txn()?;
    let stored = stored_format(state, &txn, dir)?;
    let found = match stored {
        Some(v) => v,
        None if has_data(all, &txn)? => UNSTAMPED_FORMAT,
        None => return Ok(true),
    };
    if found > DATA_DIR_FORMAT {
        return Err(Error::NewerFormat {
            what: format!("data dir {}", dir.parent().unwrap_or(dir).display()),
            found,
            supported: DATA_DIR_FORMAT,
        });
    }
    if found == 0 {
        return Err(Error::Format(format!(
            "the data dir format in {} is 0, which no build writes",
            dir.display()
        )));
    }
    if stored != Some(DATA_DIR_FORMAT) {
        tracing::info!(
            found,
            recorded = DATA_DIR_FORMAT,
            "recording the data dir format"
        );
        if found < SEALED_FORMAT {
            let started = std::time::Instant::now();
            let records = seal_records(&mut txn, sealed)?;
            tracing::info!(
                records,
                ms = started.elapsed().as_millis() as u64,
                "sealed the metadata records of an older data dir (format 3)"
            );
        }
        state.put(
            &mut txn,
            FORMAT_KEY.as_bytes(),
            &DATA_DIR_FORMAT.to_le_bytes(),
        )?;
        txn.commit()?;
    }
    Ok(false)
}

/// Records [`DATA_DIR_FORMAT`] in a new data dir.
pub(crate) fn stamp(env: &Env<WithoutTls>, state: RawTable) -> Result<()> {
    let mut txn = env.write_txn()?;
    state.put(
        &mut txn,
        FORMAT_KEY.as_bytes(),
        &DATA_DIR_FORMAT.to_le_bytes(),
    )?;
    txn.commit()?;
    Ok(())
}

/// The recorded data dir format, if any.
pub(crate) fn stored_format(state: RawTable, txn: &RoTxn<'_>, dir: &Path) -> Result<Option<u64>> {
    Ok(match state.get(txn, FORMAT_KEY.as_bytes())? {
        Some(v) => Some(u64::from_le_bytes(v.try_into().map_err(|_| {
            Error::Format(format!(
                "the data dir format in {} is {} bytes long, not 8",
                dir.display(),
                v.len()
            ))
        })?)),
        None => None,
    })
}

/// Records sealed per pass of [`seal_records`] (bounds the memory a migration takes).
const SEAL_BATCH: usize = 4096;

/// Seals every record of `tables` (a format-1 or 2 data dir holds them unsealed); returns how
/// many. Runs in the transaction that stamps the format, so a crash leaves the dir unchanged.
pub(crate) fn seal_records(txn: &mut RwTxn<'_>, tables: &[Sealed]) -> Result<u64> {
    let mut total = 0;
    for table in tables {
        let mut after: Option<Vec<u8>> = None;
        loop {
            let batch: Vec<(Vec<u8>, Vec<u8>)> = {
                let bounds = (
                    after.as_deref().map_or(Bound::Unbounded, Bound::Excluded),
                    Bound::Unbounded,
                );
                let mut batch = Vec::with_capacity(SEAL_BATCH);
                for item in table.raw.range(txn, &bounds)? {
                    let (k, v) = item?;
                    batch.push((k.to_vec(), seal(k, v)));
                    if batch.len() == SEAL_BATCH {
                        break;
                    }
                }
                batch
            };
            let Some((last, _)) = batch.last() else { break };
            let last = last.clone();
            for (k, v) in &batch {
                table.raw.put(txn, k, v)?;
            }
            total += batch.len() as u64;
            after = Some(last);
        }
    }
    Ok(total)
}

/// Whether any table holds an entry.
fn has_data(all: &[RawTable], txn: &RoTxn<'_, WithoutTls>) -> Result<bool> {
    for table in all {
        if !table.is_empty(txn)? {
            return Ok(true);
        }
    }
    Ok(false)
}
