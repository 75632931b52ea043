//! `scipcache.v1.Lookups`: one document or one symbol of a SCIP index under a ref, answered
//! from the blob's tables (`scipcache_tiers::store::lookups`).

use scipcache_proto::pb;
use scipcache_proto::pb::lookups_server::Lookups;
use scipcache_tiers::names::{KeyPrefix, Namespace, RefKey};
use scipcache_tiers::scip::tables::{DocumentEntry, Range};
use scipcache_tiers::store::{Found, LookupSource};
use tonic::{Request, Response, Status};

use super::{Shared, no_ref, parse_key, parse_namespace, parse_prefixes, ref_info};
use crate::auth::{Right, interceptor};
use crate::error::Error;
use crate::status;

/// Entries per page when the request says 0.
pub const DEFAULT_PAGE: usize = 100;
/// Room a document response keeps for everything but the document under the message limit.
const RESPONSE_ROOM: usize = 64 << 10;

/// The Lookups service.
#[derive(Clone, Debug)]
pub struct LookupsService {
    shared: Shared,
}

impl LookupsService {
    /// A service over `shared`.
    pub fn new(shared: Shared) -> Self {
        Self { shared }
    }
}

/// A lookup's target, checked: the namespace the caller may read and the ref to resolve.
struct Target {
    ns: Namespace,
    key: RefKey,
    fallbacks: Vec<KeyPrefix>,
}

impl Target {
    /// What the store resolves: the ref, or the newest under the fallbacks.
    fn source(&self) -> LookupSource {
        LookupSource::Ref {
            ns: self.ns.clone(),
            key: self.key.clone(),
            fallbacks: self.fallbacks.clone(),
        }
    }

    /// The store's error as the status of a lookup on this ref.
    fn status(&self, err: scipcache_tiers::Error) -> Status {
        status::from_store_for_ref(err, &self.ns, &self.key)
    }

    /// The answer of a store lookup, with the ref it read; NOT_FOUND like a pull when no
    /// live ref matched.
    fn found<T>(
        &self,
        found: Result<Option<Found<T>>, scipcache_tiers::Error>,
    ) -> Result<(Resolved, T), Status> {
        let found = found.map_err(|e| self.status(e))?;
        let Some(Found {
            resolved: Some((key, record)),
            answer,
            ..
        }) = found
        else {
            return Err(no_ref(&self.ns, &self.key, &self.fallbacks).into());
        };
        let info = ref_info(&self.ns, &key, &record);
        Ok((Resolved { key, info }, answer))
    }
}

/// The ref a lookup read: its key (after a fallback, the one resolved) and its description.
struct Resolved {
    key: RefKey,
    info: pb::RefInfo,
}

impl LookupsService {
    /// Checks the caller's read right on the target's namespace and parses the rest: the
    /// refusals of a pull, before anything is read.
    fn target<T>(
        &self,
        req: &Request<T>,
        target: Option<&pb::LookupTarget>,
    ) -> Result<Target, Status> {
        let target = target
            .ok_or_else(|| Error::BadRequest("target (namespace and key) is required".into()))?;
        let ns = parse_namespace(&target.namespace)?;
        interceptor::require(req, &ns, Right::Read)?;
        let key = parse_key(&target.key)?;
        let fallbacks = parse_prefixes(&target.fallback_prefixes)?;
        Ok(Target { ns, key, fallbacks })
    }
}

fn page_size(n: u32) -> usize {
    match usize::try_from(n) {
        Ok(0) => DEFAULT_PAGE,
        Ok(n) => n.min(scipcache_tiers::store::MAX_PAGE),
        Err(_) => scipcache_tiers::store::MAX_PAGE,
    }
}

fn summary(path: String, d: &DocumentEntry) -> pb::DocumentSummary {
    pb::DocumentSummary {
        path,
        language: d.language.clone(),
        occurrences: d.occurrences,
        symbols: d.symbols,
        size: d.len,
        offset: d.offset,
    }
}

fn range(r: Range) -> pb::Range {
    pb::Range { range: r }
}

#[tonic::async_trait]
impl Lookups for LookupsService {
    async fn document(
        &self,
        req: Request<pb::DocumentRequest>,
    ) -> Result<Response<pb::DocumentResponse>, Status> {
        let t = self.target(&req, req.get_ref().target.as_ref())?;
        let path = &req.get_ref().path;
        let (r, found) = t.found(self.shared.store.lookup_document(&t.source(), path).await)?;
        let Some((entry, document)) = found else {
            return Err(Status::not_found(format!(
                "the SCIP index under {} {} has no document at {path:?}",
                t.ns, r.key
            )));
        };
        if document.len() > scipcache_proto::MAX_MESSAGE_BYTES - RESPONSE_ROOM {
            return Err(Status::resource_exhausted(format!(
                "document {path:?} is {} bytes, over the {} byte message limit; read it with \
                 Blobs.Read at offset {} length {}",
                entry.len,
                scipcache_proto::MAX_MESSAGE_BYTES,
                entry.offset,
                entry.len
            )));
        }
        Ok(Response::new(pb::DocumentResponse {
            r#ref: Some(r.info),
            summary: Some(summary(path.clone(), &entry)),
            document,
        }))
    }

    async fn documents(
        &self,
        req: Request<pb::ListDocumentsRequest>,
    ) -> Result<Response<pb::ListDocumentsResponse>, Status> {
        let t = self.target(&req, req.get_ref().target.as_ref())?;
        let q = req.get_ref();
        let (r, (docs, next)) = t.found(
            self.shared
                .store
                .lookup_documents(
                    &t.source(),
                    &q.prefix,
                    &q.page_token,
                    page_size(q.page_size),
                )
                .await,
        )?;
        Ok(Response::new(pb::ListDocumentsResponse {
            r#ref: Some(r.info),
            documents: docs.into_iter().map(|(p, d)| summary(p, &d)).collect(),
            next_page_token: next,
        }))
    }

    async fn symbol(
        &self,
        req: Request<pb::SymbolRequest>,
    ) -> Result<Response<pb::SymbolResponse>, Status> {
        let t = self.target(&req, req.get_ref().target.as_ref())?;
        let q = req.get_ref();
        let skip = if q.page_token.is_empty() {
            0
        } else {
            q.page_token.parse::<usize>().map_err(|_| {
                Error::BadRequest(format!(
                    "page_token {:?} is not one this server sent; start from an empty token",
                    q.page_token
                ))
            })?
        };
        let take = page_size(q.page_size);
        let (r, found) = t.found(
            self.shared
                .store
                .lookup_symbol(&t.source(), &q.symbol, skip, take)
                .await,
        )?;
        let Some((entry, referencing)) = found else {
            return Err(Status::not_found(format!(
                "no document of the SCIP index under {} {} names the symbol {:?}",
                t.ns, r.key, q.symbol
            )));
        };
        let next = if skip.saturating_add(take) < referencing {
            (skip + take).to_string()
        } else {
            String::new()
        };
        Ok(Response::new(pb::SymbolResponse {
            r#ref: Some(r.info),
            symbol: q.symbol.clone(),
            definitions: entry
                .definitions
                .into_iter()
                .map(|(path, r)| pb::Definition {
                    path,
                    range: Some(range(r)),
                })
                .collect(),
            references: entry
                .references
                .into_iter()
                .map(|(path, ranges)| pb::References {
                    path,
                    ranges: ranges.into_iter().map(range).collect(),
                })
                .collect(),
            referencing_documents: referencing as u64,
            next_page_token: next,
        }))
    }

    async fn symbols(
        &self,
        req: Request<pb::ListSymbolsRequest>,
    ) -> Result<Response<pb::ListSymbolsResponse>, Status> {
        let t = self.target(&req, req.get_ref().target.as_ref())?;
        let q = req.get_ref();
        let (r, (symbols, next)) = t.found(
            self.shared
                .store
                .lookup_symbols(
                    &t.source(),
                    &q.prefix,
                    &q.page_token,
                    page_size(q.page_size),
                )
                .await,
        )?;
        Ok(Response::new(pb::ListSymbolsResponse {
            r#ref: Some(r.info),
            symbols,
            next_page_token: next,
        }))
    }
}
