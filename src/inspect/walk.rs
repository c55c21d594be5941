//! The walk over the log that every read-only command shares: segment by segment, one
//! segment's bytes at a time (a copy, never a map: see the module doc of `inspect`), with
//! the same checks and the same torn-tail rule as recovery (`recovery::replay`), so that
//! what the tool calls damage is what `Store::open` calls damage. Unlike replay it can keep
//! going past damage (for `verify` and `segments`), resynchronising on the next frame with a
//! valid CRC.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::{Inspector, Problem, live_read};
use crate::entity::Entity;
use crate::entity_index::EntityIndex;
use crate::error::{Error, Result};
use crate::event::{Event, StoreId};
use crate::event_query::EventQuery;
use crate::format;
use crate::frame::{DecodedFrame, FrameHeader};
use crate::projection;
use crate::segment::{self, FrameScan, HeaderError, SEGMENT_HEADER_BYTES, ScannedFrame, SegmentHeader, Trailer};
use crate::segment_set;
use crate::timestamp::Timestamp;

/// Whether a segment is sealed (it has a valid trailer and is never written again), active
/// (the writer may still append to it) or damaged.
///
/// ```
/// use strata::inspect::SegmentState;
/// assert_eq!(SegmentState::Sealed.to_string(), "sealed");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegmentState {
    /// It has a valid trailer.
    Sealed,
    /// The newest segment, without a trailer: the writer appends to it.
    Active,
    /// A check failed in it (see the problem reported for it).
    Damaged,
}

impl std::fmt::Display for SegmentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SegmentState::Sealed => "sealed",
            SegmentState::Active => "active",
            SegmentState::Damaged => "damaged",
        })
    }
}

/// What one segment file holds, as far as its frames can be read.
///
/// ```
/// use strata::{NewEvent, Options, Store};
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path(), Options::default())?;
/// store.append(NewEvent::create("Contact", "c1", serde_json::json!({"name": "Alice"})))?;
/// let (segments, problems) = strata::inspect::Inspector::open(dir.path())?.segments()?;
/// assert!(problems.is_empty());
/// assert_eq!((segments[0].base_seq, segments[0].last_seq(), segments[0].records), (1, Some(1), 1));
/// assert_eq!(segments[0].state, strata::inspect::SegmentState::Active);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentSummary {
    /// The segment file.
    pub path: PathBuf,
    /// The seq of its first record (from its file name).
    pub base_seq: u64,
    /// Good frames (one per committed batch).
    pub frames: u64,
    /// Records (events) in the good frames.
    pub records: u64,
    /// The seq after the last good frame.
    pub next_seq: u64,
    /// The file's length.
    pub file_bytes: u64,
    /// Bytes of the good frames (compressed, with their headers).
    pub stored_bytes: u64,
    /// Uncompressed record bytes in the good frames.
    pub raw_bytes: u64,
    /// The smallest record timestamp, if it has frames.
    pub min_ts: Option<Timestamp>,
    /// The largest record timestamp, if it has frames.
    pub max_ts: Option<Timestamp>,
    /// Sealed, active or damaged.
    pub state: SegmentState,
    /// Bytes after the last good frame of the active segment: a write in flight, or a torn
    /// tail left by a crash.
    pub uncommitted_bytes: u64,
    /// Reserved space: zeros from the end of the active segment's data to the end of the
    /// file, which the writer reserved ahead and fills with the next frames (not data, not
    /// damage; a cleanly closed store has none).
    pub reserved_bytes: u64,
}

impl SegmentSummary {
    fn new(path: PathBuf, base_seq: u64, file_bytes: u64) -> Self {
        SegmentSummary {
            path,
            base_seq,
            frames: 0,
            records: 0,
            next_seq: base_seq,
            file_bytes,
            stored_bytes: 0,
            raw_bytes: 0,
            min_ts: None,
            max_ts: None,
            state: SegmentState::Active,
            uncommitted_bytes: 0,
            reserved_bytes: 0,
        }
    }

    fn add_frame(&mut self, header: &FrameHeader) {
        self.frames += 1;
        self.records += u64::from(header.record_count);
        self.next_seq = header.next_seq();
        self.stored_bytes += u64::from(header.len);
        self.raw_bytes += u64::from(header.raw_len);
        let (min, max) = (Timestamp::from_micros(header.min_ts), Timestamp::from_micros(header.max_ts));
        self.min_ts = Some(self.min_ts.map_or(min, |t| t.min(min)));
        self.max_ts = Some(self.max_ts.map_or(max, |t| t.max(max)));
    }

    /// The seq of its last record, if it has any.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// drop(strata::Store::open(dir.path(), strata::Options::default())?);
    /// let (segments, _) = strata::inspect::Inspector::open(dir.path())?.segments()?;
    /// assert_eq!(segments[0].last_seq(), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn last_seq(&self) -> Option<u64> {
        (self.records > 0).then(|| self.next_seq - 1)
    }

    /// Uncompressed bytes per stored byte (0 when it has no frames).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// drop(strata::Store::open(dir.path(), strata::Options::default())?);
    /// let (segments, _) = strata::inspect::Inspector::open(dir.path())?.segments()?;
    /// assert_eq!(segments[0].compression_ratio(), 0.0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn compression_ratio(&self) -> f64 {
        ratio(self.raw_bytes, self.stored_bytes)
    }
}

pub(super) fn ratio(raw: u64, stored: u64) -> f64 {
    if stored == 0 { 0.0 } else { raw as f64 / stored as f64 }
}

/// How far a long walk has got, for a progress bar.
///
/// ```
/// let p = strata::inspect::Progress { done_bytes: 50, total_bytes: 200 };
/// assert_eq!(p.fraction(), 0.25);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Segment bytes walked so far.
    pub done_bytes: u64,
    /// Segment bytes in the store when the walk started.
    pub total_bytes: u64,
}

impl Progress {
    /// The fraction done, in `[0, 1]`.
    ///
    /// ```
    /// assert_eq!(strata::inspect::Progress { done_bytes: 0, total_bytes: 0 }.fraction(), 1.0);
    /// ```
    pub fn fraction(&self) -> f64 {
        if self.total_bytes == 0 { 1.0 } else { (self.done_bytes as f64 / self.total_bytes as f64).min(1.0) }
    }
}

/// Which state of an entity to rebuild.
///
/// ```
/// use strata::inspect::AsOf;
/// let at = AsOf::Time(strata::Timestamp::parse("2026-01-01T00:00:00Z")?);
/// assert_ne!(at, AsOf::Latest);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AsOf {
    /// After its last committed event.
    Latest,
    /// After this version (1 is the state after its creation).
    Version(u64),
    /// After its last event at or before this time.
    Time(Timestamp),
}

/// One good frame met by a walk.
pub(super) struct Visit<'a> {
    pub(super) path: &'a Path,
    /// The segment's position in the store's list of segments.
    pub(super) segment: usize,
    pub(super) frame: &'a ScannedFrame<'a>,
    pub(super) salt: u64,
    pub(super) store: StoreId,
    /// The decoded frame, when the walk decodes.
    pub(super) decoded: Option<&'a DecodedFrame>,
}

pub(super) type Visitor<'v> = dyn FnMut(&Visit<'_>) -> Result<ControlFlow<()>> + 'v;

/// What a walk does.
#[derive(Default)]
pub(super) struct Walk<'p> {
    /// Decode every frame (chunk CRCs, decompression, records).
    pub(super) decode: bool,
    /// Feed every record of the intact prefix to an entity index (checks version chains).
    pub(super) index: bool,
    /// Report damage and keep going instead of failing at the first (non-torn) damage.
    pub(super) keep_going: bool,
    /// Skip segments that end before this seq (only when neither indexing nor keeping going).
    pub(super) from_seq: u64,
    pub(super) progress: Option<&'p mut dyn FnMut(Progress)>,
}

/// What a walk found.
#[derive(Default)]
pub(super) struct Walked {
    pub(super) segments: Vec<SegmentSummary>,
    /// Damage met, in log order (only when keeping going; otherwise damage is an error).
    pub(super) problems: Vec<Problem>,
    /// A torn tail met when not keeping going: the write in flight the walk stopped at.
    pub(super) uncommitted: Option<Problem>,
    pub(super) index: Option<EntityIndex>,
    /// The seq after the last frame of the intact prefix.
    pub(super) next_seq: u64,
    /// The visitor asked to stop.
    pub(super) stopped: bool,
}

/// The state carried from one segment to the next.
struct Chain {
    /// The seq the next segment must start at, when known.
    expected: Option<u64>,
    store_id: Option<u64>,
    prev_sealed: bool,
    /// No damage met so far.
    intact: bool,
    done_bytes: u64,
    total_bytes: u64,
}

impl Inspector {
    /// Walks the log, calling `visit` for every good frame, in seq order.
    pub(super) fn walk(&self, mut walk: Walk<'_>, visit: &mut Visitor<'_>) -> Result<Walked> {
        let mut out = Walked { next_seq: 1, ..Walked::default() };
        if walk.index {
            out.index = Some(EntityIndex::new(StoreId(0), 1));
        }
        let mut chain = Chain { expected: Some(1), store_id: None, prev_sealed: false, intact: true, done_bytes: 0, total_bytes: 0 };
        if walk.progress.is_some() {
            for (_, name) in &self.listing.segments {
                let path = self.dir.join(name);
                chain.total_bytes += self.storage.file_len(&path).map_err(|e| Error::io(&path, e))?;
            }
        }
        let count = self.listing.segments.len();
        let may_skip = !walk.index && !walk.keep_going;
        for (i, (base, name)) in self.listing.segments.iter().enumerate() {
            let next_base = self.listing.segments.get(i + 1).map(|(b, _)| *b);
            if may_skip && next_base.is_some_and(|b| b <= walk.from_seq) {
                // Everything in it is before the first seq asked for.
                (chain.expected, chain.prev_sealed) = (None, true);
                continue;
            }
            let path = self.dir.join(name);
            // A copy, never a map (module doc of `inspect`): the file may be cut short under us.
            // The newest segment may be being written: damage in it is read twice.
            let bytes = match i + 1 == count {
                true => live_read::read_settled(self.storage.as_ref(), &path, 0, |b| {
                    SegmentHeader::parse(b).ok().and_then(|h| live_read::damage_in(b, 0, &h, SEGMENT_HEADER_BYTES, h.base_seq))
                }),
                false => self.storage.read_copy(&path),
            }
            .map_err(|e| Error::io(&path, e))?;
            let mut summary = SegmentSummary::new(path.clone(), *base, bytes.len() as u64);
            let seg = Segment { index: i, count, last: i + 1 == count, path: &path, base: *base, bytes: &bytes };
            let result = self.walk_segment(&seg, &mut walk, &mut chain, &mut out, &mut summary, visit);
            chain.done_bytes += bytes.len() as u64;
            out.segments.push(summary);
            result?;
            if out.stopped || out.uncommitted.is_some() {
                break;
            }
        }
        Ok(out)
    }

    /// Records damage: an error when not keeping going (a torn tail instead stops the walk
    /// quietly: it is a write in flight or what a crash left, never committed data).
    fn damage(walk: &Walk<'_>, chain: &mut Chain, out: &mut Walked, problem: Problem) -> Result<()> {
        chain.intact = false;
        match (walk.keep_going, problem.torn_tail) {
            (true, _) => out.problems.push(problem),
            (false, true) => out.uncommitted = Some(problem),
            (false, false) => return Err(problem.into_error()),
        }
        Ok(())
    }

    fn walk_segment(
        &self,
        seg: &Segment<'_>,
        walk: &mut Walk<'_>,
        chain: &mut Chain,
        out: &mut Walked,
        summary: &mut SegmentSummary,
        visit: &mut Visitor<'_>,
    ) -> Result<()> {
        let before = out.problems.len();
        let Some(header) = self.check_header(seg, walk, chain, out)? else {
            let torn = out.problems.last().or(out.uncommitted.as_ref()).is_some_and(|p| p.torn_tail && p.file == seg.path);
            summary.state = if torn { SegmentState::Active } else { SegmentState::Damaged };
            summary.uncommitted_bytes = if torn { summary.file_bytes } else { 0 };
            (chain.expected, chain.prev_sealed) = (None, false);
            return Ok(());
        };
        if out.problems.len() > before {
            summary.state = SegmentState::Damaged;
        }
        let before = out.problems.len();
        let len = seg.bytes.len();
        let (end, sealed) = match Trailer::find(seg.bytes) {
            Some(Ok(t)) => (t.index_offset as usize, Some(t)),
            Some(Err((offset, reason))) if !seg.last => {
                Self::damage(walk, chain, out, Problem::new(seg.path, offset, reason))?;
                (len, None)
            }
            None if !seg.last => {
                Self::damage(walk, chain, out, Problem::new(seg.path, len as u64, "segment has no trailer but a later segment exists"))?;
                (len, None)
            }
            _ => (len, None),
        };
        // After a bad or missing trailer the scan meets the trailer's bytes as a bad frame:
        // that damage is already reported.
        let quiet = out.problems.len() > before;
        if quiet {
            summary.state = SegmentState::Damaged;
        }
        let mut listed: Vec<(u64, u64)> = Vec::new();
        let (mut from, mut next_seq) = (SEGMENT_HEADER_BYTES, header.base_seq);
        let mut whole = true;
        // The active segment may end in reserved space, as in recovery.
        let reserving = seg.last && sealed.is_none() && header.format_version >= format::RESERVED_SPACE_VERSION;
        loop {
            let scan = FrameScan::new(seg.bytes, header.salt, from, end, next_seq);
            let mut scan = if reserving { scan.with_reserved_tail() } else { scan };
            let mut bad = None;
            for item in scan.by_ref() {
                match item {
                    Ok(frame) => {
                        next_seq = frame.header.next_seq();
                        listed.push((frame.header.base_seq, frame.offset));
                        summary.add_frame(&frame.header);
                        self.on_frame(seg, &header, &frame, walk, chain, out, visit)?;
                        if out.stopped {
                            return Ok(());
                        }
                    }
                    Err(b) => bad = Some(b),
                }
            }
            summary.reserved_bytes = scan.reserved_bytes();
            let Some(bad) = bad else { break };
            whole = false;
            // The same rule as recovery: a torn tail unless a later frame proves the bad bytes
            // were written (a durable mark past them, or no sector of zeros in them). Frames
            // after a torn tail are not committed: no resync past it.
            let proof = segment::frame_proving_damage(seg.bytes, 0, header.salt, bad.offset as usize, next_seq);
            let torn = seg.last && sealed.is_none() && proof.is_none();
            let after = if torn { None } else { segment::find_valid_frame_after(seg.bytes, header.salt, bad.offset as usize, next_seq) };
            if torn {
                // A partial frame: what follows its last non-zero byte is reserved space.
                let data_end = if reserving { segment::end_before_zeros(seg.bytes).max(bad.offset as usize) } else { len };
                summary.uncommitted_bytes = data_end as u64 - bad.offset;
                summary.reserved_bytes = (len - data_end) as u64;
            } else {
                summary.state = SegmentState::Damaged;
            }
            if quiet {
                break;
            }
            Self::damage(walk, chain, out, Problem { torn_tail: torn, ..Problem::new(seg.path, bad.offset, bad.reason) })?;
            match after.and_then(|at| FrameHeader::parse(seg.bytes.get(at as usize..)?).ok().map(|h| (at, h))) {
                Some((at, h)) if walk.keep_going => (from, next_seq) = (at as usize, h.base_seq),
                _ => break,
            }
        }
        if let Some(t) = &sealed {
            if whole && summary.state != SegmentState::Damaged {
                summary.state = SegmentState::Sealed;
            }
            if whole && (t.next_seq != next_seq || t.frames != listed) {
                summary.state = SegmentState::Damaged;
                Self::damage(walk, chain, out, Problem::new(seg.path, t.index_offset, "trailer does not match the segment's frames"))?;
            }
        }
        chain.prev_sealed = sealed.is_some();
        chain.expected = match &sealed {
            Some(t) => Some(t.next_seq),
            None => whole.then_some(next_seq),
        };
        Ok(())
    }

    /// Checks a segment's header, its store id and its first seq; `None` when the header
    /// itself is unreadable (the damage is recorded).
    fn check_header(&self, seg: &Segment<'_>, walk: &Walk<'_>, chain: &mut Chain, out: &mut Walked) -> Result<Option<SegmentHeader>> {
        let header = match SegmentHeader::parse(seg.bytes) {
            Ok(h) => h,
            Err(HeaderError::BadMagic) if seg.index == 0 && seg.count == 1 => {
                let reason = "the first segment does not start with strata's magic number".into();
                return Err(Error::NotAStore { path: seg.path.to_path_buf(), reason });
            }
            Err(HeaderError::NewerVersion(found)) => {
                return Err(Error::UnsupportedVersion { path: seg.path.to_path_buf(), found, supported: format::FORMAT_VERSION });
            }
            Err(e) => {
                let reason = match e {
                    HeaderError::Damaged(r) => r.to_string(),
                    _ => "segment header has a bad magic number".into(),
                };
                // A crash while creating a segment leaves at most a partial header.
                let torn = seg.last && seg.bytes.len() <= SEGMENT_HEADER_BYTES && (seg.index == 0 || chain.prev_sealed);
                Self::damage(walk, chain, out, Problem { torn_tail: torn, ..Problem::new(seg.path, 0, reason) })?;
                return Ok(None);
            }
        };
        let store_id = *chain.store_id.get_or_insert(header.store_id);
        if let Some(index) = out.index.as_mut().filter(|_| chain.intact) {
            index.store_id = StoreId(store_id);
        }
        if header.store_id != store_id {
            Self::damage(walk, chain, out, Problem::new(seg.path, 24, "segment belongs to another store (store id differs)"))?;
        }
        let expected = chain.expected.unwrap_or(header.base_seq);
        if header.base_seq != seg.base {
            let reason = format!("segment header starts at seq {} but its file name says {}", header.base_seq, seg.base);
            Self::damage(walk, chain, out, Problem::new(seg.path, 16, reason))?;
        } else if header.base_seq != expected {
            let reason = format!("segment starts at seq {} but seq {expected} was expected", header.base_seq);
            Self::damage(walk, chain, out, Problem::new(seg.path, 16, reason))?;
        }
        Ok(Some(header))
    }

    #[allow(clippy::too_many_arguments)]
    fn on_frame(
        &self,
        seg: &Segment<'_>,
        header: &SegmentHeader,
        frame: &ScannedFrame<'_>,
        walk: &mut Walk<'_>,
        chain: &mut Chain,
        out: &mut Walked,
        visit: &mut Visitor<'_>,
    ) -> Result<()> {
        let decoded = match walk.decode || walk.index {
            true => match self.decode(seg.path, frame, header.salt) {
                Ok(d) => Some(d),
                Err(problem) => {
                    Self::damage(walk, chain, out, problem)?;
                    None
                }
            },
            false => None,
        };
        if let (Some(index), Some(d), true) = (out.index.as_mut(), decoded.as_ref(), chain.intact) {
            let next_seq = frame.header.next_seq();
            if let Err(r) = d.for_each_record(|seq, rec| index.apply_record(seq, &rec, next_seq, false)) {
                let reason = format!("{r} (the frame's CRC is valid: the log is inconsistent)");
                Self::damage(walk, chain, out, Problem::new(seg.path, frame.offset, reason))?;
            }
        }
        if chain.intact {
            out.next_seq = frame.header.next_seq();
        }
        let v = Visit {
            path: seg.path,
            segment: seg.index,
            frame,
            salt: header.salt,
            store: StoreId(header.store_id),
            decoded: decoded.as_ref(),
        };
        if visit(&v)?.is_break() {
            out.stopped = true;
        }
        if let Some(progress) = walk.progress.as_mut() {
            let done_bytes = chain.done_bytes + frame.offset + u64::from(frame.header.len);
            progress(Progress { done_bytes, total_bytes: chain.total_bytes });
        }
        Ok(())
    }

    /// Decodes a frame that passed the scan's checks: chunk CRCs, decompression, records.
    pub(super) fn decode(&self, path: &Path, frame: &ScannedFrame<'_>, salt: u64) -> std::result::Result<DecodedFrame, Problem> {
        self.ensure_dictionary(frame.header.dict_id);
        let decoded = DecodedFrame::decode(frame.bytes, salt, &self.dicts).map_err(|r| Problem::new(path, frame.offset, r))?;
        decoded.for_each_record(|_, _| Ok(())).map_err(|r| Problem::new(path, frame.offset, r))?;
        Ok(decoded)
    }

    /// The events of one decoded frame (from `path` at `frame.offset`, written by `store`),
    /// as the API returns them.
    pub(super) fn frame_events(
        path: &Path,
        frame: &ScannedFrame<'_>,
        store: StoreId,
        decoded: &DecodedFrame,
        each: &mut dyn FnMut(Event) -> Result<()>,
    ) -> Result<()> {
        let base = frame.header.base_seq;
        // `for_each_record` carries errors as text: keep the caller's own error whole.
        let mut failed = None;
        decoded
            .for_each_record(|seq, rec| {
                let ev = segment_set::to_event(&rec, seq, base, store)?;
                each(ev).map_err(|e| {
                    let text = e.to_string();
                    failed = Some(e);
                    text
                })
            })
            .map_err(|r| failed.take().unwrap_or_else(|| Error::corruption(path, frame.offset, r)))
    }

    /// Every segment with what it holds, and the damage met (a torn tail included).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// drop(strata::Store::open(dir.path(), strata::Options::default())?);
    /// let (segments, problems) = strata::inspect::Inspector::open(dir.path())?.segments()?;
    /// assert_eq!((segments.len(), problems.len()), (1, 0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn segments(&self) -> Result<(Vec<SegmentSummary>, Vec<Problem>)> {
        let walked = self.walk(Walk { keep_going: true, ..Walk::default() }, &mut |_| Ok(ControlFlow::Continue(())))?;
        Ok((walked.segments, walked.problems))
    }

    /// Calls `each` with every committed event matching `query` (and with a seq at most
    /// `to_seq`), in seq order, until it returns `Break` or the query's limit is reached.
    /// A write in flight at the end of the log is not committed and is not shown; any
    /// other damage ends the walk with [`Error::Corruption`] after the events before it.
    ///
    /// ```
    /// use std::ops::ControlFlow;
    /// use strata::{EventQuery, NewEvent, Options, Store};
    /// use serde_json::json;
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path(), Options::default())?;
    /// store.append(NewEvent::create("Deal", "d1", json!({"amount": 5})))?;
    /// store.append(NewEvent::create("Contact", "c1", json!({})))?;
    /// let mut deals = 0;
    /// let inspector = strata::inspect::Inspector::open(dir.path())?;
    /// inspector.events(&EventQuery::new().event_type("Deal.*"), None, &mut |_| {
    ///     deals += 1;
    ///     Ok(ControlFlow::Continue(()))
    /// })?;
    /// assert_eq!(deals, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn events(&self, query: &EventQuery, to_seq: Option<u64>, each: &mut dyn FnMut(Event) -> Result<ControlFlow<()>>) -> Result<()> {
        let limit = query.limit.unwrap_or(usize::MAX);
        let to_seq = to_seq.unwrap_or(u64::MAX);
        if limit == 0 {
            return Ok(());
        }
        let mut sent = 0usize;
        let first = query.after_seq.saturating_add(1);
        let mut visit = |v: &Visit<'_>| -> Result<ControlFlow<()>> {
            let h = &v.frame.header;
            if h.base_seq > to_seq {
                return Ok(ControlFlow::Break(()));
            }
            if h.next_seq() <= first || !query.frame_may_match(h.min_ts, h.max_ts) {
                return Ok(ControlFlow::Continue(()));
            }
            let decoded = self.decode(v.path, v.frame, v.salt).map_err(Problem::into_error)?;
            let mut flow = ControlFlow::Continue(());
            Self::frame_events(v.path, v.frame, v.store, &decoded, &mut |ev| {
                if flow.is_continue() && ev.seq <= to_seq && query.matches(&ev) {
                    flow = each(ev)?;
                    sent += 1;
                    if sent >= limit {
                        flow = ControlFlow::Break(());
                    }
                }
                Ok(())
            })?;
            Ok(flow)
        };
        self.walk(Walk { from_seq: first, ..Walk::default() }, &mut visit)?;
        Ok(())
    }

    /// Every committed event of entity `id`, in version order.
    ///
    /// ```
    /// use strata::{NewEvent, Options, Store};
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path(), Options::default())?;
    /// store.append(NewEvent::create("Contact", "c1", serde_json::json!({})))?;
    /// store.append(NewEvent::delete("c1"))?;
    /// let history = strata::inspect::Inspector::open(dir.path())?.history("c1")?;
    /// assert_eq!(history.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn history(&self, id: &str) -> Result<Vec<Event>> {
        let mut events = Vec::new();
        self.events(&EventQuery::new().entity(id), None, &mut |ev| {
            events.push(ev);
            Ok(ControlFlow::Continue(()))
        })?;
        Ok(events)
    }

    /// The entity as of `at`, rebuilt by folding its events with the same projection the
    /// store uses; `None` when it did not exist then.
    ///
    /// ```
    /// use strata::inspect::AsOf;
    /// use strata::{NewEvent, Options, Store};
    /// use serde_json::json;
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path(), Options::default())?;
    /// let created = store.append(NewEvent::create("Contact", "c1", json!({"stage": "Lead"})))?;
    /// store.append(NewEvent::update("c1", json!({"stage": "Won"})))?;
    /// let inspector = strata::inspect::Inspector::open(dir.path())?;
    /// assert_eq!(inspector.entity("c1", AsOf::Latest)?.unwrap().state["stage"], "Won");
    /// assert_eq!(inspector.entity("c1", AsOf::Version(1))?.unwrap().state["stage"], "Lead");
    /// assert_eq!(inspector.entity("c1", AsOf::Time(created.timestamp))?.unwrap().version, 1);
    /// assert_eq!(inspector.entity("c1", AsOf::Version(3))?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn entity(&self, id: &str, at: AsOf) -> Result<Option<Entity>> {
        let history = self.history(id)?;
        Ok(fold(&history, at))
    }
}

/// Folds `history` (one entity's events in version order) up to `at`.
pub(super) fn fold(history: &[Event], at: AsOf) -> Option<Entity> {
    if at == AsOf::Version(0) {
        return None;
    }
    let mut entity = None;
    for ev in history {
        let include = match at {
            AsOf::Latest => true,
            AsOf::Version(v) => ev.version <= v,
            AsOf::Time(ts) => ev.timestamp <= ts,
        };
        if !include {
            break;
        }
        projection::apply(&mut entity, &ev.entity, &ev.event_type, ev.version, ev.timestamp, projection::data_object(&ev.data));
    }
    match at {
        AsOf::Version(v) => entity.filter(|e: &Entity| e.version == v),
        _ => entity,
    }
}

/// One segment being walked.
struct Segment<'a> {
    index: usize,
    count: usize,
    last: bool,
    path: &'a Path,
    base: u64,
    bytes: &'a [u8],
}
