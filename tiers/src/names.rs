//! Names a caller gives: tenants, namespaces (`tenant/team/project`) and ref keys, validated
//! exactly as the contract says. Parse once at the edge, then pass the newtypes around.

use std::fmt;
use std::str::FromStr;

use crate::error::Error;

fn check_part(kind: &str, part: &str) -> Result<(), Error> {
    let bytes = part.as_bytes();
    let ok = !bytes.is_empty()
        && bytes.len() <= 63
        && (bytes[0].is_ascii_lowercase() || bytes[0].is_ascii_digit())
        && bytes.iter().all(|&b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidArgument(format!(
            "invalid {kind} {part:?}: use 1 to 63 of [a-z0-9._-], starting with a letter or digit"
        )))
    }
}

/// A tenant: the unit of isolation. Chunks are deduplicated within a tenant, never across.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Tenant(String);

impl Tenant {
    /// The tenant's name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The fixed-size tag that prefixes this tenant's keys in storage: the first 8 bytes of a
    /// BLAKE3 key derivation from the name. Deterministic, so every daemon of a fleet agrees.
    pub fn id(&self) -> TenantId {
        let full = blake3::derive_key("scipcache 2026 tenant id v1", self.0.as_bytes());
        let mut tag = [0u8; 8];
        tag.copy_from_slice(&full[..8]);
        TenantId(tag)
    }
}

impl FromStr for Tenant {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        check_part("tenant", s)?;
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Tenant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tenant({})", self.0)
    }
}

/// The storage tag of a tenant (see [`Tenant::id`]).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct TenantId(pub [u8; 8]);

/// `tenant/team/project`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Namespace {
    full: String,
    tenant: Tenant,
    team_end: usize,
}

impl Namespace {
    /// The tenant part.
    pub fn tenant(&self) -> &Tenant {
        &self.tenant
    }

    /// The team part.
    pub fn team(&self) -> &str {
        &self.full[self.tenant.0.len() + 1..self.team_end]
    }

    /// The project part.
    pub fn project(&self) -> &str {
        &self.full[self.team_end + 1..]
    }

    /// `tenant/team/project`.
    pub fn as_str(&self) -> &str {
        &self.full
    }
}

impl FromStr for Namespace {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let parts: Vec<&str> = s.split('/').collect();
        let [tenant, team, project] = parts.as_slice() else {
            return Err(Error::InvalidArgument(format!(
                "invalid namespace {s:?}: expected tenant/team/project"
            )));
        };
        let tenant: Tenant = tenant.parse()?;
        check_part("team", team)?;
        check_part("project", project)?;
        Ok(Self {
            full: s.to_owned(),
            team_end: tenant.0.len() + 1 + team.len(),
            tenant,
        })
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.full)
    }
}

impl fmt::Debug for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Namespace({})", self.full)
    }
}

/// A ref's key inside a namespace, such as `commit/<sha>` or `branch/main`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RefKey(String);

impl RefKey {
    /// Longest key accepted.
    pub const MAX_LEN: usize = 256;

    /// The key text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for RefKey {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        let bad = |why: &str| Err(Error::InvalidArgument(format!("invalid key {s:?}: {why}")));
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return bad("must be 1 to 256 characters");
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-'))
        {
            return bad("only [A-Za-z0-9._/-] are allowed");
        }
        for segment in s.split('/') {
            match segment {
                "" => return bad("empty path segment"),
                "." | ".." => return bad("'.' and '..' segments are not allowed"),
                _ => {}
            }
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for RefKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for RefKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RefKey({})", self.0)
    }
}

/// A key prefix for listing and fallback resolution: like a key, but may be empty and may end
/// in `/` (so `commit/` lists every commit ref).
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default)]
pub struct KeyPrefix(String);

impl KeyPrefix {
    /// The prefix text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for KeyPrefix {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        if s.is_empty() {
            return Ok(Self::default());
        }
        if s.len() > RefKey::MAX_LEN
            || !s
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'/' | b'-'))
        {
            return Err(Error::InvalidArgument(format!(
                "invalid key prefix {s:?}: at most 256 of [A-Za-z0-9._/-]"
            )));
        }
        Ok(Self(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn namespace_accepts_contract_examples_and_splits_parts() -> Result<(), Error> {
        let ns: Namespace = "acme/web/app".parse()?;
        assert_eq!(ns.tenant().as_str(), "acme");
        assert_eq!(ns.team(), "web");
        assert_eq!(ns.project(), "app");
        let ns: Namespace = "a0/b.c_d-e/9".parse()?;
        assert_eq!(ns.team(), "b.c_d-e");
        Ok(())
    }

    #[test]
    fn namespace_rejects_bad_shapes() {
        for bad in [
            "",
            "acme",
            "acme/web",
            "acme/web/app/x",
            "Acme/web/app",
            "acme//app",
            "-a/b/c",
            "a/b/.c",
            "a/b/c ",
            &format!("{}/b/c", "a".repeat(64)),
        ] {
            assert!(bad.parse::<Namespace>().is_err(), "{bad:?} was accepted");
        }
        assert!(
            format!("{}/b/c", "a".repeat(63))
                .parse::<Namespace>()
                .is_ok()
        );
    }

    #[test]
    fn ref_key_follows_contract() {
        for good in [
            "commit/abc123",
            "branch/main",
            "a",
            "A.B_c-d/e",
            &"k".repeat(256),
        ] {
            assert!(good.parse::<RefKey>().is_ok(), "{good:?} was refused");
        }
        for bad in [
            "",
            "/a",
            "a/",
            "a//b",
            "./a",
            "a/../b",
            "..",
            "a b",
            "a\\b",
            "ü",
            &"k".repeat(257),
        ] {
            assert!(bad.parse::<RefKey>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn tenant_ids_differ_per_tenant_and_are_stable() -> Result<(), Error> {
        let a: Tenant = "acme".parse()?;
        let b: Tenant = "acme2".parse()?;
        assert_ne!(a.id(), b.id());
        assert_eq!(a.id(), "acme".parse::<Tenant>()?.id());
        Ok(())
    }
}
