//! The streaming cutter: input bytes in, chunks (in their stored form) out.

use std::collections::VecDeque;
use std::ops::Range;

use bytes::{Bytes, BytesMut};

use super::normalize::{Edit, Normalizer, scan};
use super::versions::{VersionTable, placeholders_in};
use super::wire::{self, LEN, Peek};
use crate::chunking::{ChunkerSpec, FastCdc, Splitter};
use crate::error::Result;

/// Largest top-level field read whole (and normalized). A larger one is cut by FastCDC as it
/// streams by, untransformed, so memory stays bounded whatever the index holds.
pub const MAX_UNIT_BUFFER: usize = 64 << 20;

/// Complete units held back to be scanned together, on several threads, once they hold this
/// many bytes (or once the cutter needs more input or meets anything but a unit).
const SCAN_BATCH: usize = 8 << 20;
/// A batch smaller than this is scanned on the calling thread alone.
const SCAN_PARALLEL_MIN: usize = 512 << 10;
/// Most threads one cutter scans on.
const SCAN_THREADS_MAX: usize = 4;

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
    /// Complete units not yet scanned and cut, in order.
    pending: Vec<Unit>,
    pending_bytes: usize,
    /// Threads a batch of units is scanned on.
    scan_threads: usize,
}

/// One complete top-level field of an index.
#[derive(Debug)]
struct Unit {
    number: u32,
    bytes: Bytes,
    header_len: usize,
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
            pending: Vec::new(),
            pending_bytes: 0,
            scan_threads: std::thread::available_parallelism()
                .map_or(1, |n| n.get().min(SCAN_THREADS_MAX)),
        })
    }

    /// The same cutter scanning on `threads` threads (tests: the chunks must not depend on it).
    #[cfg(test)]
    pub(crate) fn with_scan_threads(mut self, threads: usize) -> Self {
        self.scan_threads = threads;
        self
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
            let peeked = wire::peek(&self.input);
            if let Peek::Header(h) = peeked
                && (1..=3).contains(&h.number)
                && h.wire == LEN
                && (h.header_len as u64).saturating_add(h.value_len)
                    <= (self.input.len().min(MAX_UNIT_BUFFER) as u64)
            {
                // A complete unit: held back until the batch is full.
                let total = h.header_len + h.value_len as usize;
                self.pending.push(Unit {
                    number: h.number,
                    bytes: self.input.split_to(total).freeze(),
                    header_len: h.header_len,
                });
                self.pending_bytes += total;
                if self.pending_bytes >= SCAN_BATCH {
                    self.cut_pending();
                }
                continue;
            }
            if !self.pending.is_empty() {
                // Whatever comes next follows the units held back.
                self.cut_pending();
                continue;
            }
            match peeked {
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
                    // Not complete: a complete one was taken above.
                    if eof {
                        // Cut short: not an index after all.
                        self.flush_group();
                        self.plain = true;
                        continue;
                    }
                    return Ok(None);
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

    /// Cuts the units held back, in order. Scanning for versions and editing the units (and
    /// FastCDC inside large ones) run on several threads; claiming placeholders and grouping
    /// tiny units run here, in blob order.
    fn cut_pending(&mut self) {
        let pending = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let sizes: Vec<usize> = pending.iter().map(|u| u.bytes.len()).collect();
        let edits: Vec<Vec<Edit>> = if self.mode == CutMode::Normalized {
            let scans = par_map(&sizes, self.scan_threads, |i| {
                let u = &pending[i];
                scan(u.number, &u.bytes, u.header_len)
            });
            pending
                .iter()
                .zip(scans)
                .map(|(u, found)| match found {
                    Some(found) => self.normalizer.claim(&u.bytes, &found),
                    None => Vec::new(),
                })
                .collect()
        } else {
            Vec::new()
        };
        let (spec, fastcdc) = (self.spec, &self.fastcdc);
        let prepared = par_map(&sizes, self.scan_threads, |i| {
            let edits = edits.get(i).map_or(&[][..], Vec::as_slice);
            prepare(&pending[i].bytes, edits, spec, fastcdc)
        });
        self.units += pending.len() as u64;
        for p in prepared {
            self.place(p);
        }
    }

    /// Takes one prepared unit, in blob order: chunks of its own, or a place in the group.
    fn place(&mut self, unit: Prepared) {
        let (min, avg, max) = (
            self.spec.min as usize,
            self.spec.avg as usize,
            self.spec.max as usize,
        );
        let (stored, original, normalized, closes) = match unit {
            Prepared::Cuts(cuts) => {
                self.flush_group();
                self.ready.extend(cuts);
                return;
            }
            Prepared::Tiny {
                stored,
                original,
                normalized,
                closes,
            } => (stored, original, normalized, closes),
        };
        if self.group.stored.len() + stored.len() > max {
            self.flush_group();
        }
        self.group.stored.extend_from_slice(&stored);
        self.group.original.extend_from_slice(&original);
        self.group.normalized |= normalized;
        let len = self.group.stored.len();
        // Content-defined: a group closes after a unit whose hash says so, once it is at
        // least `min`, so an edit moves the groups around it only.
        if len >= avg || (len >= min && closes) {
            self.flush_group();
        }
    }

    /// Stores the group of tiny units, checked against the whole blob's table (a placeholder
    /// pattern could straddle two units, so the group is checked as one).
    fn flush_group(&mut self) {
        if self.group.stored.is_empty() {
            return;
        }
        let group = std::mem::take(&mut self.group);
        let cut = self.checked_group(Bytes::from(group.stored), &group.original, group.normalized);
        self.ready.push_back(cut);
    }

    /// The chunk to store for `stored` (normalized when `has_placeholders`) and its original
    /// bytes: normalized only when the original holds nothing that looks like a placeholder
    /// ([`placeholders_in`]) and restoring gives the original back exactly; the original
    /// otherwise.
    fn checked_group(&self, stored: Bytes, original: &[u8], has_placeholders: bool) -> Cut {
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

/// `f` of every index `0..weights.len()`, in order: on the calling thread for a small batch,
/// else on up to `threads` threads, each taking a run of consecutive indices of about the
/// same weight (bytes).
fn par_map<R: Send>(weights: &[usize], threads: usize, f: impl Fn(usize) -> R + Sync) -> Vec<R> {
    let total: usize = weights.iter().sum();
    if threads <= 1 || total < SCAN_PARALLEL_MIN || weights.len() < 2 {
        return (0..weights.len()).map(f).collect();
    }
    let share = total.div_ceil(threads);
    let mut runs = Vec::with_capacity(threads);
    let (mut start, mut run_weight) = (0, 0);
    for (i, w) in weights.iter().enumerate() {
        run_weight += w;
        if run_weight >= share && runs.len() + 1 < threads {
            runs.push(start..i + 1);
            (start, run_weight) = (i + 1, 0);
        }
    }
    runs.push(start..weights.len());
    let f = &f;
    std::thread::scope(|s| {
        let others: Vec<_> = runs[1..]
            .iter()
            .map(|run| {
                let run = run.clone();
                s.spawn(move || run.map(f).collect::<Vec<R>>())
            })
            .collect();
        let mut all: Vec<R> = runs[0].clone().map(f).collect();
        for handle in others {
            match handle.join() {
                Ok(part) => all.extend(part),
                // Only a bug panics here; the panic goes on in this thread.
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        all
    })
}

/// A unit ready to be placed.
#[derive(Debug)]
enum Prepared {
    /// A unit of at least the chunker's `min`: its own chunk, or its FastCDC pieces.
    Cuts(Vec<Cut>),
    /// A smaller unit, to be grouped with its neighbours.
    Tiny {
        stored: Bytes,
        original: Bytes,
        normalized: bool,
        /// Whether a group may close after it.
        closes: bool,
    },
}

/// Edits `unit` (its placeholders written where `edits` say) and cuts it when it is large
/// enough to stand alone. Depends on nothing but its arguments, so units are prepared on
/// several threads.
fn prepare(unit: &Bytes, edits: &[Edit], spec: ChunkerSpec, fastcdc: &FastCdc) -> Prepared {
    let (min, max) = (spec.min as usize, spec.max as usize);
    let stored = if edits.is_empty() {
        unit.clone()
    } else {
        let mut out = unit.to_vec();
        for e in edits {
            out[e.span.clone()].copy_from_slice(&e.placeholder);
        }
        Bytes::from(out)
    };
    let spans: Vec<Range<usize>> = edits.iter().map(|e| e.span.clone()).collect();
    if unit.len() < min {
        return Prepared::Tiny {
            closes: xxhash_rust::xxh3::xxh3_64(&stored) & 1 == 0,
            stored,
            original: unit.clone(),
            normalized: !spans.is_empty(),
        };
    }
    // A placeholder pattern in the original makes every piece of the unit unsafe to
    // normalize; none in the unit means none in any piece.
    let clean = spans.is_empty() || placeholders_in(unit).next().is_none();
    if unit.len() <= max {
        return Prepared::Cuts(vec![checked(stored, unit.clone(), &spans, clean)]);
    }
    let cuts = cut_around(fastcdc, &stored, &spans)
        .map(|piece| {
            let first = spans.partition_point(|s| s.start < piece.start);
            let last = spans.partition_point(|s| s.end <= piece.end);
            let inside: Vec<Range<usize>> = spans[first..last.max(first)]
                .iter()
                .map(|s| s.start - piece.start..s.end - piece.start)
                .collect();
            checked(
                stored.slice(piece.clone()),
                unit.slice(piece),
                &inside,
                clean,
            )
        })
        .collect();
    Prepared::Cuts(cuts)
}

/// The chunk to store for the `stored` form of `original`, with placeholders at `spans`:
/// normalized only when the original holds no placeholder pattern (`clean`) and the
/// placeholders found in `stored` are exactly those at `spans`, with every other byte
/// unchanged, so that restoring gives the original back; the original otherwise.
fn checked(stored: Bytes, original: Bytes, spans: &[Range<usize>], clean: bool) -> Cut {
    let normalized = !spans.is_empty() && clean && restores_at(&stored, &original, spans);
    Cut {
        data: if normalized { stored } else { original },
        normalized,
    }
}

/// Whether `stored` is `original` with placeholders at exactly `spans` (and nothing else that
/// [`placeholders_in`] would take for one). The placeholders' versions are the original's
/// bytes there, which is what the blob's table says of them.
fn restores_at(stored: &[u8], original: &[u8], spans: &[Range<usize>]) -> bool {
    if stored.len() != original.len() {
        return false;
    }
    let mut expected = spans.iter();
    let mut at = 0;
    for found in placeholders_in(stored) {
        if expected.next() != Some(&found) || stored[at..found.start] != original[at..found.start] {
            return false;
        }
        at = found.end;
    }
    expected.next().is_none() && stored[at..] == original[at..]
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
