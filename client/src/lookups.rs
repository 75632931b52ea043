//! Lookups for LSP gateways and IDE plugins: one SCIP document by path, documents by path
//! prefix, where a symbol is defined and referenced, symbols by prefix (`Lookups/*`).
//!
//! Each answers from the server's tables of the blob under a ref, reading only the chunks that
//! hold the answer. Listings and a symbol's references come in pages; [`Client::symbol`]
//! follows the pages to the end. A blob that is not a SCIP index (or was pushed before the
//! server built tables) answers `FAILED_PRECONDITION`; a lookup that arrives while the
//! server is still indexing the blob answers `UNAVAILABLE` and is retried like every
//! idempotent call.

use bytes::Bytes;
use scipcache_proto::pb;
use scipcache_tiers::names::{KeyPrefix, Namespace, RefKey};
use serde::Serialize;

use crate::connect::Client;
use crate::error::{Error, Result};
use crate::refs::RefSummary;

/// The ref a lookup reads: a key, and prefixes to fall back to when it is absent (as in a
/// pull).
#[derive(Clone, Copy, Debug)]
pub struct LookupRef<'a> {
    /// The namespace.
    pub ns: &'a Namespace,
    /// The key.
    pub key: &'a RefKey,
    /// Prefixes tried in order when `key` is absent.
    pub fallbacks: &'a [KeyPrefix],
}

impl LookupRef<'_> {
    fn target(&self) -> Option<pb::LookupTarget> {
        Some(pb::LookupTarget {
            namespace: self.ns.to_string(),
            key: self.key.to_string(),
            fallback_prefixes: self
                .fallbacks
                .iter()
                .map(|p| p.as_str().to_owned())
                .collect(),
        })
    }
}

/// What the tables say of one document.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DocumentSummary {
    /// Its `relative_path`.
    pub path: String,
    /// Its `language` (empty when the indexer left it out).
    pub language: String,
    /// Occurrences in it.
    pub occurrences: u32,
    /// `SymbolInformation` messages in it.
    pub symbols: u32,
    /// Bytes of its `scip.Document` message.
    pub size: u64,
    /// Where those bytes start in the blob.
    pub offset: u64,
}

impl From<pb::DocumentSummary> for DocumentSummary {
    fn from(s: pb::DocumentSummary) -> Self {
        Self {
            path: s.path,
            language: s.language,
            occurrences: s.occurrences,
            symbols: s.symbols,
            size: s.size,
            offset: s.offset,
        }
    }
}

/// One document: the ref it came from, its summary and its `scip.Document` message bytes
/// (with the symbols' real versions).
#[derive(Clone, Debug)]
pub struct Document {
    /// The ref that was read (after a fallback, the one resolved).
    pub source: RefSummary,
    /// What the tables say of it.
    pub summary: DocumentSummary,
    /// The `scip.Document` message.
    pub bytes: Bytes,
}

/// A page of a listing.
#[derive(Clone, Debug)]
pub struct Page<T> {
    /// The ref that was read.
    pub source: RefSummary,
    /// The entries.
    pub items: Vec<T>,
    /// Pass it back for the next page; `None` after the last.
    pub next: Option<String>,
}

/// A SCIP range: `[line, start, end]` or `[start_line, start, end_line, end]`.
pub type Range = Vec<i32>;

/// Where a symbol is defined (the contract's `definition` entries).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Definition {
    /// The document's path.
    pub path: String,
    /// The definition's range.
    pub range: Range,
}

/// A document's references to a symbol (definitions not repeated).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct References {
    /// The document's path.
    pub path: String,
    /// The occurrences' ranges, in document order.
    pub ranges: Vec<Range>,
}

/// A symbol's definitions and one page of its references.
#[derive(Clone, Debug)]
pub struct SymbolPage {
    /// The ref that was read.
    pub source: RefSummary,
    /// The symbol (with its real version).
    pub symbol: String,
    /// Its definitions (on every page).
    pub definitions: Vec<Definition>,
    /// This page's referencing documents.
    pub references: Vec<References>,
    /// Documents that reference it, over all pages.
    pub referencing_documents: u64,
    /// Pass it back for the next page; `None` after the last.
    pub next: Option<String>,
}

/// A symbol's definitions and all its references (`scipcache symbol --json`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SymbolReport {
    /// The symbol.
    pub symbol: String,
    /// Where it is defined.
    pub definition: Vec<Definition>,
    /// Where it is referenced, by document.
    pub references: Vec<References>,
}

fn source(info: Option<pb::RefInfo>, call: &str) -> Result<RefSummary> {
    info.ok_or_else(|| Error::Protocol(format!("{call} answered without the ref it read")))?
        .try_into()
}

fn next_token(token: String) -> Option<String> {
    (!token.is_empty()).then_some(token)
}

fn range(r: Option<pb::Range>) -> Range {
    r.map(|r| r.range).unwrap_or_default()
}

impl Client {
    /// One document of the SCIP index under `at`, by its `relative_path`: `Lookups/Document`,
    /// which needs read access. `NOT_FOUND` when the index has no such document.
    pub async fn document(&self, at: LookupRef<'_>, path: &str) -> Result<Document> {
        let req = pb::DocumentRequest {
            target: at.target(),
            path: path.to_owned(),
        };
        let answer = self
            .unary(
                "Lookups/Document",
                |c, r| async move { c.lookups().document(r).await },
                req,
            )
            .await?;
        let summary = answer
            .summary
            .ok_or_else(|| Error::Protocol("Lookups/Document answered without a summary".into()))?;
        Ok(Document {
            source: source(answer.r#ref, "Lookups/Document")?,
            summary: summary.into(),
            bytes: answer.document,
        })
    }

    /// Documents whose path starts with `prefix`, in path order: one page of at most
    /// `page_size` (0: the server's default), from `page_token` (`None` for the first).
    pub async fn documents(
        &self,
        at: LookupRef<'_>,
        prefix: &str,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<Page<DocumentSummary>> {
        let req = pb::ListDocumentsRequest {
            target: at.target(),
            prefix: prefix.to_owned(),
            page_size,
            page_token: page_token.unwrap_or_default().to_owned(),
        };
        let answer = self
            .unary(
                "Lookups/Documents",
                |c, r| async move { c.lookups().documents(r).await },
                req,
            )
            .await?;
        Ok(Page {
            source: source(answer.r#ref, "Lookups/Documents")?,
            items: answer.documents.into_iter().map(Into::into).collect(),
            next: next_token(answer.next_page_token),
        })
    }

    /// A symbol's definitions and one page of the documents that reference it, at most
    /// `page_size` documents (0: the server's default) from `page_token`. `NOT_FOUND` when
    /// no document of the index names the symbol.
    pub async fn symbol_page(
        &self,
        at: LookupRef<'_>,
        symbol: &str,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<SymbolPage> {
        let req = pb::SymbolRequest {
            target: at.target(),
            symbol: symbol.to_owned(),
            page_size,
            page_token: page_token.unwrap_or_default().to_owned(),
        };
        let answer = self
            .unary(
                "Lookups/Symbol",
                |c, r| async move { c.lookups().symbol(r).await },
                req,
            )
            .await?;
        Ok(SymbolPage {
            source: source(answer.r#ref, "Lookups/Symbol")?,
            symbol: answer.symbol,
            definitions: answer
                .definitions
                .into_iter()
                .map(|d| Definition {
                    path: d.path,
                    range: range(d.range),
                })
                .collect(),
            references: answer
                .references
                .into_iter()
                .map(|r| References {
                    path: r.path,
                    ranges: r.ranges.into_iter().map(|r| r.range).collect(),
                })
                .collect(),
            referencing_documents: answer.referencing_documents,
            next: next_token(answer.next_page_token),
        })
    }

    /// A symbol's definitions and all its references, following the pages. Every page is
    /// read from the ref the first one resolved, so a ref moved meanwhile cannot mix two
    /// indexes into one answer.
    pub async fn symbol(&self, at: LookupRef<'_>, symbol: &str) -> Result<SymbolReport> {
        let first = self.symbol_page(at, symbol, 0, None).await?;
        let resolved: RefKey = first.source.key.parse()?;
        let pinned = LookupRef {
            ns: at.ns,
            key: &resolved,
            fallbacks: &[],
        };
        let mut report = SymbolReport {
            symbol: first.symbol,
            definition: first.definitions,
            references: first.references,
        };
        let mut next = first.next;
        while let Some(token) = next {
            let page = self.symbol_page(pinned, symbol, 0, Some(&token)).await?;
            if page.source.blob != first.source.blob {
                return Err(Error::Protocol(format!(
                    "the ref {} moved to another blob while its references were being read; \
                     run the lookup again",
                    page.source.key
                )));
            }
            report.references.extend(page.references);
            next = page.next;
        }
        Ok(report)
    }

    /// Global symbols that start with `prefix`, in byte order: one page of at most
    /// `page_size` (0: the server's default) from `page_token`.
    pub async fn symbols(
        &self,
        at: LookupRef<'_>,
        prefix: &str,
        page_size: u32,
        page_token: Option<&str>,
    ) -> Result<Page<String>> {
        let req = pb::ListSymbolsRequest {
            target: at.target(),
            prefix: prefix.to_owned(),
            page_size,
            page_token: page_token.unwrap_or_default().to_owned(),
        };
        let answer = self
            .unary(
                "Lookups/Symbols",
                |c, r| async move { c.lookups().symbols(r).await },
                req,
            )
            .await?;
        Ok(Page {
            source: source(answer.r#ref, "Lookups/Symbols")?,
            items: answer.symbols,
            next: next_token(answer.next_page_token),
        })
    }
}
