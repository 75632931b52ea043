//! Helpers shared by the e2e tests.

use std::path::Path;

use anyhow::{Context, Result, bail};
use serde_json::Value;

/// A temp path as the `&str` the CLI argument lists take (temp paths are UTF-8 here).
pub(crate) fn p(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// Fails unless `json` has every field in `fields` (the contract's "at least" lists).
pub(crate) fn require_fields(json: &Value, fields: &[&str], what: &str) -> Result<()> {
    let missing: Vec<_> = fields.iter().filter(|f| json.get(**f).is_none()).collect();
    if !missing.is_empty() {
        bail!("`{what} --json` lacks the contract's fields {missing:?}: {json}");
    }
    Ok(())
}

/// A JSON field as u64, with the whole object in the error.
pub(crate) fn u64_field(json: &Value, field: &str) -> Result<u64> {
    json.get(field)
        .and_then(Value::as_u64)
        .with_context(|| format!("field `{field}` is not an unsigned integer in {json}"))
}

/// A JSON field as str, with the whole object in the error.
pub(crate) fn str_field<'a>(json: &'a Value, field: &str) -> Result<&'a str> {
    json.get(field)
        .and_then(Value::as_str)
        .with_context(|| format!("field `{field}` is not a string in {json}"))
}

/// Whether two files have the same bytes.
pub(crate) fn same_bytes(a: &Path, b: &Path) -> Result<bool> {
    let (ma, mb) = (std::fs::metadata(a)?, std::fs::metadata(b)?);
    if ma.len() != mb.len() {
        return Ok(false);
    }
    Ok(
        scipcache_tests::blake3_file(a)? == scipcache_tests::blake3_file(b)?
            && std::fs::read(a)? == std::fs::read(b)?,
    )
}

/// Parses an RFC 3339 timestamp and checks it is in UTC, as the contract requires.
pub(crate) fn rfc3339_utc(s: &str) -> Result<time::OffsetDateTime> {
    let t = time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .with_context(|| format!("{s:?} is not RFC 3339"))?;
    if !t.offset().is_utc() {
        bail!("{s:?} is not in UTC");
    }
    Ok(t)
}

/// The median of a non-empty list.
pub(crate) fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// Mebibytes, for printing.
pub(crate) fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Serialises the tests whose measurements a neighbour's heavy disk I/O would distort: the
/// 2 GiB transfer, and the SIGTERM test whose stop time includes fsyncs (in one run next to
/// the 2 GiB push, a stop that takes 0.4-2.4 s alone took 11.7 s).
pub(crate) fn heavy_io() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}
