//! What a push, a pull or a warm-up reports. Each serializes to the contract's `--json`
//! object.

use std::fmt::Display;

use scipcache_tiers::ids::BlobId;
use scipcache_tiers::names::{Namespace, RefKey};
use serde::Serialize;

/// The outcome of a push (`scipcache push --json` prints it).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PushReport {
    /// The namespace pushed into.
    #[serde(serialize_with = "as_text")]
    pub ns: Namespace,
    /// The ref set.
    #[serde(serialize_with = "as_text")]
    pub key: RefKey,
    /// BLAKE3 of the whole blob (what `b3sum` prints).
    pub blob: BlobId,
    /// Blob length.
    pub bytes: u64,
    /// Chunks in the blob, repeats included.
    pub chunks: u64,
    /// Chunks uploaded: those the server lacked, each once.
    pub new_chunks: u64,
    /// Every byte of every request message of the push as encoded on the wire: FindMissing
    /// ids, compressed chunk frames, the manifest.
    pub bytes_sent: u64,
    /// Wall-clock time of the push.
    pub seconds: f64,
}

/// The outcome of a pull (`scipcache pull -o FILE --json` prints it).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PullReport {
    /// The namespace pulled from.
    #[serde(serialize_with = "as_text")]
    pub ns: Namespace,
    /// The key asked for.
    #[serde(serialize_with = "as_text")]
    pub key: RefKey,
    /// The key actually read: `key`, or the newest ref under a fallback prefix.
    pub resolved_key: String,
    /// BLAKE3 of the blob, verified over the bytes received.
    pub blob: BlobId,
    /// Bytes written.
    pub bytes: u64,
    /// Wall-clock time of the pull.
    pub seconds: f64,
}

/// The outcome of a warm-up (`scipcache warm --json` prints it).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct WarmReport {
    /// The namespace.
    #[serde(serialize_with = "as_text")]
    pub ns: Namespace,
    /// The ref warmed.
    #[serde(serialize_with = "as_text")]
    pub key: RefKey,
    /// Distinct chunks of the ref's blob.
    pub chunks: u64,
    /// Of those, chunks in the hot tier after the warm-up (all of them unless the ref is
    /// larger than the server's hot budget allows).
    pub hot_chunks: u64,
    /// Chunks this warm-up promoted into the hot tier.
    pub promoted_chunks: u64,
    /// Raw (uncompressed) bytes of the chunks promoted.
    pub promoted_bytes: u64,
    /// Wall-clock time of the warm-up.
    pub seconds: f64,
}

fn as_text<T: Display, S: serde::Serializer>(value: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn push_report_has_the_contract_fields() -> Result<(), Box<dyn std::error::Error>> {
        let report = PushReport {
            ns: "acme/web/app".parse()?,
            key: "commit/abc".parse()?,
            blob: BlobId::of(b""),
            bytes: 10,
            chunks: 2,
            new_chunks: 1,
            bytes_sent: 90,
            seconds: 0.5,
        };
        let json = serde_json::to_value(&report)?;
        let expected = serde_json::json!({
            "ns": "acme/web/app",
            "key": "commit/abc",
            "blob": "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262",
            "bytes": 10,
            "chunks": 2,
            "new_chunks": 1,
            "bytes_sent": 90,
            "seconds": 0.5,
        });
        assert_eq!(json, expected);
        Ok(())
    }

    #[test]
    fn pull_report_has_the_contract_fields() -> Result<(), Box<dyn std::error::Error>> {
        let report = PullReport {
            ns: "acme/web/app".parse()?,
            key: "commit/abc".parse()?,
            resolved_key: "branch/main".into(),
            blob: BlobId::of(b""),
            bytes: 0,
            seconds: 1.0,
        };
        let json = serde_json::to_value(&report)?;
        let mut keys: Vec<&str> = json
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["blob", "bytes", "key", "ns", "resolved_key", "seconds"]
        );
        assert_eq!(json["resolved_key"], "branch/main");
        Ok(())
    }

    #[test]
    fn warm_report_has_the_contract_fields() -> Result<(), Box<dyn std::error::Error>> {
        let report = WarmReport {
            ns: "acme/web/app".parse()?,
            key: "branch/main".parse()?,
            chunks: 12,
            hot_chunks: 12,
            promoted_chunks: 5,
            promoted_bytes: 4096,
            seconds: 0.25,
        };
        let json = serde_json::to_value(&report)?;
        let expected = serde_json::json!({
            "ns": "acme/web/app",
            "key": "branch/main",
            "chunks": 12,
            "hot_chunks": 12,
            "promoted_chunks": 5,
            "promoted_bytes": 4096,
            "seconds": 0.25,
        });
        assert_eq!(json, expected);
        Ok(())
    }
}
