//! The ordered set of segments and the frame index (seq -> file and offset) over them:
//! every read of an event by seq goes through here.
//!
//! Reads take `Bytes` views of segment files: sealed segments are mapped once; the active
//! segment is re-mapped when a read needs bytes committed after the last mapping, up to what
//! the writer has written (never its reserved space, which the writer still fills). Nothing is
//! read past what the writer has committed, because the frame index only lists committed
//! frames.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use parking_lot::RwLock;

use crate::dictionary::Dictionaries;
use crate::error::{Error, Result};
use crate::event::{Event, StoreId};
use crate::frame::{self, DecodedFrame, FrameHeader};
use crate::record::RecordView;
use crate::segment::SegmentHeader;
use crate::storage::Storage;
use crate::timestamp::Timestamp;

/// Offsets inside a segment are kept in the low 40 bits of a location; the segment's
/// position in the set in the high 24.
const OFFSET_BITS: u32 = 40;
/// The largest segment the location packing allows (1 TiB).
pub(crate) const MAX_SEGMENT_BYTES: u64 = 1 << OFFSET_BITS;

/// One segment file, open for reading.
#[derive(Debug)]
pub(crate) struct SegmentHandle {
    pub(crate) path: PathBuf,
    pub(crate) header: SegmentHeader,
    storage: Arc<dyn Storage>,
    mapped: RwLock<Bytes>,
    /// How much of the file is written and never changes again: all of a sealed segment; of
    /// the active one, the frames written so far (not the reserved space after them, which
    /// the writer still fills). A re-map covers this much and no more.
    written: AtomicU64,
}

impl SegmentHandle {
    pub(crate) fn new(path: PathBuf, header: SegmentHeader, storage: Arc<dyn Storage>, mapped: Bytes) -> Self {
        let written = AtomicU64::new(mapped.len() as u64);
        SegmentHandle { path, header, storage, mapped: RwLock::new(mapped), written }
    }

    /// Records that the writer has written the active segment up to `len` (called after
    /// each write, before the frames in it are published).
    pub(crate) fn set_written(&self, len: u64) {
        self.written.fetch_max(len, Ordering::Release);
    }

    /// Keeps only `[0, len)` of the current mapping: what recovery found to be the active
    /// segment's frames, without the reserved space after them.
    pub(crate) fn limit_mapped(&self, len: u64) {
        let mut mapped = self.mapped.write();
        let len = usize::try_from(len).unwrap_or(usize::MAX).min(mapped.len());
        *mapped = mapped.slice(..len);
        self.written.store(len as u64, Ordering::Release);
    }

    /// A view of the file that covers at least `[0, end)`.
    pub(crate) fn bytes_to(&self, end: u64) -> Result<Bytes> {
        {
            let mapped = self.mapped.read();
            if mapped.len() as u64 >= end {
                return Ok(mapped.clone());
            }
        }
        let written = self.written.load(Ordering::Acquire).max(end);
        let fresh = self.storage.read_prefix(&self.path, written).map_err(|e| Error::io(&self.path, e))?;
        if (fresh.len() as u64) < end {
            return Err(Error::corruption(&self.path, fresh.len() as u64, format!("segment ends before committed offset {end}")));
        }
        *self.mapped.write() = fresh.clone();
        Ok(fresh)
    }

    /// The frame starting at `offset`, after checking its header (not its CRC).
    pub(crate) fn frame_at(&self, offset: u64) -> Result<(Bytes, FrameHeader)> {
        let head = self.bytes_to(offset + frame::FRAME_HEADER_BYTES as u64)?;
        let header = FrameHeader::parse(&head[offset as usize..]).map_err(|r| Error::corruption(&self.path, offset, r))?;
        let end = offset + u64::from(header.len);
        let bytes = self.bytes_to(end)?;
        Ok((bytes.slice(offset as usize..end as usize), header))
    }
}

/// Where a frame is: its first seq and its packed location.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameRef {
    pub(crate) base_seq: u64,
    location: u64,
}

/// Set in a location whose frame has not had its CRC checked by this process (it came from a
/// checkpoint, and open does not rescan what a checkpoint covers). A point read checks such a
/// frame's CRC once; frames written or replayed by this process were checked already.
const UNCHECKED: u64 = 1 << 63;

impl FrameRef {
    pub(crate) fn new(base_seq: u64, segment: usize, offset: u64) -> Self {
        debug_assert!(offset < MAX_SEGMENT_BYTES && segment < (1 << (63 - OFFSET_BITS)));
        FrameRef { base_seq, location: ((segment as u64) << OFFSET_BITS) | offset }
    }

    /// The same frame, marked as not CRC-checked yet.
    pub(crate) fn unchecked(self) -> Self {
        FrameRef { location: self.location | UNCHECKED, ..self }
    }

    pub(crate) fn is_unchecked(&self) -> bool {
        self.location & UNCHECKED != 0
    }

    pub(crate) fn segment(&self) -> usize {
        ((self.location & !UNCHECKED) >> OFFSET_BITS) as usize
    }

    pub(crate) fn offset(&self) -> u64 {
        self.location & (MAX_SEGMENT_BYTES - 1)
    }
}

/// A frame found by [`SegmentSet::locate`].
#[derive(Debug)]
pub(crate) struct Located {
    pub(crate) segment: Arc<SegmentHandle>,
    pub(crate) offset: u64,
    pub(crate) base_seq: u64,
    /// Position in the frame index.
    pub(crate) position: usize,
    /// The frame's CRC has not been checked by this process yet.
    pub(crate) unchecked: bool,
}

/// The segments of a store and the index of their committed frames.
#[derive(Debug, Default)]
pub(crate) struct SegmentSet {
    pub(crate) segments: Vec<Arc<SegmentHandle>>,
    pub(crate) frames: Vec<FrameRef>,
}

impl SegmentSet {
    /// The frame holding `seq`.
    pub(crate) fn locate(&self, seq: u64) -> Option<Located> {
        let position = self.frames.partition_point(|f| f.base_seq <= seq).checked_sub(1)?;
        let f = self.frames[position];
        let segment = self.segments.get(f.segment())?.clone();
        Some(Located { segment, offset: f.offset(), base_seq: f.base_seq, position, unchecked: f.is_unchecked() })
    }

    /// Records that the frame at `position` passed its CRC check.
    pub(crate) fn mark_checked(&mut self, position: usize) {
        if let Some(f) = self.frames.get_mut(position) {
            f.location &= !UNCHECKED;
        }
    }

    /// The position in the frame index of the frame that holds `seq` (or of the first frame
    /// after it).
    pub(crate) fn frame_position(&self, seq: u64) -> usize {
        self.frames.partition_point(|f| f.base_seq <= seq).saturating_sub(1)
    }

    /// Up to `max` frames from position `position` of the frame index.
    pub(crate) fn frames_at(&self, position: usize, max: usize) -> Vec<(Arc<SegmentHandle>, u64)> {
        let frames = self.frames.get(position..).unwrap_or_default();
        frames.iter().take(max).filter_map(|f| Some((self.segments.get(f.segment())?.clone(), f.offset()))).collect()
    }
}

/// Turns a decoded record into an [`Event`], parsing its JSON.
pub(crate) fn to_event(rec: &RecordView<'_>, seq: u64, batch: u64, store: StoreId) -> std::result::Result<Event, String> {
    let data: serde_json::Value = serde_json::from_slice(rec.data).map_err(|e| format!("event data is not JSON: {e}"))?;
    let metadata = match rec.metadata {
        Some(m) => serde_json::from_slice(m).map_err(|e| format!("event metadata is not JSON: {e}"))?,
        None => serde_json::Value::Object(Default::default()),
    };
    Ok(Event {
        seq,
        id: rec.id.map_or_else(|| store.event_id(seq), str::to_string),
        event_type: rec.event_type.to_string(),
        entity: rec.entity.to_string(),
        actor: rec.actor.map(str::to_string),
        timestamp: Timestamp::from_micros(rec.timestamp),
        version: rec.version,
        data,
        metadata,
        batch,
        store,
    })
}

/// Reads the single event `seq` from the frame at `offset` of `segment`, decompressing only
/// the chunk that holds it.
pub(crate) fn read_event(at: &Located, seq: u64, dicts: &Dictionaries) -> Result<Event> {
    let (segment, offset) = (&at.segment, at.offset);
    let (bytes, header) = segment.frame_at(offset)?;
    let corrupt = |reason: String| Error::corruption(&segment.path, offset, reason);
    // The chunk CRC covers only a chunk's payload: the header and the chunk table, which say
    // which seq each record is, are covered by the frame CRC alone. A frame this process has
    // not checked (one covered by a checkpoint) gets its CRC checked before its header is
    // trusted; checking every frame on every point read would cost a pass over a whole
    // batch for one event.
    if at.unchecked && !frame::verify_crc(&bytes, segment.header.salt) {
        return Err(corrupt("frame CRC mismatch".into()));
    }
    if header.base_seq != at.base_seq {
        return Err(corrupt(format!("frame starts at seq {} but the index says {}", header.base_seq, at.base_seq)));
    }
    let entries = frame::chunk_table(&bytes, &header).map_err(|r| corrupt(r.into()))?;
    if seq < header.base_seq {
        return Err(corrupt(format!("seq {seq} is before its frame (which starts at seq {})", header.base_seq)));
    }
    let mut first = header.base_seq;
    for (i, entry) in entries.iter().enumerate() {
        let next = first.saturating_add(u64::from(entry.records));
        if seq < next {
            let at = frame::chunk_offset(&entries, i);
            let stored = &bytes[at..at + entry.stored_len as usize];
            let raw = frame::decode_chunk(stored, entry, header.dict_id, dicts).map_err(|r| corrupt(format!("chunk {i}: {r}")))?;
            let want = (seq - first) as usize;
            let mut found = None;
            frame::decode_records(&raw, &header, entry.records, |j, rec| {
                if j == want {
                    found = Some(to_event(&rec, seq, header.base_seq, StoreId(segment.header.store_id))?);
                }
                Ok(())
            })
            .map_err(&corrupt)?;
            return found.ok_or_else(|| corrupt(format!("seq {seq} is not in its frame")));
        }
        first = next;
    }
    Err(corrupt(format!("seq {seq} is past the end of its frame")))
}

/// Decodes the whole frame at `offset` (checking its CRC).
pub(crate) fn read_frame(segment: &SegmentHandle, offset: u64, dicts: &Dictionaries) -> Result<DecodedFrame> {
    let (bytes, _) = segment.frame_at(offset)?;
    DecodedFrame::decode(&bytes, segment.header.salt, dicts).map_err(|r| Error::corruption(&segment.path, offset, r))
}
