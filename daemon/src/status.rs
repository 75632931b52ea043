//! The one place where errors become gRPC statuses: the engine's ([`from_store`],
//! [`from_upload`]) and the daemon's own refusals (`From<crate::error::Error> for Status`,
//! so that `?` converts them in the services).
//!
//! Messages say what happened and what to do. Internal failures (LMDB, object store, local
//! I/O, on-disk format, locking) become `INTERNAL` with a generic message; their detail goes
//! to the log with `tracing::error!`, never to the caller.

use scipcache_proto::convert::encode_missing_chunks;
use scipcache_tiers::Error;
use scipcache_tiers::ids::ChunkId;
use scipcache_tiers::names::{Namespace, RefKey};
use tonic::Status;

pub use scipcache_proto::MAX_LISTED_MISSING;

/// Maps a refusal of the daemon (or an engine error it carries).
impl From<crate::error::Error> for Status {
    fn from(err: crate::error::Error) -> Self {
        use crate::error::Error as E;
        match err {
            E::Store(err) => from_store(err),
            E::BadRequest(_) => Status::invalid_argument(err.to_string()),
            E::OffsetPastEnd { .. } => Status::out_of_range(err.to_string()),
            E::ReadTooLarge { .. } => Status::resource_exhausted(err.to_string()),
            E::NoRef { .. } | E::ChunkNotInBlob { .. } => Status::not_found(err.to_string()),
            E::Unauthenticated(_) => Status::unauthenticated(err.to_string()),
            E::RequestMemoryFull { .. } | E::RequestTooLarge { .. } => {
                Status::resource_exhausted(err.to_string())
            }
            E::Denied { .. } | E::DeniedTenant { .. } | E::DeniedEveryTenant => {
                Status::permission_denied(err.to_string())
            }
            other => internal(&other),
        }
    }
}

/// Maps an engine error of any call.
pub fn from_store(err: Error) -> Status {
    match err {
        Error::InvalidArgument(msg) => Status::invalid_argument(msg),
        Error::NotFound(msg) => Status::not_found(msg),
        Error::Corrupt { id, actual } => {
            // Outside uploads, a corrupt chunk reaching here means every copy failed.
            tracing::error!(chunk = %id, actual = %actual, "corrupt chunk reached a caller");
            Status::data_loss(format!(
                "chunk {id} failed verification; the server cannot serve it. Push the blob \
                 again to repair it"
            ))
        }
        Error::DataLoss { id, detail } => {
            tracing::error!(chunk = %id, detail = %detail, "data loss");
            Status::data_loss(format!(
                "chunk {id} failed verification in every tier that holds it; push the blob \
                 again to repair it"
            ))
        }
        Error::MetadataLoss(msg) => {
            tracing::error!(detail = %msg, "metadata loss");
            Status::data_loss(msg)
        }
        err @ Error::IndexDamaged { .. } => {
            tracing::error!(error = %err, "the index is damaged");
            Status::data_loss(err.to_string())
        }
        Error::MissingChunks { listed, total } => missing_chunks(&listed, total),
        Error::Conflict(msg) => Status::aborted(format!("{msg}; retry")),
        Error::Full(msg) => {
            tracing::error!(detail = %msg, "storage full");
            Status::resource_exhausted(format!(
                "the server's storage is full ({msg}); ask its operator to free space, or retry \
                 later"
            ))
        }
        Error::DiskFull {
            path,
            available,
            detail,
        } => {
            tracing::error!(path = %path, available, detail = %detail, "disk full");
            Status::resource_exhausted(disk_full_message(&path, available))
        }
        Error::Unavailable(msg) => Status::unavailable(format!("{msg}; retry later")),
        Error::ShuttingDown => {
            Status::unavailable("the server is shutting down; retry against it once it is back")
        }
        err @ Error::GcRunning { .. } => Status::failed_precondition(err.to_string()),
        Error::NoLookups(msg) => Status::failed_precondition(msg),
        err @ Error::Cancelled(_) => Status::cancelled(err.to_string()),
        err @ Error::QuotaExceeded { .. } => Status::resource_exhausted(err.to_string()),
        other => internal(&other),
    }
}

/// Maps an engine error met while serving the ref `ns`/`key`: data loss names the ref.
pub fn from_store_for_ref(err: Error, ns: &Namespace, key: &RefKey) -> Status {
    let status = from_store(err);
    let named = format!("ref {ns} {key}");
    if status.code() == tonic::Code::DataLoss && !status.message().starts_with(&named) {
        return Status::data_loss(format!("{named}: {}", status.message()));
    }
    status
}

/// What a caller reads when the server's disk is full: that it is, where, and what to do.
/// Not `UNAVAILABLE`: retrying soon does not help until someone makes room.
fn disk_full_message(path: &str, available: u64) -> String {
    format!(
        "the server's disk is full: the filesystem holding {path} has {} free. Its operator \
         must free space there or give that filesystem more room; writes work again as soon \
         as there is room (reads still work)",
        scipcache_tiers::error::human_bytes(available)
    )
}

/// Maps an engine error of `Chunks/Upload`: a frame whose bytes do not match its id is the
/// caller's mistake there.
pub fn from_upload(err: Error) -> Status {
    match err {
        Error::Corrupt { id, .. } => Status::invalid_argument(format!(
            "chunk {id} does not match its bytes (their BLAKE3 differs); nothing of that \
             batch was stored. Re-read the file and upload again"
        )),
        Error::Format(msg) => Status::invalid_argument(format!("bad chunk frame: {msg}")),
        other => from_store(other),
    }
}

/// `FAILED_PRECONDITION` listing the first [`MAX_LISTED_MISSING`] of `listed` and `total`, the
/// count of every missing chunk: in hex in the message, for people, and as an encoded
/// `MissingChunks` in the binary metadata entry [`scipcache_proto::MISSING_CHUNKS_METADATA`],
/// for clients to upload them (or, when not all are listed, the ones FindMissing names) and
/// commit again.
pub fn missing_chunks(listed: &[ChunkId], total: u64) -> Status {
    let listed = &listed[..listed.len().min(MAX_LISTED_MISSING)];
    let total = total.max(listed.len() as u64);
    let hex: Vec<String> = listed.iter().map(ChunkId::to_hex).collect();
    let more = if total > listed.len() as u64 {
        format!(" (first {} listed)", listed.len())
    } else {
        String::new()
    };
    let (noun, verb) = if total == 1 {
        ("chunk", "is")
    } else {
        ("chunks", "are")
    };
    let mut metadata = tonic::metadata::MetadataMap::new();
    metadata.insert_bin(
        scipcache_proto::MISSING_CHUNKS_METADATA,
        tonic::metadata::MetadataValue::from_bytes(&encode_missing_chunks(listed, total)),
    );
    Status::with_metadata(
        tonic::Code::FailedPrecondition,
        format!(
            "{total} {noun} {verb} missing{more}; upload them with Chunks/Upload and commit again: {}",
            hex.join(",")
        ),
        metadata,
    )
}

/// `INTERNAL` with a generic message; the detail is logged.
pub fn internal(err: &dyn std::error::Error) -> Status {
    tracing::error!(error = %err, source = ?err.source().map(ToString::to_string), "internal error");
    Status::internal("internal server error; the server log has the details")
}

#[cfg(test)]
mod tests {
    use tonic::Code;

    use super::*;

    #[test]
    fn each_semantic_error_gets_its_code() {
        let id = ChunkId::of(b"x");
        let cases: Vec<(Error, Code)> = vec![
            (Error::InvalidArgument("bad".into()), Code::InvalidArgument),
            (Error::NotFound("gone".into()), Code::NotFound),
            (
                Error::DataLoss {
                    id,
                    detail: "all".into(),
                },
                Code::DataLoss,
            ),
            (
                Error::MetadataLoss("manifest m is stored neither here nor there".into()),
                Code::DataLoss,
            ),
            (
                Error::MissingChunks {
                    listed: vec![id],
                    total: 1,
                },
                Code::FailedPrecondition,
            ),
            (Error::Full("disk".into()), Code::ResourceExhausted),
            (
                Error::DiskFull {
                    path: "/srv/scipcache/meta".into(),
                    available: 0,
                    detail: "lmdb: Input/output error (os error 5)".into(),
                },
                Code::ResourceExhausted,
            ),
            (Error::Unavailable("s3 down".into()), Code::Unavailable),
            (Error::ShuttingDown, Code::Unavailable),
            (Error::GcRunning { started_s: 3 }, Code::FailedPrecondition),
            (Error::Cancelled("gc".into()), Code::Cancelled),
            (
                Error::QuotaExceeded {
                    tenant: "acme".into(),
                    quota: 1 << 30,
                    usage: 1 << 30,
                    adding: 4096,
                },
                Code::ResourceExhausted,
            ),
            (Error::Locked { path: "/d".into() }, Code::Internal),
            (Error::Format("bad record".into()), Code::Internal),
            (
                Error::io("read pack", std::io::Error::other("EIO")),
                Code::Internal,
            ),
        ];
        for (err, code) in cases {
            let text = err.to_string();
            assert_eq!(from_store(err).code(), code, "{text}");
        }
    }

    #[test]
    fn each_refusal_of_the_daemon_gets_its_code_and_its_text()
    -> Result<(), Box<dyn std::error::Error>> {
        use crate::auth::{AuthError, Right};
        let ns: scipcache_tiers::names::Namespace = "acme/web/app".parse()?;
        let key: scipcache_tiers::names::RefKey = "secret-branch".parse()?;
        let cases: Vec<(crate::error::Error, Code, &str)> = vec![
            (
                crate::error::Error::BadRequest("empty commit: send a header first".into()),
                Code::InvalidArgument,
                "empty commit: send a header first",
            ),
            (
                crate::error::Error::OffsetPastEnd { offset: 9, size: 4 },
                Code::OutOfRange,
                "offset 9 is past the end of the 4-byte blob",
            ),
            (
                crate::error::Error::NoRef {
                    ns: ns.clone(),
                    key: key.clone(),
                    fallbacks: true,
                },
                Code::NotFound,
                "no ref secret-branch in acme/web/app, and none under the fallback prefixes",
            ),
            (
                crate::error::Error::Unauthenticated(AuthError::Expired),
                Code::Unauthenticated,
                "token expired; mint a new one",
            ),
            (
                crate::error::Error::Denied {
                    ns: ns.clone(),
                    right: Right::Write,
                },
                Code::PermissionDenied,
                "token has no write access to acme/web/app",
            ),
            (
                crate::error::Error::DeniedTenant {
                    tenant: ns.tenant().clone(),
                    right: Right::Admin,
                },
                Code::PermissionDenied,
                "token has no admin access to tenant acme (that needs the scope '*:admin' for \
                 tenant acme)",
            ),
            (
                crate::error::Error::DeniedEveryTenant,
                Code::PermissionDenied,
                "token has no admin access to every tenant (that needs tenant * with the scope \
                 '*:admin')",
            ),
            (
                crate::error::Error::RequestMemoryFull {
                    what: "an upload message".into(),
                    bytes: 30,
                    budget: 100,
                    waited: std::time::Duration::from_secs(30),
                },
                Code::ResourceExhausted,
                "the daemon's request-memory budget (100 bytes) is full: an upload message \
                 needing 30 bytes waited 30s for room; retry later, or ask the operator to raise \
                 --request-memory",
            ),
            (
                crate::error::Error::RequestTooLarge {
                    what: "a commit of 9 chunks".into(),
                    bytes: 756,
                    budget: 100,
                },
                Code::ResourceExhausted,
                "a commit of 9 chunks needs 756 bytes of request memory, larger than the \
                 daemon's whole request-memory budget (100 bytes); send a smaller one, or ask \
                 the operator to raise --request-memory",
            ),
            (
                crate::error::Error::Store(Error::NotFound("gone".into())),
                Code::NotFound,
                "gone",
            ),
        ];
        for (err, code, message) in cases {
            let status = Status::from(err);
            assert_eq!((status.code(), status.message()), (code, message));
        }
        let internal = Status::from(crate::error::Error::Config("/secret/config".into()));
        assert_eq!(internal.code(), Code::Internal);
        assert!(!internal.message().contains("/secret"));
        Ok(())
    }

    #[test]
    fn internal_details_do_not_reach_the_caller() {
        let status = from_store(Error::io(
            "open /secret/path/pack-7",
            std::io::Error::other("EIO"),
        ));
        assert!(!status.message().contains("/secret"));
        assert!(status.message().contains("server log"));
    }

    #[test]
    fn a_full_disk_says_so_where_and_what_to_do_without_the_os_detail() {
        let status = from_store(Error::DiskFull {
            path: "/srv/scipcache/meta".into(),
            available: 12 << 10,
            detail: "lmdb: Input/output error (os error 5)".into(),
        });
        assert_eq!(status.code(), Code::ResourceExhausted);
        let msg = status.message();
        for part in [
            "disk is full",
            "/srv/scipcache/meta",
            "12.0 KiB free",
            "free space",
        ] {
            assert!(msg.contains(part), "{part:?} not in {msg:?}");
        }
        assert!(!msg.contains("os error"), "{msg}");
    }

    #[test]
    fn a_corrupt_upload_is_invalid_argument_naming_the_chunk() {
        let id = ChunkId::of(b"x");
        let status = from_upload(Error::Corrupt {
            id,
            actual: ChunkId::of(b"y").to_hex(),
        });
        assert_eq!(status.code(), Code::InvalidArgument);
        assert!(
            status
                .message()
                .contains(&format!("chunk {id} does not match its bytes"))
        );
        // Elsewhere corruption is data loss.
        let status = from_store(Error::Corrupt {
            id,
            actual: String::new(),
        });
        assert_eq!(status.code(), Code::DataLoss);
    }

    #[test]
    fn missing_chunks_lists_at_most_64_ids_and_the_total_in_message_and_metadata()
    -> Result<(), Box<dyn std::error::Error>> {
        let ids: Vec<ChunkId> = (0..100u32).map(|i| ChunkId::of(&i.to_le_bytes())).collect();
        let status = missing_chunks(&ids, 100);
        assert_eq!(status.code(), Code::FailedPrecondition);
        let msg = status.message();
        assert!(
            msg.starts_with("100 chunks are missing (first 64 listed)"),
            "{msg}"
        );
        assert!(msg.contains(&ids[63].to_hex()));
        assert!(!msg.contains(&ids[64].to_hex()));
        let listed = status
            .metadata()
            .get_bin(scipcache_proto::MISSING_CHUNKS_METADATA)
            .ok_or("no missing-chunks metadata")?
            .to_bytes()?;
        let listed = scipcache_proto::convert::decode_missing_chunks(&listed)?;
        assert_eq!(listed.listed, ids[..MAX_LISTED_MISSING]);
        assert_eq!(listed.total, 100);
        // A list cut by the engine keeps its total.
        let cut = missing_chunks(&ids[..4], 1000);
        assert!(
            cut.message()
                .starts_with("1000 chunks are missing (first 4 listed)"),
            "{}",
            cut.message()
        );
        let one = missing_chunks(&ids[..1], 1);
        assert!(
            one.message().starts_with("1 chunk is missing;"),
            "{}",
            one.message()
        );
        Ok(())
    }

    #[test]
    fn data_loss_met_serving_a_ref_names_the_ref_once() {
        let ns: Namespace = "acme/web/app".parse().expect("namespace");
        let key: RefKey = "commit/1".parse().expect("key");
        let lost = from_store_for_ref(Error::MetadataLoss("manifest m is lost".into()), &ns, &key);
        assert_eq!(lost.code(), Code::DataLoss);
        assert_eq!(
            lost.message(),
            "ref acme/web/app commit/1: manifest m is lost"
        );
        let named = from_store_for_ref(
            Error::MetadataLoss("ref acme/web/app commit/1 is damaged".into()),
            &ns,
            &key,
        );
        assert_eq!(named.message(), "ref acme/web/app commit/1 is damaged");
        let other = from_store_for_ref(Error::NotFound("gone".into()), &ns, &key);
        assert_eq!(other.code(), Code::NotFound);
    }
}
