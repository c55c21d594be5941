//! `follow`: new committed events as a writer (in this or another process) appends them.
//!
//! The follower remembers a position (segment, offset, next seq) and, on every poll, reads
//! that segment from there to its current end (a copy, never a map) and scans it. A frame
//! that is not complete yet is a write in flight: the poll stops before it and picks it up
//! next time. When the segment is sealed (its trailer follows the last frame) the follower
//! moves to the segment named by the next seq, which the writer creates right after
//! sealing.

use std::path::PathBuf;

use super::{Inspector, Problem, live_read};
use crate::error::{Error, Result};
use crate::event::{Event, StoreId};
use crate::format;
use crate::segment::{self, FrameScan, SEGMENT_HEADER_BYTES, ScannedFrame, SegmentHeader, Trailer};

/// Follows the log of a store: each [`poll`](Follower::poll) hands over the events
/// committed since the previous one.
///
/// ```
/// use strata::inspect::Follower;
/// use strata::{NewEvent, Options, Store};
/// use serde_json::json;
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path(), Options::default())?;
/// store.append(NewEvent::create("Contact", "c1", json!({})))?;
/// let mut follower = Follower::new(dir.path(), None)?; // from the end: only new events
/// store.append(NewEvent::update("c1", json!({"stage": "Won"})))?;
/// let mut seen = Vec::new();
/// follower.poll(&mut |ev| { seen.push(ev.seq); Ok(()) })?;
/// assert_eq!(seen, [2]);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Follower {
    inspector: Inspector,
    /// The segment being followed.
    path: PathBuf,
    /// Its header, once it has been read.
    header: Option<SegmentHeader>,
    /// Where the next frame starts in it.
    offset: u64,
    /// The seq the next frame starts at.
    next_seq: u64,
    /// Events before this seq are passed over silently.
    first_seq: u64,
}

impl Follower {
    /// Starts following the store in `dir`: from `from_seq` when given (events already
    /// committed from there on come with the first poll), else from the end of the log.
    ///
    /// ```
    /// use strata::{NewEvent, Options, Store};
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path(), Options::default())?;
    /// store.append(NewEvent::create("Contact", "c1", serde_json::json!({})))?;
    /// let mut follower = strata::inspect::Follower::new(dir.path(), Some(1))?;
    /// assert_eq!(follower.poll(&mut |_| Ok(()))?, 1);
    /// assert_eq!(follower.next_seq(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn new(dir: impl AsRef<std::path::Path>, from_seq: Option<u64>) -> Result<Follower> {
        let inspector = Inspector::open(dir)?;
        let target = from_seq.unwrap_or(u64::MAX).max(1);
        let segments = &inspector.listing.segments;
        let (base, name) = segments.iter().rev().find(|(base, _)| *base <= target).or(segments.first()).cloned().unwrap_or_default();
        let path = inspector.dir.join(name);
        let mut follower =
            Follower { inspector, path, header: None, offset: SEGMENT_HEADER_BYTES as u64, next_seq: base, first_seq: target };
        if from_seq.is_none() {
            // Skip what is already committed, without decoding it.
            follower.advance(None)?;
            follower.first_seq = follower.next_seq;
        }
        Ok(follower)
    }

    /// The seq the next committed event will have.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// drop(strata::Store::open(dir.path(), strata::Options::default())?);
    /// assert_eq!(strata::inspect::Follower::new(dir.path(), None)?.next_seq(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Calls `each` with every event committed since the last poll, in seq order, and
    /// returns how many there were. It never waits: call it again to see more.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// drop(strata::Store::open(dir.path(), strata::Options::default())?);
    /// let mut follower = strata::inspect::Follower::new(dir.path(), None)?;
    /// assert_eq!(follower.poll(&mut |_| Ok(()))?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn poll(&mut self, each: &mut dyn FnMut(Event) -> Result<()>) -> Result<u64> {
        self.advance(Some(each))
    }

    /// Scans forward from the position; decodes and hands over events when `each` is given.
    ///
    /// Each look reads only what follows the frames already handed over (up to the end of
    /// the file: the frames being written, the reserved space, the trailer once sealed),
    /// into memory of its own: the segment may be the active one, which the writer fills and
    /// cuts short under readers (module doc of `inspect`). So a poll costs what the writer
    /// added since the last one plus the reserved space, not the whole segment again. Damage
    /// seen in it is read again before it is believed (`live_read`): the read may have raced
    /// a write.
    fn advance(&mut self, mut each: Option<&mut dyn FnMut(Event) -> Result<()>>) -> Result<u64> {
        let mut count = 0u64;
        // Set once a later segment was seen while this one had no trailer or bad bytes: one
        // more look settles whether they were being written or are damage.
        let mut next_segment_seen = false;
        'look: loop {
            let header = match self.header {
                Some(h) => h,
                None => match self.read_header()? {
                    Some(h) => *self.header.insert(h),
                    None => return Ok(count), // not created yet, or being created
                },
            };
            // The tail of the segment from the next frame on; its offsets are the file's
            // minus `base`.
            let (base, next_seq) = (self.offset, self.next_seq);
            let tail = live_read::read_settled(self.inspector.storage.as_ref(), &self.path, base, |t| {
                live_read::damage_in(t, base, &header, 0, next_seq)
            })
            .map_err(|e| Error::io(&self.path, e))?;
            let trailer = match Trailer::find_in_tail(&tail, base) {
                Some(Ok(t)) => Some(t),
                _ => None,
            };
            let end = trailer.as_ref().map_or(tail.len(), |t| (t.index_offset - base) as usize);
            let mut scan = FrameScan::new(&tail, header.salt, 0, end, self.next_seq);
            if trailer.is_none() && header.format_version >= format::RESERVED_SPACE_VERSION {
                // The active segment: the reserved space after its frames is where the next
                // frames will be written.
                scan = scan.with_reserved_tail();
            }
            for item in scan.by_ref() {
                let frame = match item {
                    Ok(f) => ScannedFrame { offset: base + f.offset, ..f },
                    Err(bad) => {
                        let proof = segment::frame_proving_damage(&tail, base, header.salt, bad.offset as usize, self.next_seq);
                        if trailer.is_some() || proof.is_some() {
                            return Err(Error::corruption(&self.path, base + bad.offset, bad.reason));
                        }
                        // A write in flight (next time), unless the writer has left this
                        // segment: it seals a segment before it creates the next, so then
                        // nothing here is in flight and the bad bytes (a damaged frame, or
                        // a trailer that fails its checks) are damage. One more look first:
                        // the seal may have completed since this read.
                        if !self.later_segment_exists(header.base_seq)? {
                            return Ok(count);
                        }
                        if next_segment_seen {
                            return Err(Error::corruption(&self.path, base + bad.offset, bad.reason));
                        }
                        next_segment_seen = true;
                        continue 'look;
                    }
                };
                if let Some(each) = each.as_mut().filter(|_| frame.header.next_seq() > self.first_seq) {
                    let decoded = self.inspector.decode(&self.path, &frame, header.salt).map_err(Problem::into_error)?;
                    let first_seq = self.first_seq;
                    Inspector::frame_events(&self.path, &frame, StoreId(header.store_id), &decoded, &mut |ev| {
                        if ev.seq < first_seq {
                            return Ok(());
                        }
                        count += 1;
                        each(ev)
                    })?;
                }
                self.offset = frame.offset + u64::from(frame.header.len);
                self.next_seq = frame.header.next_seq();
            }
            match trailer {
                Some(t) if t.next_seq != self.next_seq => {
                    return Err(Error::corruption(&self.path, t.index_offset, "trailer does not match the segment's frames"));
                }
                Some(_) => self.move_to_next_segment(),
                // No frame in it yet: the writer has just created it.
                None if self.next_seq == header.base_seq => return Ok(count),
                // No trailer: still being written, unless the writer has left the segment.
                None => {
                    if !self.later_segment_exists(header.base_seq)? {
                        return Ok(count);
                    }
                    if next_segment_seen {
                        let reason = "segment has no trailer but a later segment exists";
                        return Err(Error::corruption(&self.path, base + tail.len() as u64, reason));
                    }
                    next_segment_seen = true;
                }
            }
        }
    }

    /// The header of the segment being followed, checked against the seq it must start
    /// at; `None` while the file does not exist or is shorter than a header (the writer
    /// seals a segment before it creates the next one, and creates it before it writes the
    /// header).
    fn read_header(&self) -> Result<Option<SegmentHeader>> {
        let bytes = match self.inspector.storage.read_copy_at(&self.path, 0, SEGMENT_HEADER_BYTES as u64) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&self.path, e)),
        };
        if bytes.len() < SEGMENT_HEADER_BYTES {
            return Ok(None);
        }
        let h = SegmentHeader::parse(&bytes).map_err(|e| Error::corruption(&self.path, 0, format!("bad segment header: {e:?}")))?;
        if h.base_seq != self.next_seq {
            let reason = format!("segment starts at seq {} but seq {} was expected", h.base_seq, self.next_seq);
            return Err(Error::corruption(&self.path, 16, reason));
        }
        Ok(Some(h))
    }

    /// Whether the directory holds a segment after the one starting at `base_seq`.
    fn later_segment_exists(&self, base_seq: u64) -> Result<bool> {
        let dir = &self.inspector.dir;
        let names = self.inspector.storage.list_dir(dir).map_err(|e| Error::io(dir, e))?;
        Ok(names.iter().filter_map(|n| format::parse_segment_file_name(n)).any(|seq| seq > base_seq))
    }

    fn move_to_next_segment(&mut self) {
        self.path = self.inspector.dir.join(format::segment_file_name(self.next_seq));
        self.header = None;
        self.offset = SEGMENT_HEADER_BYTES as u64;
    }
}
