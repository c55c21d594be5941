//! The write path: a group of batches committed as frames, one write and one fsync per
//! group, segment roll and seal, dictionary training, and the poisoning rule.
//!
//! group_commit.rs decides which batches form a group and who commits it (the leader, under
//! the writer lock); this module commits it. A group is checked against the current state
//! (plus the group's own earlier batches), encoded as one frame per batch, written with one positioned write at
//! the end of the active segment's frames (into space reserved ahead, so that the sync has
//! no file-size change to commit) and made durable with one `sync_data`, and only then
//! applied to the in-memory index: readers never see an event that is not durable, and a
//! failed batch writes nothing.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

use crate::dictionary;
use crate::entity::Entity;
use crate::entity_index::EntityIndex;
use crate::error::{Error, Result};
use crate::event::{self, Event, NewEvent, Operation, RESERVED_METADATA_KEYS, StoreId};
use crate::format;
use crate::frame::FrameEncoder;
use crate::group_commit::{Pending, Slot};
use crate::options::Durability;
use crate::projection;
use crate::record::{self, RecordView};
use crate::segment::{SEGMENT_HEADER_BYTES, SegmentHeader, Trailer};
use crate::segment_set::{FrameRef, SegmentHandle, SegmentSet};
use crate::storage::{Storage, StorageFile};
use crate::store::Shared;
use crate::timestamp::Timestamp;

/// What readers see: the committed log and the index over it.
#[derive(Debug)]
pub(crate) struct View {
    pub(crate) log: SegmentSet,
    pub(crate) index: EntityIndex,
    /// The seq the next event will get.
    pub(crate) next_seq: u64,
    /// The newest timestamp in the log.
    pub(crate) last_ts: i64,
}

/// Space reserved ahead in the active segment at a time (capped at the segment size limit).
/// The writer allocates it (`fallocate`) and writes its zeros, so that frames are later
/// written over blocks the file system already holds as data: the fdatasync of an append
/// then has neither a file-size change nor an unwritten-extent conversion to commit
/// (format-spec.md, "Reserved space"). On ext4 here a 2 KiB write + fdatasync costs about
/// 80 us inside written zeros, 120 us inside space only `fallocate`d, and more when it grows
/// the file. One step costs about 1.6 ms of extra sync once per MiB.
pub(crate) const RESERVE_STEP_BYTES: u64 = 1 << 20;

/// The largest frame buffer the writer keeps for the next group.
const FRAME_BUF_MAX_KEPT: usize = 4 << 20;

/// The zeros written into newly reserved space, a buffer at a time.
static ZEROS: [u8; 64 << 10] = [0; 64 << 10];

/// The segment being appended to.
///
/// Invariants: frames end at `len`; `len <= allocated`, the file length the writer has made
/// (reserved or written); bytes in `[len, allocated)` are zeros (reserved space), where the
/// next frames go. Where the file system cannot reserve, the file is simply `len` long.
#[derive(Debug)]
pub(crate) struct ActiveSegment {
    pub(crate) handle: Arc<SegmentHandle>,
    pub(crate) file: Arc<dyn StorageFile>,
    pub(crate) segment_no: usize,
    /// The end of the frames: where the next frame is written.
    pub(crate) len: u64,
    /// The end of the reserved space (the file's length as the writer left it).
    pub(crate) allocated: u64,
    /// Reserve space up to at most this offset (0: never reserve; a segment of format
    /// version 1, which readers of that version would take a zero tail in for a torn tail).
    pub(crate) reserve_limit: u64,
    pub(crate) frames: Vec<(u64, u64)>,
    pub(crate) min_ts: i64,
    pub(crate) max_ts: i64,
    pub(crate) raw_bytes: u64,
    /// The seq after the segment's last frame.
    pub(crate) next_seq: u64,
    /// The offset up to which the segment is known durable (synced): the `durable_to` mark of
    /// the frames written next (format version 3).
    pub(crate) durable_to: u64,
}

impl ActiveSegment {
    /// An active segment with no frames yet, `len` bytes long and no space reserved.
    pub(crate) fn new(handle: Arc<SegmentHandle>, file: Arc<dyn StorageFile>, segment_no: usize, len: u64) -> Self {
        let next_seq = handle.header.base_seq;
        ActiveSegment {
            handle,
            file,
            segment_no,
            len,
            allocated: len,
            reserve_limit: 0,
            frames: Vec::new(),
            min_ts: i64::MAX,
            max_ts: i64::MIN,
            raw_bytes: 0,
            next_seq,
            durable_to: len,
        }
    }

    /// Lets the writer reserve space up to `segment_size_bytes`, in a segment whose format
    /// version allows reserved space.
    pub(crate) fn reserving(mut self, segment_size_bytes: u64) -> Self {
        if self.handle.header.format_version >= format::RESERVED_SPACE_VERSION {
            self.reserve_limit = segment_size_bytes;
        }
        self
    }
}

/// Samples of raw records kept until a dictionary is trained.
#[derive(Debug, Default)]
pub(crate) struct Sampler {
    bytes: Vec<u8>,
    sizes: Vec<usize>,
}

/// A few buffers kept for reuse, so that a stream of big batches does not allocate (and
/// fault in) fresh buffers for each.
#[derive(Debug)]
pub(crate) struct BufferPool<T>(Vec<Vec<T>>);

impl<T> Default for BufferPool<T> {
    fn default() -> Self {
        BufferPool(Vec::new())
    }
}

impl<T> BufferPool<T> {
    /// At most this many buffers are kept, none bigger than `MAX_KEPT_BYTES`.
    const MAX_KEPT: usize = 8;
    const MAX_KEPT_BYTES: usize = 4 << 20;

    fn take(&mut self) -> Vec<T> {
        self.0.pop().unwrap_or_default()
    }

    fn put(&mut self, mut buf: Vec<T>) {
        if self.0.len() < Self::MAX_KEPT && buf.capacity().saturating_mul(size_of::<T>()) <= Self::MAX_KEPT_BYTES {
            buf.clear();
            self.0.push(buf);
        }
    }
}

/// The single writer's state, behind the writer lock.
#[derive(Debug)]
pub(crate) struct Writer {
    pub(crate) active: ActiveSegment,
    pub(crate) encoder: FrameEncoder,
    pub(crate) next_seq: u64,
    pub(crate) last_ts: i64,
    pub(crate) poisoned: Option<String>,
    pub(crate) sampler: Option<Sampler>,
    pub(crate) next_dict_id: u32,
    /// Data written since the last sync.
    pub(crate) dirty: bool,
    /// How long the last sync of a commit took (group commit gathers for about that long).
    pub(crate) last_sync: std::time::Duration,
    /// Buffers for batches' JSON, reused from group to group.
    pub(crate) json_buffers: BufferPool<u8>,
    /// Where each event's JSON is in its batch's buffer, per batch.
    pub(crate) payload_buffers: BufferPool<Payload>,
    /// The entities a group touches (kept between groups for its tables).
    pub(crate) overlay: Overlay,
    /// The index's entities for the batch being checked (kept between batches).
    pub(crate) indexed_scratch: Vec<Option<(Arc<str>, Pendingstate)>>,
    /// The frames of the group being written (kept between groups).
    pub(crate) frame_buf: Vec<u8>,
    pub(crate) events_since_checkpoint: u64,
    pub(crate) bytes_since_checkpoint: u64,
}

impl std::fmt::Debug for FrameEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FrameEncoder").field("dict_id", &self.dict_id()).finish()
    }
}

/// An entity as the writer sees it while checking a group: the index plus the group's own
/// earlier events.
#[derive(Debug, Clone)]
pub(crate) struct Pendingstate {
    kind: Arc<str>,
    version: u64,
    deleted: bool,
    /// Materialized only when a validator needs it.
    state: Option<Entity>,
}

/// A batch that passed its checks, ready to encode.
struct Prepared {
    slot: Arc<Slot>,
    batch: Checked,
}

/// A checked batch: its events, and their data and metadata encoded as JSON.
struct Checked {
    events: Vec<Event>,
    payloads: Vec<Payload>,
    /// The JSON of every event of the batch, back to back (one buffer, not one per event).
    json: Vec<u8>,
}

impl Checked {
    /// The record of event `i`, as written to the log.
    fn record(&self, i: usize) -> RecordView<'_> {
        let (ev, payload) = (&self.events[i], &self.payloads[i]);
        RecordView {
            entity: &ev.entity,
            event_type: &ev.event_type,
            version: ev.version,
            timestamp: ev.timestamp.as_micros(),
            actor: ev.actor.as_deref(),
            id: payload.caller_id.then_some(ev.id.as_str()),
            data: &self.json[payload.data.clone()],
            metadata: payload.metadata.clone().map(|m| &self.json[m]),
        }
    }

    fn records(&self) -> impl Iterator<Item = RecordView<'_>> + Clone {
        (0..self.events.len()).map(|i| self.record(i))
    }
}

/// Where an event's encoded JSON is in its batch's buffer.
#[derive(Debug)]
pub(crate) struct Payload {
    data: std::ops::Range<usize>,
    metadata: Option<std::ops::Range<usize>>,
    /// The id was supplied by the caller (and is stored); generated ids are not stored.
    caller_id: bool,
}

/// The writer's view of the entities a group touches, by id, with an undo log so that a
/// batch that fails its checks leaves no trace for the batches after it in the group.
/// Keys are the index's own `Arc<str>` ids where the entity exists: no allocation per event.
/// The writer keeps one and clears it after each group, so that big batches do not allocate
/// (and free) its tables every time.
#[derive(Debug, Default)]
pub(crate) struct Overlay {
    states: HashMap<Arc<str>, Pendingstate, foldhash::fast::RandomState>,
    /// What the current batch replaced, oldest first: `None` where the id was new.
    undo: Vec<(Arc<str>, Option<Pendingstate>)>,
}

impl Overlay {
    /// Entries above which a cleared overlay gives its memory back.
    const MAX_KEPT: usize = 1 << 16;

    fn get_key_value(&self, id: &str) -> Option<(&Arc<str>, &Pendingstate)> {
        self.states.get_key_value(id)
    }

    fn contains_key(&self, id: &str) -> bool {
        self.states.contains_key(id)
    }

    /// Starts a batch: its changes can be undone until the next `begin`.
    fn begin(&mut self, events: usize) {
        self.undo.clear();
        self.states.reserve(events);
    }

    fn insert(&mut self, id: Arc<str>, state: Pendingstate) {
        let old = self.states.insert(id.clone(), state);
        self.undo.push((id, old));
    }

    /// Undoes the current batch's changes.
    fn roll_back(&mut self) {
        while let Some((id, old)) = self.undo.pop() {
            match old {
                Some(state) => self.states.insert(id, state),
                None => self.states.remove(&id),
            };
        }
    }

    /// Empties the overlay for the next group, keeping its tables unless they grew huge.
    fn clear(&mut self) {
        if self.states.capacity() > Self::MAX_KEPT {
            *self = Overlay::default();
        } else {
            self.states.clear();
            self.undo.clear();
        }
    }
}

impl Writer {
    /// How long the last sync of a commit took.
    pub(crate) fn last_sync(&self) -> std::time::Duration {
        self.last_sync
    }

    /// Whether enough has been appended since the last checkpoint to write one.
    pub(crate) fn checkpoint_due(&self, o: &crate::options::Options) -> bool {
        (o.checkpoint_every_events > 0 && self.events_since_checkpoint >= o.checkpoint_every_events)
            || (o.checkpoint_every_bytes > 0 && self.bytes_since_checkpoint >= o.checkpoint_every_bytes)
    }

    /// Commits a group of queued batches (and any that must wait for a group of their own).
    pub(crate) fn commit_group(&mut self, shared: &Shared, group: Vec<Pending>) {
        let deferred = self.commit_once(shared, group);
        if !deferred.is_empty() {
            self.commit_group(shared, deferred);
        }
    }

    /// Commits one group; returns the batches that must wait for the next one.
    fn commit_once(&mut self, shared: &Shared, group: Vec<Pending>) -> Vec<Pending> {
        if let Some(cause) = &self.poisoned {
            for p in group {
                p.slot.fill(Err(Error::Poisoned { cause: cause.clone() }));
            }
            return Vec::new();
        }
        let mut overlay = std::mem::take(&mut self.overlay);
        let mut group_ids: HashSet<String> = HashSet::new();
        let mut prepared = Vec::new();
        // One view of the validators for the whole group, so that every batch in it is
        // checked against the same set (and the state they track stays consistent).
        let validators = shared.validators.read();
        // A retry of an id that an earlier batch of this group is writing waits for the next
        // group, where it finds the id stored and gets the stored events back.
        let mut deferred = Vec::new();
        for p in group {
            let ids: Vec<String> = p.batch.iter().filter_map(|e| e.id.clone()).collect();
            if ids.iter().any(|id| group_ids.contains(id)) {
                deferred.push(p);
                continue;
            }
            overlay.begin(p.batch.len());
            let result = self.prepare(shared, &validators, p.batch, &mut overlay, &group_ids);
            if !matches!(result, Ok(Ok(_))) {
                overlay.roll_back();
            }
            match result {
                Ok(Ok(batch)) => {
                    group_ids.extend(ids);
                    self.next_seq += batch.events.len() as u64;
                    self.last_ts = self.last_ts.max(batch.events.iter().map(|e| e.timestamp.as_micros()).max().unwrap_or(i64::MIN));
                    prepared.push(Prepared { slot: p.slot, batch });
                }
                Ok(Err(existing)) => p.slot.fill(Ok(existing)),
                Err(e) => p.slot.fill(Err(e)),
            }
        }
        drop(validators);
        overlay.clear();
        self.overlay = overlay;
        if prepared.is_empty() {
            return deferred;
        }
        match self.write_group(shared, &prepared) {
            Ok(frames) => {
                let mut view = shared.view.write();
                for (p, frame) in prepared.iter().zip(frames) {
                    view.log.frames.push(frame);
                    for (ev, rec) in p.batch.events.iter().zip(p.batch.records()) {
                        if let Err(reason) = view.index.apply_record(ev.seq, &rec, ev.seq + 1, true) {
                            // The checks above make this unreachable; refuse further writes
                            // rather than continue with an index that disagrees with the log.
                            self.poisoned = Some(format!("internal: index rejected a checked event: {reason}"));
                        }
                        view.index.apply_state(&ev.entity, projection::data_object(&ev.data));
                    }
                }
                view.next_seq = self.next_seq;
                view.last_ts = self.last_ts;
                drop(view);
                for p in prepared {
                    self.json_buffers.put(p.batch.json);
                    self.payload_buffers.put(p.batch.payloads);
                    p.slot.fill(Ok(p.batch.events));
                }
            }
            Err(e) => {
                let cause = e.to_string();
                self.poisoned = Some(cause.clone());
                tracing::error!(store = %shared.dir.display(), error = %cause, "write failed; the writer is poisoned");
                let mut first = Some(e);
                for p in prepared {
                    let err = first.take().unwrap_or_else(|| Error::Poisoned { cause: cause.clone() });
                    p.slot.fill(Err(err));
                }
            }
        }
        deferred
    }

    /// Checks a batch and assigns seqs, versions and timestamps. `Ok(Err(events))` means
    /// every event id was already stored: those events are the result and nothing is written.
    #[allow(clippy::type_complexity)]
    fn prepare(
        &mut self,
        shared: &Shared,
        validators: &crate::store::Validators,
        batch: Vec<NewEvent>,
        overlay: &mut Overlay,
        group_ids: &HashSet<String>,
    ) -> Result<Result<Checked, Vec<Event>>> {
        if batch.is_empty() {
            return Err(Error::invalid("batch", "a batch needs at least one event"));
        }
        if let Some(existing) = self.already_stored(shared, &batch, group_ids)? {
            return Ok(Err(existing));
        }
        let store = shared.store_id;
        let batch_ts = Timestamp::now().as_micros().max(self.last_ts.saturating_add(1));
        let mut prev_ts = i64::MIN;
        let mut events = Vec::with_capacity(batch.len());
        let mut batch_bytes = 0usize;
        let mut payloads = self.payload_buffers.take();
        payloads.reserve(batch.len());
        let mut json = self.json_buffers.take();
        let mut indexed = std::mem::take(&mut self.indexed_scratch);
        self.indexed_states(shared, &batch, overlay, &mut indexed);
        for (i, (ne, indexed)) in batch.into_iter().zip(indexed.drain(..)).enumerate() {
            let seq = self.next_seq + i as u64;
            let ts = self.timestamp_for(&ne, batch_ts, prev_ts)?;
            prev_ts = ts;
            check_fields(&ne, store)?;
            let (key, current) = match overlay.get_key_value(ne.entity.as_str()) {
                Some((key, state)) => (Some(key.clone()), Some(state.clone())),
                None => indexed.map_or((None, None), |(key, state)| (Some(key), Some(state))),
            };
            let (kind, version) = check_operation(&ne, current.as_ref())?;
            let verb = match (ne.op, &ne.verb) {
                (Operation::Create, _) => "Created",
                (Operation::Delete, _) => "Deleted",
                (Operation::Restore, _) => "Restored",
                (Operation::Update, Some(v)) => v.as_str(),
                (Operation::Update, None) => "Updated",
            };
            let mut event_type = String::with_capacity(kind.len() + 1 + verb.len());
            event_type.push_str(&kind);
            event_type.push('.');
            event_type.push_str(verb);
            let caller_id = ne.id.is_some();
            let has_metadata = !ne.metadata.is_empty();
            let ev = Event {
                seq,
                id: ne.id.unwrap_or_else(|| store.event_id(seq)),
                event_type,
                entity: ne.entity,
                actor: ne.actor,
                timestamp: Timestamp::from_micros(ts),
                version,
                data: ne.data,
                metadata: Value::Object(ne.metadata),
                batch: self.next_seq,
                store,
            };
            let data = append_json(&mut json, &ev.data).map_err(|e| Error::invalid("data", e.to_string()))?;
            let meta = if has_metadata {
                Some(append_json(&mut json, &ev.metadata).map_err(|e| Error::invalid("metadata", e.to_string()))?)
            } else {
                None
            };
            let size = data.len() + meta.as_ref().map_or(0, |m| m.len()) + ev.entity.len() + ev.event_type.len() + 32;
            if size > shared.options.max_event_bytes {
                return Err(Error::TooLarge { entity: ev.entity.clone(), size, limit: shared.options.max_event_bytes });
            }
            // A batch is one frame, whose chunk count and lengths have fixed-width fields.
            let id_len = if caller_id { ev.id.len() } else { 0 };
            batch_bytes += size + ev.actor.as_ref().map_or(0, String::len) + id_len + record::MAX_OVERHEAD_BYTES;
            if batch_bytes > crate::frame::MAX_BATCH_RAW_BYTES {
                return Err(Error::invalid(
                    "batch",
                    format!("the batch is over {} bytes encoded; split it", crate::frame::MAX_BATCH_RAW_BYTES),
                ));
            }
            let next = self.next_state(shared, validators, current, &ev)?;
            overlay.insert(key.unwrap_or_else(|| Arc::from(ev.entity.as_str())), next);
            events.push(ev);
            payloads.push(Payload { data, metadata: meta, caller_id });
        }
        self.indexed_scratch = indexed;
        Ok(Ok(Checked { events, payloads, json }))
    }

    /// Returns the stored events when every event of the batch names an id already stored.
    fn already_stored(&self, shared: &Shared, batch: &[NewEvent], group_ids: &HashSet<String>) -> Result<Option<Vec<Event>>> {
        let ids: Vec<&str> = batch.iter().filter_map(|e| e.id.as_deref()).collect();
        if ids.is_empty() {
            return Ok(None);
        }
        let unique: HashSet<&str> = ids.iter().copied().collect();
        if unique.len() != ids.len() {
            return Err(Error::invalid("event id", "the same id appears twice in one batch"));
        }
        if let Some(dup) = ids.iter().find(|id| group_ids.contains(**id)) {
            return Err(Error::invalid("event id", format!("{dup:?} is being appended by a concurrent batch")));
        }
        let seqs: Vec<Option<u64>> = {
            let view = shared.view.read();
            ids.iter().map(|id| view.index.seq_of_id(id, view.next_seq)).collect()
        };
        // A generated-form id names a seq, but the event there may carry a caller-supplied
        // id instead: then the id is not stored.
        let mut stored = Vec::with_capacity(ids.len());
        for (id, seq) in ids.iter().zip(seqs) {
            if let Some(seq) = seq {
                let ev = crate::read::event(shared, seq)?;
                if ev.id == *id {
                    stored.push(ev);
                }
            }
        }
        if stored.is_empty() {
            return Ok(None);
        }
        if stored.len() != batch.len() {
            return Err(Error::invalid(
                "event id",
                "some events of the batch are already stored and some are not; retry the original batch unchanged",
            ));
        }
        Ok(Some(stored))
    }

    fn timestamp_for(&self, ne: &NewEvent, batch_ts: i64, prev_ts: i64) -> Result<i64> {
        match ne.timestamp {
            Some(t) => {
                let t = t.as_micros();
                let floor = self.last_ts.max(prev_ts.saturating_sub(1));
                if t <= self.last_ts || t < prev_ts {
                    return Err(Error::TimestampRegression {
                        given: Timestamp::from_micros(t).to_rfc3339(),
                        last: Timestamp::from_micros(floor.max(prev_ts)).to_rfc3339(),
                    });
                }
                Ok(t)
            }
            None => Ok(batch_ts.max(prev_ts)),
        }
    }

    /// The entities of `batch` as the index has them, for those the group has not touched
    /// yet (one read lock for the whole batch).
    fn indexed_states(&self, shared: &Shared, batch: &[NewEvent], overlay: &Overlay, out: &mut Vec<Option<(Arc<str>, Pendingstate)>>) {
        out.clear();
        let view = shared.view.read();
        out.extend(batch.iter().map(|ne| {
            if overlay.contains_key(ne.entity.as_str()) {
                return None;
            }
            view.index
                .entities
                .get_key_value(ne.entity.as_str())
                .map(|(id, e)| (id.clone(), Pendingstate { kind: e.kind.clone(), version: e.version(), deleted: e.deleted, state: None }))
        }));
    }

    /// The entity after `ev`, running the validators of its kind. The full state is
    /// tracked through the group only when a validator needs it.
    fn next_state(
        &self,
        shared: &Shared,
        validators: &crate::store::Validators,
        current: Option<Pendingstate>,
        ev: &Event,
    ) -> Result<Pendingstate> {
        let kind: Arc<str> = match &current {
            Some(c) => c.kind.clone(),
            None => Arc::from(ev.kind()),
        };
        let checks = validators.get(&*kind);
        let tracked = current.as_ref().and_then(|c| c.state.clone());
        let state = if checks.is_some() || tracked.is_some() {
            let before = match (tracked, &current) {
                (Some(s), _) => Some(s),
                (None, Some(c)) => crate::read::version(shared, &ev.entity, c.version)?,
                (None, None) => None,
            };
            let mut after = before.clone();
            projection::apply(&mut after, &ev.entity, &ev.event_type, ev.version, ev.timestamp, projection::data_object(&ev.data));
            let after = after.ok_or_else(|| Error::invalid("event", "internal: projection produced no entity"))?;
            for check in checks.into_iter().flatten() {
                check(before.as_ref(), ev, &after).map_err(|reason| Error::Rejected {
                    entity: ev.entity.clone(),
                    event_type: ev.event_type.clone(),
                    reason,
                })?;
            }
            Some(after)
        } else {
            None
        };
        let deleted = match projection::effect_of(&ev.event_type) {
            projection::Effect::Delete => true,
            projection::Effect::Restore | projection::Effect::Create => false,
            projection::Effect::Patch => current.as_ref().is_some_and(|c| c.deleted),
        };
        Ok(Pendingstate { kind, version: ev.version, deleted, state })
    }

    /// Writes the group's frames (rolling segments as needed) and syncs per the durability.
    fn write_group(&mut self, shared: &Shared, prepared: &[Prepared]) -> Result<Vec<FrameRef>> {
        let mut buf = std::mem::take(&mut self.frame_buf);
        buf.clear();
        let refs = self.write_frames(shared, prepared, &mut buf);
        if buf.capacity() <= FRAME_BUF_MAX_KEPT {
            self.frame_buf = buf;
        }
        refs
    }

    /// Encodes the group's frames into `buf` and writes them (see `write_group`).
    fn write_frames(&mut self, shared: &Shared, prepared: &[Prepared], buf: &mut Vec<u8>) -> Result<Vec<FrameRef>> {
        let mut refs = Vec::with_capacity(prepared.len());
        for p in prepared {
            let events = &p.batch.events;
            let base_seq = events[0].seq;
            let mut start = buf.len();
            let mut raw = self.encode(buf, base_seq, p.batch.records())?;
            let has_frames = !self.active.frames.is_empty();
            if self.active.len + buf.len() as u64 > shared.options.segment_size_bytes && has_frames {
                // Flush what precedes this frame, seal, and encode it again for the new
                // segment (its CRC is seeded with the new segment's salt).
                buf.truncate(start);
                self.flush(buf, true)?;
                buf.clear();
                self.roll(shared)?;
                start = 0;
                raw = self.encode(buf, base_seq, p.batch.records())?;
            }
            let offset = self.active.len + start as u64;
            refs.push(FrameRef::new(base_seq, self.active.segment_no, offset));
            self.active.frames.push((base_seq, offset));
            self.active.next_seq = base_seq + events.len() as u64;
            self.active.min_ts = self.active.min_ts.min(events[0].timestamp.as_micros());
            self.active.max_ts = self.active.max_ts.max(events.last().map_or(i64::MIN, |e| e.timestamp.as_micros()));
            self.active.raw_bytes += raw as u64;
            self.events_since_checkpoint += events.len() as u64;
            self.sample();
        }
        let sync = shared.options.durability == Durability::Always;
        self.bytes_since_checkpoint += buf.len() as u64;
        self.flush(buf, sync)?;
        // The group is durable now: whatever happens to a dictionary cannot fail it.
        self.maybe_train(shared);
        Ok(refs)
    }

    /// Writes `buf` at the end of the active segment's frames (reserving the next step of
    /// space first if `buf` runs past the reserved space) and syncs it if asked: a new
    /// reservation is made durable by the same sync as the frames written into it.
    fn flush(&mut self, buf: &[u8], sync: bool) -> Result<()> {
        if !buf.is_empty() {
            let end = self.active.len + buf.len() as u64;
            if end > self.active.allocated {
                self.reserve(end)?;
            }
            let active = &mut self.active;
            debug_assert!(active.len <= active.allocated, "frames past the reserved end");
            active.file.write_at(active.len, buf).map_err(|e| Error::io(&active.handle.path, e))?;
            active.len = end;
            active.allocated = active.allocated.max(end);
            active.handle.set_written(end);
            self.dirty = true;
        }
        if sync && self.dirty {
            let started = std::time::Instant::now();
            self.active.file.sync_data().map_err(|e| Error::io(&self.active.handle.path, e))?;
            self.last_sync = started.elapsed();
            self.dirty = false;
            self.active.durable_to = self.active.len;
        }
        Ok(())
    }

    /// Reserves space in the active segment so that it covers at least `end`: the next
    /// [`RESERVE_STEP_BYTES`], up to the segment size limit.
    fn reserve(&mut self, end: u64) -> Result<()> {
        let active = &mut self.active;
        if active.reserve_limit == 0 {
            return Ok(());
        }
        let target = end.saturating_add(RESERVE_STEP_BYTES).min(active.reserve_limit).max(end);
        let io = |e| Error::io(&active.handle.path, e);
        active.file.allocate(target).map_err(io)?;
        // Write the zeros too (the frames about to be written cover their own part).
        let mut at = active.allocated.max(end);
        while at < target {
            let n = (target - at).min(ZEROS.len() as u64) as usize;
            active.file.write_at(at, &ZEROS[..n]).map_err(io)?;
            at += n as u64;
        }
        active.allocated = target;
        self.dirty = true;
        Ok(())
    }

    /// Cuts the reserved space off the active segment (at a seal and at close), so that a
    /// sealed segment or a closed store has no zero tail. Not synced here.
    fn drop_reserved(&mut self) -> Result<()> {
        let active = &mut self.active;
        if active.allocated > active.len {
            active.file.set_len(active.len).map_err(|e| Error::io(&active.handle.path, e))?;
            active.allocated = active.len;
            self.dirty = true;
        }
        Ok(())
    }

    /// Closes the writer cleanly: cuts the reserved space off the active segment and syncs,
    /// so that a closed store's files end at their data. A poisoned writer writes nothing.
    pub(crate) fn close(&mut self) -> Result<()> {
        if let Some(cause) = &self.poisoned {
            return Err(Error::Poisoned { cause: cause.clone() });
        }
        if let Err(e) = self.drop_reserved() {
            self.poisoned = Some(e.to_string());
            return Err(e);
        }
        self.sync()
    }

    /// Syncs the active segment if anything is unsynced (interval flusher and close).
    pub(crate) fn sync(&mut self) -> Result<()> {
        if let Some(cause) = &self.poisoned {
            return Err(Error::Poisoned { cause: cause.clone() });
        }
        if self.dirty {
            if let Err(e) = self.active.file.sync_data() {
                let err = Error::io(&self.active.handle.path, e);
                self.poisoned = Some(err.to_string());
                return Err(err);
            }
            self.dirty = false;
            self.active.durable_to = self.active.len;
        }
        Ok(())
    }

    /// Seals the active segment when it is of a format version before the durable mark (1
    /// or 2) and holds frames, so that every frame written from now on carries the mark
    /// (format-spec.md, sections 4.4 and 13). Called at open.
    pub(crate) fn seal_older_version(&mut self, shared: &Shared) -> Result<()> {
        if self.active.handle.header.format_version < format::DURABLE_MARK_VERSION && !self.active.frames.is_empty() {
            self.roll(shared)?;
        }
        Ok(())
    }

    /// Seals the active segment with its trailer and starts a new one.
    fn roll(&mut self, shared: &Shared) -> Result<()> {
        let trailer = Trailer {
            index_offset: self.active.len,
            next_seq: self.active.next_seq,
            min_ts: self.active.min_ts,
            max_ts: self.active.max_ts,
            raw_bytes: self.active.raw_bytes,
            frames: std::mem::take(&mut self.active.frames),
        };
        // The frames are made durable before the trailer is written (a no-op with
        // `Durability::Always`, which synced them already): a sealed segment never holds a
        // frame that was not durable when it was sealed, so a bad frame in one is always
        // corruption, even after a crash that wrote pages back out of order.
        self.flush(&[], true)?;
        // The trailer goes right after the last frame (into the reserved space, reserving no
        // more) and the reserved space after it is cut off: a sealed segment ends with its
        // footer. One sync covers both.
        self.active.reserve_limit = 0;
        self.flush(&trailer.encode(), false)?;
        self.drop_reserved()?;
        self.flush(&[], true)?;
        let sealed_path = self.active.handle.path.clone();
        let mapped = shared.storage.read_all(&sealed_path).map_err(|e| Error::io(&sealed_path, e))?;
        let sealed = Arc::new(SegmentHandle::new(sealed_path, self.active.handle.header, shared.storage.clone(), mapped));
        let base_seq = trailer.next_seq;
        let (handle, file) = create_segment(&shared.storage, &shared.dir, shared.store_id, base_seq)?;
        let mut view = shared.view.write();
        let sealed_no = self.active.segment_no;
        view.log.segments[sealed_no] = sealed;
        view.log.segments.push(handle.clone());
        let segment_no = view.log.segments.len() - 1;
        drop(view);
        self.active =
            ActiveSegment::new(handle, file, segment_no, SEGMENT_HEADER_BYTES as u64).reserving(shared.options.segment_size_bytes);
        Ok(())
    }

    fn encode<'r>(&mut self, buf: &mut Vec<u8>, base_seq: u64, records: impl Iterator<Item = RecordView<'r>> + Clone) -> Result<usize> {
        let header = &self.active.handle.header;
        let mark = (header.format_version >= format::DURABLE_MARK_VERSION).then_some(self.active.durable_to);
        self.encoder.encode(buf, base_seq, records, header.salt, mark).map_err(|e| Error::io(&self.active.handle.path, e))
    }

    fn sample(&mut self) {
        if let Some(s) = self.sampler.as_mut() {
            // One sample per chunk-sized piece, so that a store written in big batches
            // trains a dictionary as soon as one written event by event.
            for piece in self.encoder.last_raw().chunks(crate::frame::CHUNK_TARGET_RAW_BYTES) {
                if s.sizes.len() >= dictionary::DICT_TRAIN_RECORDS * 2 || s.bytes.len() >= dictionary::DICT_TRAIN_MAX_SAMPLE_BYTES {
                    break;
                }
                s.bytes.extend_from_slice(piece);
                s.sizes.push(piece.len());
            }
        }
    }

    /// Trains and installs a dictionary once enough samples are in.
    ///
    /// Runs after the group that completed the samples is durable, so nothing here may fail
    /// that group: reported as failed, it would be appended again by a caller that retries.
    /// A dictionary only makes frames smaller, so a failure to write its file or to load it
    /// is logged and the writer goes on compressing without one (format-spec.md, section 6).
    ///
    /// It does not try again while this store is open; the next open samples and trains
    /// anew. The failure was an I/O error in the store's own directory (EIO, ENOSPC, a
    /// read-only remount), likely to recur: each retry would put another training and two
    /// fsyncs on some commit's latency and leave another unused file behind, to gain only
    /// compression. Reopening the store, as an operator does after fixing the disk, retries.
    fn maybe_train(&mut self, shared: &Shared) {
        let ready = self.sampler.as_ref().is_some_and(|s| {
            s.sizes.len() >= dictionary::DICT_TRAIN_RECORDS / 8 && s.bytes.len() >= 64 << 10
                || s.sizes.len() >= dictionary::DICT_TRAIN_RECORDS
                || s.bytes.len() >= dictionary::DICT_TRAIN_MAX_SAMPLE_BYTES
        });
        if !ready {
            return;
        }
        let Some(sampler) = self.sampler.take() else { return };
        let Some(dict) = dictionary::train(&sampler.bytes, &sampler.sizes) else {
            tracing::debug!("zstd could not train a dictionary from {} samples", sampler.sizes.len());
            return;
        };
        // An id goes to one attempt only, failed or not: a failed attempt may have left its
        // file behind (complete, when only the directory fsync failed), and a second
        // dictionary must never take that file's name.
        let id = self.next_dict_id;
        self.next_dict_id += 1;
        if let Err(e) = self.install_dictionary(shared, id, dict) {
            let file = shared.dir.join(dictionary::dict_file_name(id));
            tracing::warn!(file = %file.display(), error = %e,
                "could not write or load a trained zstd dictionary; compressing without one until the store is opened again");
        }
    }

    /// Writes dictionary `id` durably, then compresses with it. Until its file and directory
    /// entry are durable no frame names the id (frames that did would be unreadable after a
    /// crash), and if loading it fails the encoder keeps compressing as before.
    fn install_dictionary(&mut self, shared: &Shared, id: u32, dict: Vec<u8>) -> Result<()> {
        let name = dictionary::dict_file_name(id);
        write_file_durably(&shared.storage, &shared.dir, &name, &dictionary::encode_file(id, &dict))?;
        self.encoder.use_dictionary(id, &dict).map_err(|e| Error::io(shared.dir.join(&name), e))?;
        tracing::debug!(id, bytes = dict.len(), "trained a zstd dictionary");
        // Readers have it before any frame compressed with it is visible (the next group's).
        shared.dicts.insert(id, dict);
        Ok(())
    }
}

/// Appends `value` as JSON to `buf`; returns where it is.
fn append_json(buf: &mut Vec<u8>, value: &Value) -> serde_json::Result<std::ops::Range<usize>> {
    let start = buf.len();
    serde_json::to_writer(&mut *buf, value)?;
    Ok(start..buf.len())
}

/// Checks the caller-supplied fields of an event.
fn check_fields(ne: &NewEvent, store: StoreId) -> Result<()> {
    event::validate_entity_id(&ne.entity)?;
    if let Some(kind) = &ne.kind {
        event::validate_identifier("kind", kind)?;
    }
    if let Some(verb) = &ne.verb {
        event::validate_identifier("verb", verb)?;
        if matches!(verb.as_str(), "Created" | "Deleted" | "Restored") {
            return Err(Error::invalid("verb", format!("{verb:?} is reserved; use create, delete or restore")));
        }
    }
    if let Some(actor) = &ne.actor {
        event::validate_label("actor", actor)?;
    }
    if let Some(id) = &ne.id {
        event::validate_label("event id", id)?;
        if store.parse_event_id(id).is_some() {
            return Err(Error::invalid("event id", format!("{id:?} has the form of an id this store generates")));
        }
    }
    if !ne.data.is_object() {
        return Err(Error::invalid("data", format!("event data for {} must be a JSON object", ne.entity)));
    }
    if ne.metadata.keys().any(|k| k.starts_with('\u{0}')) {
        return Err(Error::invalid("metadata", "metadata must be a JSON object"));
    }
    if !ne.internal
        && let Some(key) = RESERVED_METADATA_KEYS.iter().find(|k| ne.metadata.contains_key(**k))
    {
        return Err(Error::invalid("metadata", format!("{key:?} is reserved for undo and rollback")));
    }
    Ok(())
}

/// Checks an operation against the entity's state; returns its kind and new version.
fn check_operation(ne: &NewEvent, current: Option<&Pendingstate>) -> Result<(Arc<str>, u64)> {
    let actual = current.map_or(0, |c| c.version);
    if let Some(expected) = ne.expected_version
        && expected != actual
    {
        return Err(Error::VersionConflict { entity: ne.entity.clone(), expected, actual });
    }
    match (ne.op, current) {
        (Operation::Create, Some(c)) => {
            Err(Error::AlreadyExists { entity: ne.entity.clone(), kind: c.kind.to_string(), version: c.version })
        }
        (Operation::Create, None) => Ok((Arc::from(ne.kind.as_deref().unwrap_or_default()), 1)),
        (_, None) => Err(Error::NotFound { entity: ne.entity.clone() }),
        (Operation::Delete, Some(c)) if c.deleted && !ne.internal => {
            Err(Error::invalid("delete", format!("{} is already deleted", ne.entity)))
        }
        (Operation::Restore, Some(c)) if !c.deleted && !ne.internal => {
            Err(Error::invalid("restore", format!("{} is not deleted", ne.entity)))
        }
        (_, Some(c)) => Ok((c.kind.clone(), c.version + 1)),
    }
}

/// Creates segment `base_seq`: header written and synced, directory synced.
pub(crate) fn create_segment(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    store_id: StoreId,
    base_seq: u64,
) -> Result<(Arc<SegmentHandle>, Arc<dyn StorageFile>)> {
    let path = dir.join(format::segment_file_name(base_seq));
    let header = SegmentHeader {
        format_version: format::FORMAT_VERSION,
        base_seq,
        store_id: store_id.0,
        salt: random_u64(),
        created_at: Timestamp::now().as_micros(),
    };
    let io = |e| Error::io(&path, e);
    let file = storage.create_new(&path).map_err(io)?;
    file.append(&header.encode()).map_err(io)?;
    file.sync_data().map_err(io)?;
    storage.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    let handle = Arc::new(SegmentHandle::new(path, header, storage.clone(), Bytes::new()));
    handle.set_written(SEGMENT_HEADER_BYTES as u64);
    Ok((handle, file))
}

/// Writes a whole file the crash-safe way: temporary file, fsync, rename, directory fsync.
pub(crate) fn write_file_durably(storage: &Arc<dyn Storage>, dir: &Path, name: &str, bytes: &[u8]) -> Result<()> {
    let path = dir.join(name);
    let tmp_name = format!("{name}.tmp");
    let tmp = dir.join(&tmp_name);
    if storage.list_dir(dir).map_err(|e| Error::io(dir, e))?.contains(&tmp_name) {
        storage.remove_file(&tmp).map_err(|e| Error::io(&tmp, e))?;
    }
    let file = storage.create_new(&tmp).map_err(|e| Error::io(&tmp, e))?;
    file.append(bytes).map_err(|e| Error::io(&tmp, e))?;
    file.sync_data().map_err(|e| Error::io(&tmp, e))?;
    drop(file);
    storage.rename(&tmp, &path).map_err(|e| Error::io(&path, e))?;
    storage.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    Ok(())
}

/// A random u64 from the operating system.
pub(crate) fn random_u64() -> u64 {
    let mut b = [0u8; 8];
    if getrandom::fill(&mut b).is_err() {
        // Without OS randomness, fall back to the clock and the process id: ids need only be
        // unique, not secret.
        let t = Timestamp::now().as_micros() as u64;
        return t.rotate_left(17) ^ u64::from(std::process::id()).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
    u64::from_le_bytes(b)
}
