//! The config file's lifecycle tables: `[[retention]]` rules and `[quotas]`.
//!
//! ```toml
//! [[retention]]
//! prefix = "commit/"
//! keep_last = 50          # or: ttl = "30d", or: keep = "forever"
//!
//! [quotas]
//! acme = "50GiB"          # or plain bytes
//! ```
//!
//! A `[[retention]]` table is read straight into the engine's [`RetentionRule`], so a
//! configuration that parsed holds only valid rules; a table with none or several of
//! `keep_last`, `ttl` and `keep`, a bad value or an unknown key is refused naming the table
//! (its prefix) and the TOML parser adds the line.

use std::time::Duration;

use scipcache_tiers::names::{KeyPrefix, Tenant};
use scipcache_tiers::store::{RetentionPolicy, RetentionRule};
use serde::{Deserialize, Serialize};

use crate::values::parse_duration;

/// One `[[retention]]` table, checked.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RetentionTable", into = "RetentionTable")]
pub struct Retention(pub RetentionRule);

/// A `[[retention]]` table as written.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RetentionTable {
    prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep_last: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ttl: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    keep: Option<String>,
}

impl TryFrom<RetentionTable> for Retention {
    type Error = String;

    fn try_from(t: RetentionTable) -> Result<Self, String> {
        let Some(prefix) = t.prefix else {
            return Err(
                "a [[retention]] table needs `prefix = \"...\"` (e.g. \"commit/\"; \
                        \"\" for every key)"
                    .into(),
            );
        };
        let table = format!("[[retention]] table with prefix {prefix:?}");
        prefix
            .parse::<KeyPrefix>()
            .map_err(|e| format!("{table}: {e}"))?;
        let policy = match (t.keep_last, t.ttl, t.keep) {
            (Some(0), None, None) => {
                return Err(format!(
                    "{table}: keep_last = 0 would delete every ref under it; keep at least 1, \
                     or delete them with `scipcache rm NS --prefix P`"
                ));
            }
            (Some(n), None, None) => RetentionPolicy::KeepLast(n),
            (None, Some(ttl), None) => {
                let d = parse_duration(&ttl).map_err(|e| format!("{table}: ttl: {e}"))?;
                if d < Duration::from_secs(1) {
                    return Err(format!("{table}: ttl must be at least 1s"));
                }
                RetentionPolicy::Ttl(d)
            }
            (None, None, Some(keep)) if keep == "forever" => RetentionPolicy::Forever,
            (None, None, Some(keep)) => {
                return Err(format!(
                    "{table}: keep = {keep:?}; the only value is \"forever\""
                ));
            }
            (k, t, f) => {
                let given: Vec<&str> =
                    [k.map(|_| "keep_last"), t.map(|_| "ttl"), f.map(|_| "keep")]
                        .into_iter()
                        .flatten()
                        .collect();
                let has = if given.is_empty() {
                    "it has none".to_owned()
                } else {
                    format!("it has {}", given.join(" and "))
                };
                return Err(format!(
                    "{table}: give exactly one of keep_last = N, ttl = \"30d\" or keep = \
                     \"forever\" ({has})"
                ));
            }
        };
        Ok(Self(RetentionRule { prefix, policy }))
    }
}

impl From<Retention> for RetentionTable {
    fn from(r: Retention) -> Self {
        let mut t = Self {
            prefix: Some(r.0.prefix),
            ..Self::default()
        };
        match r.0.policy {
            RetentionPolicy::KeepLast(n) => t.keep_last = Some(n),
            RetentionPolicy::Ttl(d) => t.ttl = Some(humantime::format_duration(d).to_string()),
            RetentionPolicy::Forever => t.keep = Some("forever".into()),
        }
        t
    }
}

/// Refuses two `[[retention]]` tables with the same prefix (which one would decide?).
pub fn check_rules(rules: &[Retention]) -> Result<(), String> {
    for (i, a) in rules.iter().enumerate() {
        if rules[..i].iter().any(|b| b.0.prefix == a.0.prefix) {
            return Err(format!(
                "two [[retention]] tables have the prefix {:?}; keep one (the longest matching \
                 prefix decides, so each prefix may appear once)",
                a.0.prefix
            ));
        }
    }
    Ok(())
}

/// Refuses `[quotas]` keys that are not tenant names.
pub fn check_quotas<'a>(tenants: impl IntoIterator<Item = &'a String>) -> Result<(), String> {
    for name in tenants {
        name.parse::<Tenant>().map_err(|e| {
            format!("[quotas] {name:?}: {e}; the keys are tenant names such as acme")
        })?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(text: &str) -> Result<Retention, String> {
        #[derive(Deserialize)]
        struct File {
            retention: Vec<Retention>,
        }
        toml::from_str::<File>(text)
            .map_err(|e| e.to_string())?
            .retention
            .pop()
            .ok_or_else(|| "no rule".to_owned())
    }

    #[test]
    fn each_policy_reads_into_the_engines_rule() -> Result<(), String> {
        let r = rule("[[retention]]\nprefix = \"commit/\"\nkeep_last = 5")?;
        assert_eq!(r.0.policy, RetentionPolicy::KeepLast(5));
        let r = rule("[[retention]]\nprefix = \"pr/\"\nttl = \"30d\"")?;
        assert_eq!(
            r.0.policy,
            RetentionPolicy::Ttl(Duration::from_secs(30 * 86_400))
        );
        let r = rule("[[retention]]\nprefix = \"\"\nkeep = \"forever\"")?;
        assert_eq!(r.0.policy, RetentionPolicy::Forever);
        Ok(())
    }

    #[test]
    fn a_table_without_exactly_one_policy_or_with_a_bad_value_is_refused_naming_it() {
        for (text, wants) in [
            ("prefix = \"commit/\"", "(it has none)"),
            (
                "prefix = \"commit/\"\nkeep_last = 3\nttl = \"1d\"",
                "(it has keep_last and ttl)",
            ),
            (
                "prefix = \"commit/\"\nkeep = \"always\"",
                "only value is \"forever\"",
            ),
            (
                "prefix = \"commit/\"\nttl = \"soon\"",
                "ttl: invalid duration",
            ),
            ("prefix = \"commit/\"\nkeep_last = 0", "keep at least 1"),
            ("prefix = \"bad prefix\"\nkeep_last = 1", "bad prefix"),
            ("keep_last = 1", "needs `prefix"),
            ("prefix = \"commit/\"\nkeep_lats = 1", "keep_lats"),
        ] {
            let err = rule(&format!("[[retention]]\n{text}"))
                .err()
                .unwrap_or_default();
            assert!(err.contains(wants), "{text}: {err}");
            if !text.starts_with("keep_last") && !text.contains("keep_lats") {
                assert!(err.contains("[[retention]] table with prefix"), "{err}");
            }
        }
    }

    #[test]
    fn rules_print_back_as_they_were_written() -> Result<(), String> {
        for text in [
            "prefix = \"commit/\"\nkeep_last = 5\n",
            "prefix = \"pr/\"\nttl = \"30days\"\n",
            "prefix = \"branch/\"\nkeep = \"forever\"\n",
        ] {
            let r = rule(&format!("[[retention]]\n{text}"))?;
            let printed =
                toml::to_string(&RetentionTable::from(r.clone())).map_err(|e| e.to_string())?;
            let back = rule(&format!("[[retention]]\n{printed}"))?;
            assert_eq!(back, r, "{printed}");
        }
        Ok(())
    }

    #[test]
    fn duplicate_prefixes_and_bad_tenant_names_are_refused() -> Result<(), String> {
        let a = rule("[[retention]]\nprefix = \"commit/\"\nkeep_last = 5")?;
        assert!(check_rules(&[a.clone(), a]).is_err());
        assert!(check_quotas(&["acme".to_owned()]).is_ok());
        let err = check_quotas(&["Acme Corp".to_owned()])
            .err()
            .unwrap_or_default();
        assert!(err.starts_with("[quotas] \"Acme Corp\""), "{err}");
        Ok(())
    }
}
