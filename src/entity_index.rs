//! The per-entity version index: for every entity, each version's (timestamp, seq), its
//! kind and deleted flag, its materialized current state when it has been read, and a
//! snapshot every K versions so that a past read replays fewer than K events.
//!
//! Memory per event is one `VersionRef` (16 bytes) plus the frame index entry (16 bytes per
//! frame, see segment_set.rs); per entity, a map entry and its id. Current states and
//! snapshots are materialized lazily (a full replay on open reads no JSON) and kept once
//! built.

use std::collections::{HashMap, HashSet};

/// The hasher of the index's maps: entity ids are hashed for every record replayed and
/// appended, and SipHash (std's default) was a tenth of replay time. foldhash is seeded per
/// process, so it keeps resistance to crafted keys.
type Hasher = foldhash::fast::RandomState;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::entity::Entity;
use crate::event::StoreId;
use crate::projection::{self, Effect};
use crate::record::RecordView;
use crate::timestamp::Timestamp;

/// One version of an entity: when it was committed and where its event is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct VersionRef {
    pub(crate) ts: i64,
    pub(crate) seq: u64,
}

/// A snapshot of an entity's state at a version that is a multiple of K: a deleted flag
/// byte, then the state as JSON.
pub(crate) type Snapshot = Arc<[u8]>;

/// Everything the index keeps about one entity.
#[derive(Debug, Clone)]
pub(crate) struct EntityRecord {
    pub(crate) kind: Arc<str>,
    pub(crate) deleted: bool,
    pub(crate) versions: Vec<VersionRef>,
    /// The current state, once materialized.
    pub(crate) current: Option<Arc<Map<String, Value>>>,
    /// The current state as JSON text, as loaded from a checkpoint and not parsed yet
    /// (parsing every state would be most of the cost of opening with a checkpoint).
    pub(crate) current_json: Option<Arc<[u8]>>,
    /// `snapshots[j - 1]` holds the state at version `j * K`, once built.
    pub(crate) snapshots: Vec<Option<Snapshot>>,
}

impl EntityRecord {
    pub(crate) fn version(&self) -> u64 {
        self.versions.len() as u64
    }

    /// The number of versions committed at or before `ts`.
    pub(crate) fn version_at(&self, ts: i64) -> u64 {
        self.versions.partition_point(|v| v.ts <= ts) as u64
    }

    /// The entity at its current version, if materialized (or loaded as JSON text).
    pub(crate) fn current_entity(&self, id: &str) -> Option<Entity> {
        let state = match (&self.current, &self.current_json) {
            // Handed out, not copied: an append replaces the map (`Arc::make_mut`) rather
            // than changing one a reader holds.
            (Some(state), _) => state.clone(),
            // Text that does not parse (it passed the checkpoint's CRC, so only a bug could
            // cause it) is ignored: the state is rebuilt from the log instead.
            (None, Some(json)) => Arc::new(serde_json::from_slice(json).ok()?),
            (None, None) => return None,
        };
        Some(self.entity_with(id, self.version(), state, self.deleted))
    }

    /// Parses a state loaded as JSON text into the materialized state.
    fn parse_current(&mut self) {
        if self.current.is_none()
            && let Some(json) = self.current_json.take()
        {
            self.current = serde_json::from_slice(&json).ok().map(Arc::new);
        }
    }

    pub(crate) fn entity_with(&self, id: &str, version: u64, state: Arc<Map<String, Value>>, deleted: bool) -> Entity {
        let ts = |v: u64| Timestamp::from_micros(self.versions.get((v as usize).saturating_sub(1)).map_or(0, |r| r.ts));
        Entity { id: id.to_string(), kind: self.kind.to_string(), version, state, deleted, created_at: ts(1), updated_at: ts(version) }
    }

    /// How to rebuild `version`: the closest snapshot at or below it (or the current state
    /// when `version` is the latest) and the seqs of the events to replay on top.
    pub(crate) fn plan(&self, id: &str, version: u64, every: u64) -> ReadPlan {
        if version == self.version()
            && let Some(entity) = self.current_entity(id)
        {
            return ReadPlan { base: Some(entity), replay: Vec::new(), parsed: self.current.is_none() };
        }
        let every = every.max(1);
        let mut j = version / every;
        let base = loop {
            if j == 0 {
                break None;
            }
            if let Some(Some(snap)) = self.snapshots.get(j as usize - 1)
                && let Some((deleted, state)) = decode_snapshot(snap)
            {
                break Some(self.entity_with(id, j * every, Arc::new(state), deleted));
            }
            j -= 1;
        };
        let from = base.as_ref().map_or(0, |e| e.version) as usize;
        let replay = self.versions[from..version as usize].iter().map(|v| v.seq).collect();
        ReadPlan { base, replay, parsed: false }
    }
}

/// The recipe for one read: a starting state and the events to apply to it.
#[derive(Debug)]
pub(crate) struct ReadPlan {
    pub(crate) base: Option<Entity>,
    pub(crate) replay: Vec<u64>,
    /// The base is the current state just parsed from a checkpoint's JSON text: worth
    /// installing in the index, so that the next read of it is a lookup.
    pub(crate) parsed: bool,
}

pub(crate) fn encode_snapshot(deleted: bool, state: &Map<String, Value>) -> Snapshot {
    thread_local! {
        /// Snapshots are encoded here and copied out at their exact size: one allocation
        /// each instead of one per doubling of a growing buffer.
        static SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
    }
    SCRATCH.with_borrow_mut(|out| {
        out.clear();
        out.push(u8::from(deleted));
        // Serializing a map of JSON values cannot fail.
        if serde_json::to_writer(&mut *out, state).is_err() {
            out.truncate(1);
            out.extend_from_slice(b"{}");
        }
        let snapshot = Snapshot::from(&out[..]);
        // A rare huge state does not keep its buffer alive.
        if out.capacity() > 64 << 10 {
            *out = Vec::new();
        }
        snapshot
    })
}

pub(crate) fn decode_snapshot(snap: &[u8]) -> Option<(bool, Map<String, Value>)> {
    let (&flag, json) = snap.split_first()?;
    Some((flag == 1, serde_json::from_slice(json).ok()?))
}

/// Why a record cannot be applied to the index (the log is inconsistent).
pub(crate) type IndexError = String;

/// The index over every entity in the store.
#[derive(Debug, Default)]
pub(crate) struct EntityIndex {
    pub(crate) entities: HashMap<Arc<str>, EntityRecord, Hasher>,
    kinds: HashSet<Arc<str>, Hasher>,
    /// Caller-supplied event id -> seq.
    pub(crate) caller_ids: HashMap<Box<str>, u64, Hasher>,
    /// Seq of an undone event -> seq of the event that undid it.
    pub(crate) undone_by: HashMap<u64, u64>,
    pub(crate) store_id: StoreId,
    /// Snapshot interval K.
    pub(crate) snapshot_every: u64,
}

impl EntityIndex {
    pub(crate) fn new(store_id: StoreId, snapshot_every: u64) -> Self {
        EntityIndex { store_id, snapshot_every: snapshot_every.max(1), ..Default::default() }
    }

    fn intern_kind(&mut self, kind: &str) -> Arc<str> {
        if let Some(k) = self.kinds.get(kind) {
            return k.clone();
        }
        let k: Arc<str> = Arc::from(kind);
        self.kinds.insert(k.clone());
        k
    }

    /// The seq of the event with id `id`, if stored.
    pub(crate) fn seq_of_id(&self, id: &str, next_seq: u64) -> Option<u64> {
        if let Some(&seq) = self.caller_ids.get(id) {
            return Some(seq);
        }
        self.store_id.parse_event_id(id).filter(|&s| s < next_seq)
    }

    /// Adds one committed record to the index (replay and live appends alike). Checks that
    /// the log is consistent: versions follow each other and kinds do not change.
    ///
    /// Replay reads no JSON, so it drops a materialized state the record makes stale
    /// (`live = false`); a live append keeps it and updates it with [`Self::apply_state`].
    pub(crate) fn apply_record(&mut self, seq: u64, rec: &RecordView<'_>, next_seq: u64, live: bool) -> Result<(), IndexError> {
        let (kind, verb) = projection::split_type(rec.event_type);
        let effect = projection::effect_of_verb(verb);
        let vref = VersionRef { ts: rec.timestamp, seq };
        match self.entities.get_mut(rec.entity) {
            Some(e) => {
                if rec.version != e.version() + 1 || effect == Effect::Create || *e.kind != *kind {
                    return Err(format!(
                        "event seq {seq} ({}) for {} has version {}, but the entity ({}) is at version {}",
                        rec.event_type,
                        rec.entity,
                        rec.version,
                        e.kind,
                        e.version()
                    ));
                }
                e.versions.push(vref);
                if !live {
                    e.current = None;
                    e.current_json = None;
                }
                match effect {
                    Effect::Delete => e.deleted = true,
                    Effect::Restore => e.deleted = false,
                    Effect::Create | Effect::Patch => {}
                }
            }
            None => {
                if rec.version != 1 || effect != Effect::Create {
                    return Err(format!(
                        "event seq {seq} ({}) for {} has version {} but the entity does not exist",
                        rec.event_type, rec.entity, rec.version
                    ));
                }
                let kind = self.intern_kind(kind);
                self.entities.insert(
                    Arc::from(rec.entity),
                    EntityRecord { kind, deleted: false, versions: vec![vref], current: None, current_json: None, snapshots: Vec::new() },
                );
            }
        }
        if let Some(id) = rec.id {
            self.caller_ids.insert(id.into(), seq);
        }
        if let Some(meta) = rec.metadata {
            self.note_undo(seq, meta, next_seq);
        }
        Ok(())
    }

    /// Records that the event at `seq` undoes the one its `undoOf` names.
    fn note_undo(&mut self, seq: u64, metadata: &[u8], next_seq: u64) {
        #[derive(serde::Deserialize)]
        struct Links<'a> {
            #[serde(rename = "undoOf", borrow)]
            undo_of: Option<std::borrow::Cow<'a, str>>,
        }
        if let Ok(Links { undo_of: Some(target) }) = serde_json::from_slice::<Links<'_>>(metadata)
            && let Some(target_seq) = self.seq_of_id(&target, next_seq)
        {
            self.undone_by.insert(target_seq, seq);
        }
    }

    /// Updates the materialized state of an entity after a live append, if it is
    /// materialized, and keeps a snapshot every K versions.
    ///
    /// A state is materialized by its first read (or loaded from a checkpoint) and from then
    /// on kept current by every write. A newly created entity is not materialized: a bulk
    /// load of entities nobody reads does not pay for keeping their states in memory (about
    /// a third of the write path's time when it did), and the first read of one folds its
    /// events from the log once.
    pub(crate) fn apply_state(&mut self, entity: &str, data: &Map<String, Value>) {
        let every = self.snapshot_every;
        let Some(e) = self.entities.get_mut(entity) else { return };
        e.parse_current();
        let Some(cur) = e.current.as_mut() else { return };
        crate::merge_patch::merge_patch(Arc::make_mut(cur), data);
        let version = e.version();
        if version % every == 0
            && let Some(cur) = e.current.as_ref()
        {
            let j = (version / every) as usize;
            if e.snapshots.len() < j {
                e.snapshots.resize(j, None);
            }
            e.snapshots[j - 1] = Some(encode_snapshot(e.deleted, cur));
        }
    }

    /// Installs states computed by a read: the current state (if `entity.version` is still
    /// the latest) and the snapshots passed on the way.
    pub(crate) fn install(&mut self, id: &str, current: Option<&Entity>, snapshots: Vec<(u64, Snapshot)>) {
        let every = self.snapshot_every;
        let Some(e) = self.entities.get_mut(id) else { return };
        if let Some(cur) = current
            && cur.version == e.version()
            && e.current.is_none()
        {
            e.current = Some(cur.state.clone());
            e.current_json = None;
        }
        for (version, snap) in snapshots {
            let j = (version / every) as usize;
            if j == 0 || version % every != 0 || version > e.version() {
                continue;
            }
            if e.snapshots.len() < j {
                e.snapshots.resize(j, None);
            }
            e.snapshots[j - 1].get_or_insert(snap);
        }
    }

    /// Bytes of memory the index holds for versions, snapshots and ids (an estimate used by
    /// the benchmarks and stats).
    pub(crate) fn memory_estimate(&self) -> (usize, usize) {
        let mut index = self.entities.capacity() * (std::mem::size_of::<Arc<str>>() + std::mem::size_of::<EntityRecord>() + 8);
        let mut snapshots = 0;
        for (id, e) in &self.entities {
            index += id.len() + e.versions.capacity() * std::mem::size_of::<VersionRef>() + e.snapshots.capacity() * 16;
            snapshots += e.snapshots.iter().flatten().map(|s| s.len()).sum::<usize>();
        }
        index += self.caller_ids.capacity() * 40 + self.caller_ids.keys().map(|k| k.len()).sum::<usize>();
        (index, snapshots)
    }
}

impl EntityIndex {
    /// Adds an entity loaded from a checkpoint.
    pub(crate) fn insert_entity(&mut self, id: Arc<str>, mut rec: EntityRecord) {
        rec.kind = self.intern_kind(&rec.kind.clone());
        self.entities.insert(id, rec);
    }
}
