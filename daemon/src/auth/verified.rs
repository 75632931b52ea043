//! Verified tokens remembered until they expire, so that a caller sending the same token on
//! every lookup does not pay for a signature check each time.
//!
//! A token enters only after [`super::Verifier::verify`] accepted it (signature, issuer,
//! audience, `nbf`, `iat`, lifetime, denylist). A hit is answered from memory only while the
//! token is unexpired by the rule `jsonwebtoken` applies (`exp + leeway >= now`, the system
//! clock in seconds) and while the denylist names neither its `jti` nor its `sub`; the
//! denylist is looked up on every hit, so a revocation takes effect at the same moment as for
//! a token that is verified in full. An expired hit is dropped and the token is verified
//! again, which refuses it with the usual error. Entries are keyed by the token itself, and the
//! set starts over once it holds [`CACHED_TOKENS`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use super::Claims;

/// Verified tokens remembered before the set starts over.
pub(super) const CACHED_TOKENS: usize = 4096;

/// Verified claims by token.
#[derive(Debug, Default)]
pub(super) struct VerifiedTokens {
    by_token: Mutex<HashMap<String, Arc<Claims>>>,
}

impl VerifiedTokens {
    /// The claims of a remembered token still unexpired at `now_s` with `leeway_s`; an
    /// expired one is forgotten.
    pub(super) fn get(&self, token: &str, now_s: u64, leeway_s: u64) -> Option<Arc<Claims>> {
        let mut map = lock(&self.by_token);
        let claims = map.get(token)?;
        if claims.exp.saturating_add(leeway_s) >= now_s {
            return Some(claims.clone());
        }
        map.remove(token);
        None
    }

    /// Remembers the claims of a token just verified in full.
    pub(super) fn insert(&self, token: &str, claims: Arc<Claims>) {
        let mut map = lock(&self.by_token);
        if map.len() >= CACHED_TOKENS {
            map.clear();
        }
        map.insert(token.to_owned(), claims);
    }

    /// How many tokens are remembered.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        lock(&self.by_token).len()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A map of verified claims is valid after any panic (at worst a token is verified again).
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}
