//! Value types both command lines share (`scipcached` in [`crate::config`] and
//! `scipcached token` in [`crate::token`]): humantime durations, byte sizes, shares, and the default
//! data dir. It depends on neither of them, so they do not depend on each other.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Default data directory of the daemon and of `scipcached token`.
pub const DEFAULT_DATA_DIR: &str = "./scipcache-data";

/// Parses a humantime duration (`90s`, `30m`, `24h`, `7d`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?} ({e}); use e.g. 90s, 30m, 24h, 7d"))
}

/// A byte count: plain bytes (`1073741824`) or with a unit (`4GiB`, `512 MiB`, `10GB`).
/// Binary units (`KiB`, `MiB`, `GiB`, `TiB`, and the short `K`, `M`, `G`, `T`) are powers of
/// 1024; decimal ones (`KB`, `MB`, `GB`, `TB`) powers of 1000.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ByteSize(pub u64);

impl FromStr for ByteSize {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (digits, unit) = s.split_at(split);
        let bad = || format!("invalid size {s:?}: use bytes or a unit such as 512MiB or 4GiB");
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 1,
            "k" | "kib" => 1 << 10,
            "m" | "mib" => 1 << 20,
            "g" | "gib" => 1 << 30,
            "t" | "tib" => 1 << 40,
            "kb" => 1_000,
            "mb" => 1_000_000,
            "gb" => 1_000_000_000,
            "tb" => 1_000_000_000_000,
            _ => return Err(bad()),
        };
        n.checked_mul(mult)
            .map(Self)
            .ok_or_else(|| format!("size {s:?} is too large"))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl Serialize for ByteSize {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // TOML integers are i64; sizes above that are printed as text.
        match i64::try_from(self.0) {
            Ok(n) => s.serialize_i64(n),
            Err(_) => s.serialize_str(&self.0.to_string()),
        }
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(i64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => u64::try_from(n).map(Self).map_err(|_| {
                serde::de::Error::custom(format!(
                    "invalid size {n}: a size is 0 or more bytes, or a text such as \"4GiB\""
                ))
            }),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

/// `#[serde(with = "humantime_serde")]` for a [`Duration`]: `"90s"`, `"24h"`.
pub mod humantime_serde {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the duration as humantime text.
    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(*d).to_string())
    }

    /// Reads humantime text.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }

    /// The same for an `Option<Duration>` (absent = `None`; pair it with `#[serde(default)]`).
    pub mod option {
        use std::time::Duration;

        use serde::{Deserializer, Serializer};

        /// Writes `Some` as humantime text; `None` is left out.
        pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
            match d {
                Some(d) => super::serialize(d, s),
                None => s.serialize_none(),
            }
        }

        /// Reads humantime text.
        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
            super::deserialize(d).map(Some)
        }
    }
}

/// A share per day (`0.1`: a tenth), finite and not negative; in files a number.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Share(f64);

// Never NaN (refused when parsed), so equality is total.
impl Eq for Share {}

impl Share {
    /// The share as a number.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Share {
    type Error = String;
    fn try_from(f: f64) -> Result<Self, String> {
        if f.is_finite() && f >= 0.0 {
            Ok(Self(f))
        } else {
            Err(format!(
                "invalid share {f}: use a number of 0 or more, such as 0.1 (0 = off)"
            ))
        }
    }
}

impl From<Share> for f64 {
    fn from(s: Share) -> f64 {
        s.0
    }
}

impl FromStr for Share {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let f: f64 = s.trim().parse().map_err(|_| {
            format!("invalid share {s:?}: use a number of 0 or more, such as 0.1 (0 = off)")
        })?;
        Self::try_from(f)
    }
}

impl fmt::Display for Share {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// A fraction from 0 to 1 (`0.5`: half), e.g. `--compact-below`; in files a number.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Fraction(f64);

// Never NaN (refused when parsed), so equality is total.
impl Eq for Fraction {}

impl Fraction {
    /// The fraction as a number.
    pub fn get(self) -> f64 {
        self.0
    }
}

impl TryFrom<f64> for Fraction {
    type Error = String;
    fn try_from(f: f64) -> Result<Self, String> {
        if (0.0..=1.0).contains(&f) {
            Ok(Self(f))
        } else {
            Err(format!(
                "invalid fraction {f}: use a number from 0 to 1, such as 0.5"
            ))
        }
    }
}

impl From<Fraction> for f64 {
    fn from(s: Fraction) -> f64 {
        s.0
    }
}

impl FromStr for Fraction {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let f: f64 = s.trim().parse().map_err(|_| {
            format!("invalid fraction {s:?}: use a number from 0 to 1, such as 0.5")
        })?;
        Self::try_from(f)
    }
}

impl fmt::Display for Fraction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fractions_run_from_zero_to_one() {
        assert_eq!("0.5".parse::<Fraction>().map(Fraction::get), Ok(0.5));
        assert_eq!("0".parse::<Fraction>().map(Fraction::get), Ok(0.0));
        assert_eq!("1".parse::<Fraction>().map(Fraction::get), Ok(1.0));
        for bad in ["-0.1", "1.5", "NaN", "half", ""] {
            let err = bad.parse::<Fraction>().err().unwrap_or_default();
            assert!(err.contains("from 0 to 1"), "{bad}: {err}");
        }
    }

    #[test]
    fn sizes_accept_bytes_and_units() {
        assert_eq!("123".parse::<ByteSize>(), Ok(ByteSize(123)));
        assert_eq!("4GiB".parse::<ByteSize>(), Ok(ByteSize(4 << 30)));
        assert_eq!("512 MiB".parse::<ByteSize>(), Ok(ByteSize(512 << 20)));
        assert_eq!("10GB".parse::<ByteSize>(), Ok(ByteSize(10_000_000_000)));
        assert_eq!("1k".parse::<ByteSize>(), Ok(ByteSize(1024)));
        assert!("4 parsecs".parse::<ByteSize>().is_err());
        assert!("".parse::<ByteSize>().is_err());
        assert!("99999999999TiB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn durations_are_humantime_and_bad_ones_say_how_to_write_them() {
        assert_eq!(parse_duration("90s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration(" 7d "), Ok(Duration::from_secs(7 * 86_400)));
        let err = parse_duration("soon").err().unwrap_or_default();
        assert!(err.contains("24h"), "{err}");
    }
}
