//! Scopes (`team/project:right`) and rights, and the check of a namespace against them.

use std::fmt;
use std::str::FromStr;

use scipcache_tiers::names::{Namespace, Tenant};

/// What a scope allows, in increasing power: each right implies the ones before it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Right {
    /// Resolve refs, list, read blobs and chunks.
    Read,
    /// Read, plus upload chunks, commit and delete refs.
    Write,
    /// Write, plus stats and GC of the tenant.
    Admin,
}

impl Right {
    /// `read`, `write` or `admin`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }
}

impl fmt::Display for Right {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Right {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "read" => Ok(Self::Read),
            "write" => Ok(Self::Write),
            "admin" => Ok(Self::Admin),
            other => Err(format!("unknown right {other:?}: use read, write or admin")),
        }
    }
}

/// One part of a scope or the tenant claim: `*` or an exact name.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Pattern {
    /// Any name.
    Any,
    /// Exactly this name.
    Exact(String),
}

impl Pattern {
    /// Whether `name` matches.
    pub fn matches(&self, name: &str) -> bool {
        match self {
            Self::Any => true,
            Self::Exact(exact) => exact == name,
        }
    }

    fn parse(kind: &str, s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(Self::Any);
        }
        // Team and project follow the namespace rules; checking through a namespace keeps
        // one definition of them.
        format!("x/{s}/x")
            .parse::<Namespace>()
            .map(|_| Self::Exact(s.to_owned()))
            .map_err(|_| {
                format!(
                    "invalid {kind} {s:?}: use * or 1 to 63 of [a-z0-9._-], starting with a \
                     letter or digit"
                )
            })
    }
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::Exact(s) => f.write_str(s),
        }
    }
}

/// `team/project:right`: a right over the namespaces of the token's tenant whose team and
/// project match. `*:right` is short for `*/*:right`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope {
    /// Team pattern.
    pub team: Pattern,
    /// Project pattern.
    pub project: Pattern,
    /// The right granted.
    pub right: Right,
}

impl Scope {
    /// Whether this scope grants `right` over `team/project`.
    pub fn allows(&self, team: &str, project: &str, right: Right) -> bool {
        self.right >= right && self.team.matches(team) && self.project.matches(project)
    }

    /// Whether it covers every team and project (`*:right`).
    pub fn is_tenant_wide(&self) -> bool {
        self.team == Pattern::Any && self.project == Pattern::Any
    }
}

impl FromStr for Scope {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (target, right) = s.rsplit_once(':').ok_or_else(|| {
            format!("invalid scope {s:?}: expected team/project:right or *:right")
        })?;
        let right: Right = right
            .parse()
            .map_err(|e| format!("invalid scope {s:?}: {e}"))?;
        let (team, project) = match target {
            "*" => (Pattern::Any, Pattern::Any),
            _ => {
                let (team, project) = target.split_once('/').ok_or_else(|| {
                    format!("invalid scope {s:?}: expected team/project:right or *:right")
                })?;
                (
                    Pattern::parse("team", team).map_err(|e| format!("scope {s:?}: {e}"))?,
                    Pattern::parse("project", project).map_err(|e| format!("scope {s:?}: {e}"))?,
                )
            }
        };
        Ok(Self {
            team,
            project,
            right,
        })
    }
}

impl fmt::Display for Scope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}:{}", self.team, self.project, self.right)
    }
}

/// The `tenant` claim: one tenant, or `*` for all of them.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TenantClaim {
    /// Every tenant (with `*:admin`, the operator).
    Any,
    /// One tenant.
    One(Tenant),
}

impl TenantClaim {
    /// Whether namespaces of `tenant` are covered.
    pub fn matches(&self, tenant: &Tenant) -> bool {
        match self {
            Self::Any => true,
            Self::One(t) => t == tenant,
        }
    }
}

impl FromStr for TenantClaim {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "*" {
            return Ok(Self::Any);
        }
        s.parse::<Tenant>()
            .map(Self::One)
            .map_err(|e| format!("{e} (or * for every tenant)"))
    }
}

impl fmt::Display for TenantClaim {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Any => f.write_str("*"),
            Self::One(t) => f.write_str(t.as_str()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope(s: &str) -> Scope {
        match s.parse() {
            Ok(scope) => scope,
            Err(e) => panic!("{s}: {e}"),
        }
    }

    #[test]
    fn scopes_parse_in_every_documented_form() {
        assert_eq!(scope("web/app:read").to_string(), "web/app:read");
        assert_eq!(scope("*:write").to_string(), "*/*:write");
        assert_eq!(scope("*/*:admin"), scope("*:admin"));
        assert_eq!(scope("web/*:read").project, Pattern::Any);
        assert_eq!(scope("*/app:read").team, Pattern::Any);
        assert!(scope("*:admin").is_tenant_wide());
        assert!(!scope("web/*:admin").is_tenant_wide());
    }

    #[test]
    fn malformed_scopes_are_refused() {
        for bad in [
            "",
            "read",
            "web/app",
            "web/app:",
            "web/app:owner",
            "web:read",
            "web/app/x:read",
            "Web/app:read",
            "web/-app:read",
            "we*/app:read",
            "*:READ",
            ":read",
        ] {
            assert!(bad.parse::<Scope>().is_err(), "{bad:?} was accepted");
        }
    }

    #[test]
    fn write_implies_read_and_admin_implies_both() {
        let w = scope("web/app:write");
        assert!(w.allows("web", "app", Right::Read));
        assert!(w.allows("web", "app", Right::Write));
        assert!(!w.allows("web", "app", Right::Admin));
        let a = scope("web/app:admin");
        assert!(a.allows("web", "app", Right::Read) && a.allows("web", "app", Right::Write));
        let r = scope("web/app:read");
        assert!(!r.allows("web", "app", Right::Write));
    }

    #[test]
    fn wildcards_match_any_team_or_project_and_exact_parts_only_themselves() {
        let s = scope("web/*:read");
        assert!(s.allows("web", "app", Right::Read));
        assert!(s.allows("web", "lib", Right::Read));
        assert!(!s.allows("webx", "app", Right::Read));
        let s = scope("web/app:read");
        assert!(!s.allows("web", "app2", Right::Read));
        assert!(!s.allows("web", "ap", Right::Read));
        assert!(scope("*:read").allows("any", "thing", Right::Read));
    }

    #[test]
    fn tenant_claim_is_exact_or_star() -> Result<(), String> {
        let acme: Tenant = "acme".parse().map_err(|e| format!("{e}"))?;
        let other: Tenant = "acme2".parse().map_err(|e| format!("{e}"))?;
        let claim: TenantClaim = "acme".parse()?;
        assert!(claim.matches(&acme));
        assert!(!claim.matches(&other));
        assert!("*".parse::<TenantClaim>()?.matches(&other));
        assert!("Acme".parse::<TenantClaim>().is_err());
        assert!("".parse::<TenantClaim>().is_err());
        Ok(())
    }
}
