//! The package part of a SCIP symbol string, from the grammar in `scip.proto`:
//!
//! ```text
//! <symbol>  ::= <scheme> ' ' <package> ' ' (<descriptor>)+ | 'local ' <local-id>
//! <package> ::= <manager> ' ' <package-name> ' ' <version>
//! ```
//!
//! Scheme, manager, package name and version are any UTF-8 with spaces escaped as two spaces;
//! `.` stands for an empty value. Nothing here unescapes: ranges point at the raw bytes.

use std::ops::Range;

/// Where a global symbol's package lies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Package {
    /// Scheme, manager and package name with their separators: what names the package
    /// whatever its version.
    pub identity: Range<usize>,
    /// The version token.
    pub version: Range<usize>,
}

/// The package of `symbol`, or `None` for a local symbol or a string that does not follow the
/// grammar (no version token, or no descriptor after it).
pub(crate) fn package(symbol: &[u8]) -> Option<Package> {
    if symbol.starts_with(b"local ") {
        return None;
    }
    let scheme_end = token_end(symbol, 0)?;
    let manager_end = token_end(symbol, scheme_end + 1)?;
    let name_end = token_end(symbol, manager_end + 1)?;
    let version_end = token_end(symbol, name_end + 1)?;
    // At least one descriptor follows the version's separator.
    if version_end + 1 >= symbol.len() {
        return None;
    }
    Some(Package {
        identity: 0..name_end,
        version: name_end + 1..version_end,
    })
}

/// Where the token starting at `start` ends: the index of the single space after it. A token
/// must be non-empty and followed by a separator.
fn token_end(symbol: &[u8], start: usize) -> Option<usize> {
    let mut at = start;
    loop {
        let space = at + memchr::memchr(b' ', symbol.get(at..)?)?;
        if symbol.get(space + 1) == Some(&b' ') {
            // An escaped space inside the token.
            at = space + 2;
            continue;
        }
        return (space > start).then_some(space);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version_of(symbol: &str) -> Option<&str> {
        package(symbol.as_bytes()).map(|p| &symbol[p.version])
    }

    #[test]
    fn the_version_token_of_every_symbol_form_is_found() {
        let cases = [
            (
                "scip-typescript npm @vue/runtime-core 3.5.40 src/`apiWatch.ts`/watch().",
                Some("3.5.40"),
            ),
            (
                "scip-python python sqlalchemy eb5ef2ac708a6e70ec253d78955d04e20c3c9784 sqlalchemy.orm/Session#",
                Some("eb5ef2ac708a6e70ec253d78955d04e20c3c9784"),
            ),
            (
                "rust-analyzer cargo serde 1.0.219 de/Deserialize#",
                Some("1.0.219"),
            ),
            ("semanticdb maven . . java/lang/String#", Some(".")),
            (
                "scip-go gomod github.com/a/b v0.0.0-2024  x pkg/Func().",
                Some("v0.0.0-2024  x"),
            ),
            ("local 42", None),
            ("scip-ts npm pkg", None),
            ("scip-ts npm pkg 1.0 ", None),
            ("", None),
            ("a  b c d e f.", Some("e")),
        ];
        for (symbol, want) in cases {
            assert_eq!(version_of(symbol), want, "{symbol}");
        }
    }

    #[test]
    fn escaped_spaces_stay_inside_their_token() {
        let s = "my  scheme npm my  pkg 1  2 desc.";
        let p = package(s.as_bytes());
        assert_eq!(
            p.clone().map(|p| &s[p.identity]),
            Some("my  scheme npm my  pkg")
        );
        assert_eq!(p.map(|p| &s[p.version]), Some("1  2"));
    }
}
