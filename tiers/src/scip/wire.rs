//! The protobuf wire format, read without decoding into types: field headers and the byte
//! ranges of their values, so that a message can be cut and edited in place and rejoined
//! byte-identically. Varints are decoded by `prost`.

use std::ops::Range;

/// Wire type of a length-delimited field (strings, bytes, messages, packed repeats).
pub(crate) const LEN: u8 = 2;

/// Bytes past which a varint cannot end.
const MAX_VARINT_LEN: usize = 10;

/// The input is not the protobuf wire format (or not the message expected).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Malformed;

/// One field's header: its number, wire type, and for a length-delimited field the length
/// of its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub number: u32,
    pub wire: u8,
    /// Bytes of the header itself (key and, for [`LEN`], the length).
    pub header_len: usize,
    /// Bytes of the value that follow the header (0 when not [`LEN`]: see [`Field`]).
    pub value_len: u64,
}

/// What the start of a buffer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Peek {
    /// A complete field header.
    Header(Header),
    /// The header is cut off by the end of the buffer: more input is needed.
    NeedMore,
    /// Not a field header.
    Malformed,
}

/// Decodes one varint at the start of `buf`: the value and its length, `Ok(None)` when `buf`
/// ends inside it.
fn varint(buf: &[u8]) -> Result<Option<(u64, usize)>, Malformed> {
    let ends = buf.iter().take(MAX_VARINT_LEN).any(|b| b & 0x80 == 0);
    if !ends {
        return if buf.len() < MAX_VARINT_LEN {
            Ok(None)
        } else {
            Err(Malformed)
        };
    }
    let mut rest = buf;
    let value = prost::encoding::decode_varint(&mut rest).map_err(|_| Malformed)?;
    Ok(Some((value, buf.len() - rest.len())))
}

/// Reads the field header at the start of `buf`.
pub(crate) fn peek(buf: &[u8]) -> Peek {
    let (key, key_len) = match varint(buf) {
        Ok(Some(v)) => v,
        Ok(None) => return Peek::NeedMore,
        Err(Malformed) => return Peek::Malformed,
    };
    let (number, wire) = (key >> 3, (key & 7) as u8);
    if number == 0 || number > u64::from(u32::MAX >> 3) {
        return Peek::Malformed;
    }
    let number = number as u32;
    match wire {
        LEN => match varint(&buf[key_len..]) {
            Ok(Some((len, len_len))) => Peek::Header(Header {
                number,
                wire,
                header_len: key_len + len_len,
                value_len: len,
            }),
            Ok(None) => Peek::NeedMore,
            Err(Malformed) => Peek::Malformed,
        },
        0 | 1 | 5 => Peek::Header(Header {
            number,
            wire,
            header_len: key_len,
            value_len: 0,
        }),
        // Groups (3, 4) are not used by SCIP; 6 and 7 do not exist.
        _ => Peek::Malformed,
    }
}

/// One field of a message held whole in memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Field {
    pub number: u32,
    pub wire: u8,
    /// Where a [`LEN`] field's value lies in the message (empty for other wire types).
    pub value: Range<usize>,
}

/// The fields of the message `buf`, in order; an error ends the iteration.
pub(crate) fn fields(buf: &[u8]) -> impl Iterator<Item = Result<Field, Malformed>> + '_ {
    let mut pos = 0usize;
    let mut failed = false;
    std::iter::from_fn(move || {
        if failed || pos >= buf.len() {
            return None;
        }
        let next = field_at(buf, pos);
        match &next {
            Ok((_, end)) => pos = *end,
            Err(_) => failed = true,
        }
        Some(next.map(|(f, _)| f))
    })
}

/// The field starting at `pos` and where the next one starts. The message is whole, so a
/// varint the buffer cuts off is simply malformed.
#[inline]
fn field_at(buf: &[u8], pos: usize) -> Result<(Field, usize), Malformed> {
    let mut rest = &buf[pos..];
    let key = prost::encoding::decode_varint(&mut rest).map_err(|_| Malformed)?;
    let (number, wire) = (key >> 3, (key & 7) as u8);
    if number == 0 || number > u64::from(u32::MAX >> 3) {
        return Err(Malformed);
    }
    let skip = |rest: &[u8], n: usize| rest.len().checked_sub(n).ok_or(Malformed);
    let (value, left) = match wire {
        LEN => {
            let len = prost::encoding::decode_varint(&mut rest).map_err(|_| Malformed)?;
            let len = usize::try_from(len).map_err(|_| Malformed)?;
            let start = buf.len() - rest.len();
            let left = skip(rest, len)?;
            (start..start + len, left)
        }
        0 => {
            prost::encoding::decode_varint(&mut rest).map_err(|_| Malformed)?;
            let at = buf.len() - rest.len();
            (at..at, rest.len())
        }
        1 => {
            let at = buf.len() - rest.len();
            (at..at, skip(rest, 8)?)
        }
        5 => {
            let at = buf.len() - rest.len();
            (at..at, skip(rest, 4)?)
        }
        _ => return Err(Malformed),
    };
    Ok((
        Field {
            number: number as u32,
            wire,
            value,
        },
        buf.len() - left,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_every_wire_type_are_walked_and_truncation_is_malformed() {
        // 1: varint 150, 2: "hi", 3: fixed64, 4: fixed32.
        let msg = [
            0x08, 0x96, 0x01, 0x12, 2, b'h', b'i', 0x19, 1, 2, 3, 4, 5, 6, 7, 8, 0x25, 1, 2, 3, 4,
        ];
        let got: Vec<Field> = fields(&msg).collect::<Result<_, _>>().unwrap_or_default();
        assert_eq!(got.len(), 4);
        assert_eq!(got[1].number, 2);
        assert_eq!(&msg[got[1].value.clone()], b"hi");
        for cut in 1..msg.len() {
            let all: Vec<_> = fields(&msg[..cut]).collect();
            let ends_cleanly = [3, 7, 16].contains(&cut);
            assert_eq!(all.iter().all(Result::is_ok), ends_cleanly, "cut at {cut}");
        }
    }

    #[test]
    fn a_header_cut_by_the_end_of_the_buffer_asks_for_more() {
        assert_eq!(peek(&[0x12]), Peek::NeedMore);
        assert_eq!(peek(&[0x12, 0x80]), Peek::NeedMore);
        assert_eq!(peek(&[0x0b, 1]), Peek::Malformed); // group start
        assert_eq!(peek(&[0x00]), Peek::Malformed); // field 0
        assert!(matches!(
            peek(&[0x12, 0x80, 0x01]),
            Peek::Header(Header {
                number: 2,
                value_len: 128,
                header_len: 3,
                ..
            })
        ));
    }
}
