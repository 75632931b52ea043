//! A `scip.Document` message as JSON (`scipcache doc --json`): the fields of SCIP's
//! `scip.proto` that a reader of one document needs, with SCIP's names, decoded with prost.
//!
//! Unknown fields (a newer SCIP) are skipped, as protobuf does; `diagnostics` and
//! `signature_documentation` are left out of the JSON.

use prost::Message;
use serde::Serialize;

use crate::error::{Error, Result};

/// `scip.Document`.
#[derive(Clone, PartialEq, Message, Serialize)]
pub struct Document {
    /// `relative_path` (printed as `path`).
    #[prost(string, tag = "1")]
    #[serde(rename = "path")]
    pub relative_path: String,
    /// `language`.
    #[prost(string, tag = "4")]
    pub language: String,
    /// `occurrences`.
    #[prost(message, repeated, tag = "2")]
    pub occurrences: Vec<Occurrence>,
    /// `symbols`.
    #[prost(message, repeated, tag = "3")]
    pub symbols: Vec<SymbolInformation>,
    /// `text`, when the indexer kept the source.
    #[prost(string, tag = "5")]
    #[serde(skip_serializing_if = "String::is_empty")]
    pub text: String,
    /// `position_encoding` (the enum's number).
    #[prost(int32, tag = "6")]
    pub position_encoding: i32,
}

/// `scip.Occurrence`.
#[derive(Clone, PartialEq, Message, Serialize)]
pub struct Occurrence {
    /// `[line, start, end]` or `[start_line, start, end_line, end]`.
    #[prost(int32, repeated, tag = "1")]
    pub range: Vec<i32>,
    /// `symbol`.
    #[prost(string, tag = "2")]
    pub symbol: String,
    /// `symbol_roles` (a bit set: 1 definition, 2 import, 4 write, 8 read, ...).
    #[prost(int32, tag = "3")]
    pub symbol_roles: i32,
    /// `override_documentation`.
    #[prost(string, repeated, tag = "4")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub override_documentation: Vec<String>,
    /// `syntax_kind` (the enum's number).
    #[prost(int32, tag = "5")]
    pub syntax_kind: i32,
    /// `enclosing_range`.
    #[prost(int32, repeated, tag = "7")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub enclosing_range: Vec<i32>,
}

/// `scip.SymbolInformation`.
#[derive(Clone, PartialEq, Message, Serialize)]
pub struct SymbolInformation {
    /// `symbol`.
    #[prost(string, tag = "1")]
    pub symbol: String,
    /// `documentation` (Markdown).
    #[prost(string, repeated, tag = "3")]
    pub documentation: Vec<String>,
    /// `relationships`.
    #[prost(message, repeated, tag = "4")]
    pub relationships: Vec<Relationship>,
    /// `kind` (the enum's number).
    #[prost(int32, tag = "5")]
    pub kind: i32,
    /// `display_name`.
    #[prost(string, tag = "6")]
    pub display_name: String,
    /// `enclosing_symbol`.
    #[prost(string, tag = "8")]
    pub enclosing_symbol: String,
}

/// `scip.Relationship`.
#[derive(Clone, PartialEq, Message, Serialize)]
pub struct Relationship {
    /// `symbol`.
    #[prost(string, tag = "1")]
    pub symbol: String,
    /// `is_reference`.
    #[prost(bool, tag = "2")]
    pub is_reference: bool,
    /// `is_implementation`.
    #[prost(bool, tag = "3")]
    pub is_implementation: bool,
    /// `is_type_definition`.
    #[prost(bool, tag = "4")]
    pub is_type_definition: bool,
    /// `is_definition`.
    #[prost(bool, tag = "5")]
    pub is_definition: bool,
}

/// Decodes the bytes of one `scip.Document` message.
pub fn decode_document(bytes: &[u8]) -> Result<Document> {
    Document::decode(bytes).map_err(|e| {
        Error::Protocol(format!(
            "the server sent a document that is not a scip.Document message: {e}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_document_decodes_to_the_contracts_json_fields() -> Result<()> {
        let doc = Document {
            relative_path: "src/a.ts".into(),
            language: "TypeScript".into(),
            occurrences: vec![Occurrence {
                range: vec![1, 2, 5],
                symbol: "npm pkg 1.0.0 a/f().".into(),
                symbol_roles: 1,
                ..Occurrence::default()
            }],
            symbols: vec![SymbolInformation {
                symbol: "npm pkg 1.0.0 a/f().".into(),
                documentation: vec!["f".into()],
                ..SymbolInformation::default()
            }],
            ..Document::default()
        };
        let decoded = decode_document(&doc.encode_to_vec())?;
        assert_eq!(decoded, doc);
        let json = serde_json::to_value(&decoded).map_err(|e| Error::Protocol(e.to_string()))?;
        assert_eq!(json["path"], "src/a.ts");
        assert_eq!(
            json["occurrences"][0]["range"],
            serde_json::json!([1, 2, 5])
        );
        assert_eq!(json["occurrences"][0]["symbol_roles"], 1);
        assert_eq!(json["symbols"][0]["symbol"], "npm pkg 1.0.0 a/f().");
        assert!(json.get("text").is_none());
        Ok(())
    }

    #[test]
    fn bytes_that_are_not_a_document_are_a_protocol_error() {
        assert!(matches!(
            decode_document(&[0x0a, 0xff]),
            Err(Error::Protocol(_))
        ));
    }
}
