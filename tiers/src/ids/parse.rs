//! The fallible conversions of the content ids: from raw bytes and from their hex text.

use std::str::FromStr;

use super::{BlobId, ChunkId, ManifestId};
use crate::error::Error;

macro_rules! parse_id {
    ($name:ident) => {
        impl $name {
            /// Parses 32 raw bytes from a slice of any length, failing if it is not 32 long.
            pub fn from_slice(bytes: &[u8]) -> Result<Self, Error> {
                let array: [u8; 32] = bytes.try_into().map_err(|_| {
                    Error::InvalidArgument(format!(
                        "{} must be 32 bytes, got {}",
                        stringify!($name),
                        bytes.len()
                    ))
                })?;
                Ok(Self::from_bytes(array))
            }
        }

        impl FromStr for $name {
            type Err = Error;
            fn from_str(s: &str) -> Result<Self, Error> {
                if s.len() != 64 || s.bytes().any(|b| b.is_ascii_uppercase()) {
                    return Err(Error::InvalidArgument(format!(
                        "{} must be 64 lowercase hex characters, got {:?}",
                        stringify!($name),
                        s
                    )));
                }
                let mut out = [0u8; 32];
                hex::decode_to_slice(s, &mut out).map_err(|e| {
                    Error::InvalidArgument(format!("{} is not hex: {e}", stringify!($name)))
                })?;
                Ok(Self::from_bytes(out))
            }
        }
    };
}

parse_id!(ChunkId);
parse_id!(BlobId);
parse_id!(ManifestId);
