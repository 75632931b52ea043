//! The streaming cutter: input bytes in, chunks (in their stored form) out.

use std::collections::VecDeque;
use std::ops::Range;

use bytes::{Bytes, BytesMut};

use super::normalize::Normalizer;
use super::versions::{VersionTable, placeholders_in};
use super::wire::{self, LEN, Peek};
use crate::chunking::{ChunkerSpec, FastCdc, Splitter};
use crate::error::Result;

/// Largest top-level field read whole (and normalized). A larger one is cut by FastCDC as it
/// streams by, untransformed, so memory stays bounded whatever the index holds.
pub const MAX_UNIT_BUFFER: usize = 64 << 20;

/// How a blob is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CutMode {
    /// FastCDC over the whole blob.
    Plain,
    /// At the top-level fields of a SCIP index (documents, external symbols), FastCDC inside
    /// fields larger than the maximum chunk, tiny neighbours grouped.
    Documents,
    /// [`CutMode::Documents`] after version normalization.
    Normalized,
}

/// One chunk, in the form it is stored in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    /// The stored bytes: with placeholders when `normalized`, else the blob's own bytes.
    pub data: Bytes,
    /// Whether reading the chunk back needs the blob's [`VersionTable`].
    pub normalized: bool,
}

/// Cuts one blob. Feed it with [`Cutter::push`], take chunks with [`Cutter::next_cut`]
/// (`eof` once the input has ended), and take the version table with [`Cutter::finish`].
#[derive(Debug)]
pub struct Cutter {
    spec: ChunkerSpec,
    fastcdc: FastCdc,
    mode: CutMode,
    input: BytesMut,
    ready: VecDeque<Cut>,
    group: Group,
    normalizer: Normalizer,
    /// Bytes of an oversized top-level field still to stream through FastCDC.
    streaming: u64,
    /// Not (or no longer) a SCIP index: FastCDC over the rest.
    plain: bool,
    /// Top-level fields cut as units so far.
    units: u64,
}

/// Tiny units waiting to be stored together.
#[derive(Debug, Default)]
struct Group {
    stored: Vec<u8>,
    original: Vec<u8>,
    normalized: bool,
}

impl Cutter {
    /// A cutter for one blob. `spec` gives FastCDC's bounds (and so the largest chunk); the
    /// smallest is the grouping target for tiny fields.
    pub fn new(spec: ChunkerSpec, mode: CutMode) -> Result<Self> {
        Ok(Self {
            spec,
            fastcdc: spec.splitter()?,
            mode,
            input: BytesMut::new(),
            ready: VecDeque::new(),
            group: Group::default(),
            normalizer: Normalizer::default(),
            streaming: 0,
            plain: mode == CutMode::Plain,
            units: 0,
        })
    }

    /// Adds input.
    pub fn push(&mut self, data: &[u8]) {
        self.input.extend_from_slice(data);
    }

    /// Bytes pushed but not yet cut.
    pub fn buffered(&self) -> usize {
        self.input.len()
    }

    /// The next chunk, or `None` when more input is needed (or, with `eof`, when the blob is
    /// done). Chunks concatenate, restored, to the input.
    pub fn next_cut(&mut self, eof: bool) -> Result<Option<Cut>> {
        let max = self.spec.max as usize;
        loop {
            if let Some(cut) = self.ready.pop_front() {
                return Ok(Some(cut));
            }
            if self.plain || self.streaming > 0 {
                let limit = if self.plain {
                    self.input.len()
                } else {
                    usize::try_from(self.streaming)
                        .map_or(self.input.len(), |s| s.min(self.input.len()))
                };
                let ends_here = eof || (!self.plain && limit as u64 == self.streaming);
                if limit == 0 || (limit < max && !ends_here) {
                    if !self.plain && limit == 0 && eof {
                        // Declared longer than the blob: what is left is plain bytes.
                        self.plain = true;
                        continue;
                    }
                    return self.finish_group(eof);
                }
                let n = self.fastcdc.next_cut(&self.input[..limit], ends_here);
                if !self.plain {
                    self.streaming -= n as u64;
                }
                let data = self.input.split_to(n).freeze();
                return Ok(Some(Cut {
                    data,
                    normalized: false,
                }));
            }
            match wire::peek(&self.input) {
                _ if self.input.is_empty() => return self.finish_group(eof),
                Peek::NeedMore if !eof => return Ok(None),
                Peek::NeedMore | Peek::Malformed => {
                    self.flush_group();
                    self.plain = true;
                }
                Peek::Header(h) if !(1..=3).contains(&h.number) || h.wire != LEN => {
                    self.flush_group();
                    self.plain = true;
                }
                Peek::Header(h) => {
                    let total = (h.header_len as u64).saturating_add(h.value_len);
                    if total > MAX_UNIT_BUFFER as u64 {
                        self.flush_group();
                        self.streaming = total;
                        continue;
                    }
                    let total = total as usize;
                    if self.input.len() < total {
                        if eof {
                            // Cut short: not an index after all.
                            self.flush_group();
                            self.plain = true;
                            continue;
                        }
                        return Ok(None);
                    }
                    let unit = self.input.split_to(total).freeze();
                    self.unit(h.number, unit, h.header_len);
                }
            }
        }
    }

    /// How many top-level fields of an index were cut as units: 0 when the blob was cut as
    /// plain bytes from its start (not an index, or not cut SCIP-aware).
    pub fn units(&self) -> u64 {
        self.units
    }

    /// The blob's version table, once every chunk has been taken.
    pub fn finish(self) -> VersionTable {
        self.normalizer.into_table()
    }

    /// With `eof`, the last group; else a request for more input.
    fn finish_group(&mut self, eof: bool) -> Result<Option<Cut>> {
        if eof {
            self.flush_group();
        }
        Ok(self.ready.pop_front())
    }

    /// Stores one complete top-level field.
    fn unit(&mut self, number: u32, unit: Bytes, header_len: usize) {
        self.units += 1;
        let (min, avg, max) = (
            self.spec.min as usize,
            self.spec.avg as usize,
            self.spec.max as usize,
        );
        let normalized = match self.mode {
            CutMode::Normalized => self.normalizer.unit(number, &unit, header_len),
            _ => None,
        };
        let (stored, spans) = match normalized {
            Some(n) => (Bytes::from(n.bytes), n.spans),
            None => (unit.clone(), Vec::new()),
        };
        if unit.len() > max {
            self.flush_group();
            let mut at = 0;
            for piece in cut_around(&self.fastcdc, &stored, &spans) {
                let has = spans_within(&spans, &piece);
                let cut = self.checked(stored.slice(piece.clone()), &unit[piece.clone()], has);
                self.ready.push_back(cut);
                at = piece.end;
            }
            debug_assert_eq!(at, unit.len());
            return;
        }
        if unit.len() >= min {
            self.flush_group();
            let cut = self.checked(stored, &unit, !spans.is_empty());
            self.ready.push_back(cut);
            return;
        }
        if self.group.stored.len() + unit.len() > max {
            self.flush_group();
        }
        self.group.stored.extend_from_slice(&stored);
        self.group.original.extend_from_slice(&unit);
        self.group.normalized |= !spans.is_empty();
        let len = self.group.stored.len();
        // Content-defined: a group closes after a unit whose hash says so, once it is at
        // least `min`, so an edit moves the groups around it only.
        let closes = xxhash_rust::xxh3::xxh3_64(&stored) & 1 == 0;
        if len >= avg || (len >= min && closes) {
            self.flush_group();
        }
    }

    fn flush_group(&mut self) {
        if self.group.stored.is_empty() {
            return;
        }
        let group = std::mem::take(&mut self.group);
        let cut = self.checked(Bytes::from(group.stored), &group.original, group.normalized);
        self.ready.push_back(cut);
    }

    /// The chunk to store for `stored` (normalized when `has_placeholders`) and its original
    /// bytes: normalized only when the original holds nothing that looks like a placeholder
    /// ([`placeholders_in`]) and restoring gives the original back exactly; the original
    /// otherwise.
    fn checked(&self, stored: Bytes, original: &[u8], has_placeholders: bool) -> Cut {
        if has_placeholders
            && placeholders_in(original).next().is_none()
            && self.normalizer.table().restores_to(&stored, original)
        {
            return Cut {
                data: stored,
                normalized: true,
            };
        }
        Cut {
            data: if has_placeholders {
                Bytes::copy_from_slice(original)
            } else {
                stored
            },
            normalized: false,
        }
    }
}

/// FastCDC cuts of one oversized unit, moved off any placeholder they would split or part
/// from its framing spaces (to the space before it, or the one after it when it starts the
/// piece), so every placeholder lies whole, with its spaces, in one chunk.
fn cut_around<'a>(
    fastcdc: &'a FastCdc,
    data: &'a [u8],
    spans: &'a [Range<usize>],
) -> impl Iterator<Item = Range<usize>> + 'a {
    let mut at = 0;
    std::iter::from_fn(move || {
        if at >= data.len() {
            return None;
        }
        let mut end = at + fastcdc.next_cut(&data[at..], true);
        // The span that starts last at or before `end`; cutting anywhere in `start..=end`
        // would part it from a framing space.
        let i = spans.partition_point(|s| s.start <= end);
        if let Some(s) = i.checked_sub(1).map(|i| &spans[i])
            && s.end >= end
            && end < data.len()
        {
            end = if s.start - 1 > at {
                s.start - 1
            } else {
                s.end + 1
            };
        }
        let piece = at..end;
        at = end;
        Some(piece)
    })
}

/// Whether any placeholder lies inside `piece`.
fn spans_within(spans: &[Range<usize>], piece: &Range<usize>) -> bool {
    let i = spans.partition_point(|s| s.start < piece.start);
    spans.get(i).is_some_and(|s| s.end <= piece.end)
}
