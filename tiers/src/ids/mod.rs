//! Content ids: BLAKE3 hashes wrapped in newtypes so a chunk id can never be passed where a
//! blob id is meant. Each has one canonical text form, lowercase hex (what `b3sum` prints).
//! Parsing them (the conversions that can fail) is in `parse.rs`, so this file needs nothing
//! from `error.rs`, which names these ids.

use std::fmt;

mod parse;

macro_rules! hash_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name([u8; 32]);

        impl $name {
            /// Length of the id in bytes.
            pub const LEN: usize = 32;

            /// Hashes `data` with BLAKE3.
            pub fn of(data: &[u8]) -> Self {
                Self(*blake3::hash(data).as_bytes())
            }

            /// Wraps 32 raw bytes.
            pub const fn from_bytes(bytes: [u8; 32]) -> Self {
                Self(bytes)
            }

            /// The raw 32 bytes.
            pub const fn as_bytes(&self) -> &[u8; 32] {
                &self.0
            }

            /// Lowercase hex, 64 characters.
            pub fn to_hex(&self) -> String {
                hex::encode(self.0)
            }
        }

        impl From<blake3::Hash> for $name {
            fn from(hash: blake3::Hash) -> Self {
                Self(*hash.as_bytes())
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let mut buf = [0u8; 64];
                // Cannot fail: the buffer is exactly twice the input length.
                hex::encode_to_slice(self.0, &mut buf).map_err(|_| fmt::Error)?;
                f.write_str(std::str::from_utf8(&buf).map_err(|_| fmt::Error)?)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({})", stringify!($name), self)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.to_hex())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                s.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

hash_id!(
    /// BLAKE3 of one chunk's raw (uncompressed) bytes.
    ChunkId
);
hash_id!(
    /// BLAKE3 of a whole blob's content: `b3sum FILE` prints it.
    BlobId
);
hash_id!(
    /// BLAKE3 of a manifest's canonical encoding (see [`crate::manifest`]).
    ManifestId
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_id_matches_b3sum_of_empty_input() {
        // `b3sum /dev/null`
        let expected = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262";
        assert_eq!(BlobId::of(b"").to_string(), expected);
        assert_eq!(expected.parse::<BlobId>().ok(), Some(BlobId::of(b"")));
    }

    #[test]
    fn ids_reject_uppercase_short_and_non_hex_text() {
        let upper = "AF1349B9F5F9A1A6A0404DEA36DCC9499BCB25C9ADC112B7CC9A93CAE41F3262";
        assert!(upper.parse::<ChunkId>().is_err());
        assert!("abc".parse::<ChunkId>().is_err());
        assert!("zz".repeat(32).parse::<ChunkId>().is_err());
    }

    #[test]
    fn ids_round_trip_through_serde_as_hex() -> Result<(), serde_json::Error> {
        let id = ChunkId::of(b"hello");
        let json = serde_json::to_string(&id)?;
        assert_eq!(json, format!("\"{id}\""));
        assert_eq!(serde_json::from_str::<ChunkId>(&json)?, id);
        Ok(())
    }
}
