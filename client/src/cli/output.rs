//! What the commands print: the `--json` objects (the contract's fields and a few more) and
//! the short human lines.

use std::collections::BTreeMap;
use std::io::Write;

use indicatif::HumanBytes;
use scipcache_client::scip_json;
use scipcache_client::{
    BlobId, Document, Error, FsckReport, GcReport, Movement, PullReport, PushReport, RefList,
    RefSummary, Result, Stats, SymbolReport, WarmReport,
};
use serde::Serialize;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// RFC 3339 in UTC, e.g. `2026-01-31T12:00:00.123Z`.
pub(crate) fn rfc3339(t: OffsetDateTime) -> String {
    let utc = t.to_offset(time::UtcOffset::UTC);
    utc.format(&Rfc3339)
        .unwrap_or_else(|_| format!("@{}", utc.unix_timestamp()))
}

/// `ls --json`.
#[derive(Debug, Serialize)]
pub(crate) struct LsJson<'a> {
    ns: &'a str,
    prefix: &'a str,
    refs: Vec<RefJson<'a>>,
    truncated: bool,
}

#[derive(Debug, Serialize)]
struct RefJson<'a> {
    key: &'a str,
    blob: BlobId,
    bytes: u64,
    chunks: u64,
    created_at: String,
    expires_at: Option<String>,
    labels: &'a BTreeMap<String, String>,
}

impl<'a> RefJson<'a> {
    fn new(r: &'a RefSummary) -> Self {
        Self {
            key: &r.key,
            blob: r.blob,
            bytes: r.size,
            chunks: r.chunks,
            created_at: rfc3339(r.created_at),
            expires_at: r.expires_at.map(rfc3339),
            labels: &r.labels,
        }
    }
}

impl<'a> LsJson<'a> {
    pub(crate) fn new(ns: &'a str, prefix: &'a str, list: &'a RefList) -> Self {
        Self {
            ns,
            prefix,
            refs: list.refs.iter().map(RefJson::new).collect(),
            truncated: list.truncated,
        }
    }
}

/// `rm --json`.
#[derive(Debug, Serialize)]
pub(crate) struct RmJson<'a> {
    pub(crate) ns: &'a str,
    pub(crate) key: &'a str,
    pub(crate) deleted: bool,
}

/// `stat --json`.
#[derive(Debug, Serialize)]
pub(crate) struct StatJson<'a> {
    tiers: Vec<TierJson<'a>>,
    logical_bytes: u64,
    stored_bytes: u64,
    refs: u64,
    cold_queue: u64,
    cold_recompress: u64,
    movement: &'a Movement,
}

#[derive(Debug, Serialize)]
struct TierJson<'a> {
    name: &'a str,
    chunks: u64,
    stored_bytes: u64,
    hits: u64,
}

impl<'a> StatJson<'a> {
    pub(crate) fn new(stats: &'a Stats) -> Self {
        Self {
            tiers: stats
                .tiers
                .iter()
                .map(|t| TierJson {
                    name: &t.name,
                    chunks: t.chunks,
                    stored_bytes: t.stored_bytes,
                    hits: t.hits,
                })
                .collect(),
            logical_bytes: stats.logical_bytes,
            stored_bytes: stats.tiers.iter().map(|t| t.stored_bytes).sum(),
            refs: stats.refs,
            cold_queue: stats.cold_queue,
            cold_recompress: stats.cold_recompress,
            movement: &stats.movement,
        }
    }
}

/// One line about a push.
pub(crate) fn push_line(r: &PushReport) -> String {
    format!(
        "pushed {} {} blob {} ({}, {} chunks, {} new, {} sent, {:.2}s)",
        r.ns,
        r.key,
        r.blob,
        HumanBytes(r.bytes),
        r.chunks,
        r.new_chunks,
        HumanBytes(r.bytes_sent),
        r.seconds
    )
}

/// One line about a pull.
pub(crate) fn pull_line(r: &PullReport, to: &str) -> String {
    let resolved = if r.resolved_key == r.key.as_str() {
        String::new()
    } else {
        format!(" (resolved to {})", r.resolved_key)
    };
    format!(
        "pulled {} {}{resolved} blob {} ({}, {:.2}s) to {to}",
        r.ns,
        r.key,
        r.blob,
        HumanBytes(r.bytes),
        r.seconds
    )
}

/// One line about a warm-up.
pub(crate) fn warm_line(r: &WarmReport) -> String {
    let short = if r.hot_chunks < r.chunks {
        " (the rest does not fit the server's hot budget)"
    } else {
        ""
    };
    format!(
        "warmed {} {}: promoted {} chunks ({}); {} of {} chunks in hot{short} ({:.2}s)",
        r.ns,
        r.key,
        r.promoted_chunks,
        HumanBytes(r.promoted_bytes),
        r.hot_chunks,
        r.chunks,
        r.seconds
    )
}

/// `ls`: one tab-separated line per ref: key, blob, bytes, created, expires (`-` for never).
pub(crate) fn ls_lines(list: &RefList) -> Vec<String> {
    list.refs
        .iter()
        .map(|r| {
            format!(
                "{}\t{}\t{}\t{}\t{}",
                r.key,
                r.blob,
                r.size,
                rfc3339(r.created_at),
                r.expires_at.map_or_else(|| "-".to_owned(), rfc3339)
            )
        })
        .collect()
}

/// `stat`: a small table.
pub(crate) fn stat_lines(stats: &Stats) -> Vec<String> {
    let mut lines = vec![format!(
        "{:<6} {:>12} {:>12} {:>12}",
        "tier", "chunks", "stored", "hits"
    )];
    for t in &stats.tiers {
        lines.push(format!(
            "{:<6} {:>12} {:>12} {:>12}",
            t.name,
            t.chunks,
            HumanBytes(t.stored_bytes).to_string(),
            t.hits
        ));
    }
    lines.push(format!(
        "logical {} in {} refs; cold queue {} chunks",
        HumanBytes(stats.logical_bytes),
        stats.refs,
        stats.cold_queue
    ));
    let m = &stats.movement;
    let evicted: Vec<String> = m
        .evicted
        .iter()
        .map(|e| format!("{} {} ({})", e.tier, e.chunks, HumanBytes(e.bytes)))
        .collect();
    let evicted = if evicted.is_empty() {
        "none".to_owned()
    } else {
        evicted.join(", ")
    };
    lines.push(format!(
        "since start: {} demoted, evicted {evicted}, {} promoted, {} not admitted, {} eviction \
         passes; {} cold packs to recompress",
        m.demoted, m.promoted, m.not_admitted, m.passes, stats.cold_recompress
    ));
    lines
}

/// The summary of a GC.
pub(crate) fn gc_lines(r: &GcReport) -> Vec<String> {
    let scope = r.tenant.as_deref().unwrap_or("every tenant");
    let (title, verb) = if r.dry_run {
        ("gc (dry run, nothing deleted)", "would sweep")
    } else {
        ("gc", "swept")
    };
    let mut lines = vec![format!(
        "{title} of {scope} with a grace of {}: {} live refs, {} live chunks; {verb} {} chunks \
         ({}) and {} manifests; {} expired refs; compacted {} packs ({} back); {} cold objects \
         deleted; {} unreferenced chunks younger than the grace kept ({:.2}s)",
        humantime::format_duration(std::time::Duration::from_secs_f64(r.grace_seconds)),
        r.live_refs,
        r.live_chunks,
        r.swept_chunks,
        HumanBytes(r.swept_bytes),
        r.swept_manifests,
        r.expired_refs,
        r.compacted_packs,
        HumanBytes(r.compacted_bytes),
        r.deleted_objects,
        r.kept_young_chunks,
        r.seconds
    )];
    for o in &r.retention {
        lines.push(format!(
            "  retention {:?} ({}): {} refs deleted",
            o.prefix, o.policy, o.deleted
        ));
    }
    lines
}

/// The summary of an fsck, one line per problem after it.
pub(crate) fn fsck_lines(r: &FsckReport) -> Vec<String> {
    let mut lines = vec![format!(
        "fsck{}: checked {} chunks and {} manifests: {} missing, {} corrupt, {} repaired, {} \
         garbage ({:.2}s)",
        if r.repair { " --repair" } else { "" },
        r.checked_chunks,
        r.checked_manifests,
        r.missing,
        r.corrupt,
        r.repaired,
        r.garbage,
        r.seconds
    )];
    for p in &r.problems {
        let refs = if p.refs.is_empty() {
            String::new()
        } else {
            format!(" (refs: {})", p.refs.join(", "))
        };
        let fixed = if p.repaired { " [repaired]" } else { "" };
        lines.push(format!("  {}{refs}{fixed}", p.what));
    }
    if r.problems_left_off > 0 {
        lines.push(format!(
            "  … and {} more problems (see the server log)",
            r.problems_left_off
        ));
    }
    lines
}

/// Writes lines to stdout.
///
/// A reader that stopped reading (`scipcache doc … | head`) ends the output quietly: the
/// command's work is done, and what was printed reached the reader.
pub(crate) fn print_lines<S: AsRef<str>>(lines: &[S]) -> Result<()> {
    let mut out = std::io::stdout().lock();
    let written = lines
        .iter()
        .try_for_each(|line| writeln!(out, "{}", line.as_ref()))
        .and_then(|()| out.flush());
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(|e| Error::io("cannot write to stdout", e)),
    }
}

/// Writes one JSON object on one line of stdout.
pub(crate) fn print_json<T: Serialize>(value: &T) -> Result<()> {
    let text = serde_json::to_string(value)
        .map_err(|e| Error::Internal(format!("cannot render JSON: {e}")))?;
    print_lines(&[text])
}

/// The contract's error line: `<status in words>: <message>`, on one line and of bounded
/// length (a FAILED_PRECONDITION may list thousands of chunk ids).
pub(crate) fn error_line(e: &Error) -> String {
    const MAX_MESSAGE: usize = 600;
    let message: String = e
        .to_string()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    let message = match message.char_indices().nth(MAX_MESSAGE) {
        Some((cut, _)) => format!("{}…", &message[..cut]),
        None => message,
    };
    format!("{}: {message}", e.code_words())
}

/// A SCIP range as `line:start-end` or `line:start-line:end` (lines and columns from 0, as in
/// SCIP).
fn range_text(r: &[i32]) -> String {
    match r {
        [line, start, end] => format!("{line}:{start}-{end}"),
        [l0, c0, l1, c1] => format!("{l0}:{c0}-{l1}:{c1}"),
        other => format!("{other:?}"),
    }
}

/// `doc`: a header, then one line per occurrence (range, roles, symbol).
pub(crate) fn doc_lines(found: &Document, doc: &scip_json::Document) -> Vec<String> {
    let s = &found.summary;
    let mut lines = vec![format!(
        "{path} ({language}) in {key}: {occ} occurrences, {sym} symbols, {size}",
        path = s.path,
        language = if s.language.is_empty() {
            "no language"
        } else {
            &s.language
        },
        key = found.source.key,
        occ = s.occurrences,
        sym = s.symbols,
        size = HumanBytes(s.size),
    )];
    for o in &doc.occurrences {
        let role = if o.symbol_roles & 1 != 0 {
            "def"
        } else {
            "ref"
        };
        lines.push(format!(
            "  {:<14} {role} {}",
            range_text(&o.range),
            o.symbol
        ));
    }
    lines
}

/// `symbol`: its definitions, then each referencing document with its ranges.
pub(crate) fn symbol_lines(report: &SymbolReport) -> Vec<String> {
    let mut lines = vec![report.symbol.clone()];
    if report.definition.is_empty() {
        lines.push("  defined outside this index".into());
    }
    for d in &report.definition {
        lines.push(format!("  defined at {}:{}", d.path, range_text(&d.range)));
    }
    let count: usize = report.references.iter().map(|r| r.ranges.len()).sum();
    lines.push(format!(
        "  {count} references in {} documents",
        report.references.len()
    ));
    for r in &report.references {
        let ranges: Vec<String> = r.ranges.iter().map(|r| range_text(r)).collect();
        lines.push(format!("  {} {}", r.path, ranges.join(" ")));
    }
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use scipcache_client::{EvictedCopies, TierStats};

    fn summary(expires: Option<i64>) -> Result<RefSummary> {
        let at = |s: i64| {
            OffsetDateTime::from_unix_timestamp(s).map_err(|e| Error::Internal(e.to_string()))
        };
        Ok(RefSummary {
            namespace: "acme/web/app".into(),
            key: "commit/abc".into(),
            blob: BlobId::of(b""),
            size: 42,
            chunks: 1,
            manifest: None,
            created_at: at(1_700_000_000)?,
            expires_at: expires.map(at).transpose()?,
            labels: BTreeMap::new(),
        })
    }

    #[test]
    fn ls_json_has_contract_fields_with_rfc3339_times_and_null_expiry()
    -> std::result::Result<(), Box<dyn std::error::Error>> {
        let list = RefList {
            refs: vec![summary(None)?, summary(Some(1_800_000_000))?],
            truncated: false,
        };
        let json = serde_json::to_value(LsJson::new("acme/web/app", "", &list))?;
        let first = &json["refs"][0];
        assert_eq!(first["key"], "commit/abc");
        assert_eq!(first["blob"], BlobId::of(b"").to_string());
        assert_eq!(first["bytes"], 42);
        assert_eq!(first["created_at"], "2023-11-14T22:13:20Z");
        assert!(first["expires_at"].is_null());
        assert_eq!(json["refs"][1]["expires_at"], "2027-01-15T08:00:00Z");
        Ok(())
    }

    #[test]
    fn stat_json_has_contract_fields() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let stats = Stats {
            tiers: vec![
                TierStats {
                    name: "hot".into(),
                    chunks: 3,
                    stored_bytes: 100,
                    hits: 9,
                },
                TierStats {
                    name: "cold".into(),
                    chunks: 1,
                    stored_bytes: 50,
                    hits: 0,
                },
            ],
            logical_bytes: 1000,
            refs: 2,
            cold_queue: 0,
            cold_recompress: 1,
            movement: Movement {
                demoted: 4,
                evicted: vec![EvictedCopies {
                    tier: "hot".into(),
                    chunks: 3,
                    bytes: 300,
                }],
                promoted: 2,
                not_admitted: 1,
                passes: 1,
            },
        };
        let json = serde_json::to_value(StatJson::new(&stats))?;
        assert_eq!(json["tiers"][0]["name"], "hot");
        assert_eq!(json["tiers"][0]["chunks"], 3);
        assert_eq!(json["tiers"][0]["stored_bytes"], 100);
        assert_eq!(json["tiers"][0]["hits"], 9);
        assert_eq!(json["logical_bytes"], 1000);
        assert_eq!(json["stored_bytes"], 150);
        assert_eq!(json["cold_queue"], 0);
        assert_eq!(json["cold_recompress"], 1);
        assert_eq!(json["movement"]["demoted"], 4);
        assert_eq!(json["movement"]["evicted"][0]["tier"], "hot");
        assert_eq!(json["movement"]["evicted"][0]["bytes"], 300);
        assert_eq!(json["movement"]["passes"], 1);
        let lines = stat_lines(&stats);
        assert_eq!(lines.len(), 5);
        assert!(lines[4].contains("evicted hot 3 (300 B)"), "{}", lines[4]);
        Ok(())
    }

    #[test]
    fn a_warm_line_says_what_was_promoted_and_what_did_not_fit()
    -> std::result::Result<(), Box<dyn std::error::Error>> {
        let mut report = WarmReport {
            ns: "acme/web/app".parse()?,
            key: "branch/main".parse()?,
            chunks: 10,
            hot_chunks: 10,
            promoted_chunks: 4,
            promoted_bytes: 2048,
            seconds: 0.5,
        };
        let line = warm_line(&report);
        assert!(
            line.starts_with("warmed acme/web/app branch/main: promoted 4 chunks (2.00 KiB)"),
            "{line}"
        );
        assert!(line.contains("10 of 10 chunks in hot"), "{line}");
        assert!(!line.contains("budget"), "{line}");
        report.hot_chunks = 7;
        assert!(warm_line(&report).contains("hot budget"));
        Ok(())
    }

    #[test]
    fn rm_json_has_contract_fields() -> std::result::Result<(), Box<dyn std::error::Error>> {
        let json = serde_json::to_value(RmJson {
            ns: "acme/web/app",
            key: "commit/abc",
            deleted: true,
        })?;
        assert_eq!(
            json,
            serde_json::json!({"ns": "acme/web/app", "key": "commit/abc", "deleted": true})
        );
        Ok(())
    }

    #[test]
    fn ls_lines_are_tab_separated_with_a_dash_for_no_expiry() -> Result<()> {
        let list = RefList {
            refs: vec![summary(None)?],
            truncated: false,
        };
        let lines = ls_lines(&list);
        assert_eq!(lines.len(), 1);
        let fields: Vec<&str> = lines[0].split('\t').collect();
        assert_eq!(fields.len(), 5);
        assert_eq!(fields[0], "commit/abc");
        assert_eq!(fields[4], "-");
        Ok(())
    }

    #[test]
    fn error_lines_are_single_bounded_lines_in_contract_form() {
        let e = Error::Status(tonic::Status::permission_denied(
            "token has no read access to acme/web/app",
        ));
        assert_eq!(
            error_line(&e),
            "permission denied: token has no read access to acme/web/app"
        );
        let long = Error::Status(tonic::Status::failed_precondition(format!(
            "missing chunks:\n{}",
            "ab".repeat(5000)
        )));
        let line = error_line(&long);
        assert!(!line.contains('\n'));
        assert!(line.starts_with("failed precondition: missing chunks: abab"));
        assert!(line.chars().count() < 700);
    }
}
