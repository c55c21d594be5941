//! `stats`: what the store holds, measured over its committed events.

use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::PathBuf;

use super::walk::{Walk, ratio};
use super::{Inspector, Problem};
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};
use crate::timestamp::Timestamp;

/// How many of the deepest entities [`Stats`] lists.
const DEEPEST_LISTED: usize = 10;

/// An entity with many versions.
///
/// ```
/// let e = strata::inspect::DeepEntity { id: "c1".into(), kind: "Contact".into(), versions: 3, deleted: false };
/// assert_eq!(e.versions, 3);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeepEntity {
    /// The entity id.
    pub id: String,
    /// Its kind.
    pub kind: String,
    /// How many events it has.
    pub versions: u64,
    /// Whether it is deleted now.
    pub deleted: bool,
}

/// One checkpoint file and what it covers.
///
/// ```
/// let c = strata::inspect::CheckpointInfo {
///     path: "s/checkpoint-00000000000000000010.ckpt".into(), covers_to_seq: 10, bytes: 100,
///     entities: Some(3), frames: Some(7), problem: None,
/// };
/// assert_eq!(c.covers_to_seq, 10);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckpointInfo {
    /// The checkpoint file.
    pub path: PathBuf,
    /// The last seq it covers (from its file name).
    pub covers_to_seq: u64,
    /// Its length in bytes.
    pub bytes: u64,
    /// Entities it holds, when it decodes.
    pub entities: Option<u64>,
    /// Frames it indexes, when it decodes.
    pub frames: Option<u64>,
    /// Why it does not decode (`verify` checks it further).
    pub problem: Option<String>,
}

/// What a store holds.
///
/// ```
/// use strata::{NewEvent, Options, Store};
/// use serde_json::json;
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path(), Options::default())?;
/// store.append(NewEvent::create("Contact", "c1", json!({"name": "Alice"})))?;
/// store.append(NewEvent::update("c1", json!({"stage": "Won"})).verb("Won"))?;
/// let stats = strata::inspect::Inspector::open(dir.path())?.stats()?;
/// assert_eq!((stats.events, stats.entities), (2, 1));
/// assert_eq!(stats.events_by_type["Contact.Won"], 1);
/// assert_eq!(stats.events_by_kind["Contact"], 2);
/// assert_eq!(stats.deepest[0].versions, 2);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Stats {
    /// Segment files.
    pub segments: u64,
    /// Sealed segment files.
    pub sealed_segments: u64,
    /// Committed events.
    pub events: u64,
    /// Committed frames (one per batch).
    pub frames: u64,
    /// The last committed seq (0 when empty).
    pub last_seq: u64,
    /// The earliest event timestamp.
    pub first_timestamp: Option<Timestamp>,
    /// The latest event timestamp.
    pub last_timestamp: Option<Timestamp>,
    /// Events by `Kind.Verb`.
    pub events_by_type: BTreeMap<String, u64>,
    /// Events by kind.
    pub events_by_kind: BTreeMap<String, u64>,
    /// Entities.
    pub entities: u64,
    /// Entities deleted now.
    pub deleted_entities: u64,
    /// The entities with the most versions, deepest first (ties by id).
    pub deepest: Vec<DeepEntity>,
    /// Bytes of the segment files.
    pub file_bytes: u64,
    /// Bytes of the committed frames.
    pub stored_bytes: u64,
    /// Uncompressed record bytes of the committed frames.
    pub raw_bytes: u64,
    /// Bytes after the last committed frame (a write in flight or a torn tail).
    pub uncommitted_bytes: u64,
    /// Reserved space at the end of the active segment: zeros the writer reserved ahead for
    /// the next frames (counted in `file_bytes`; not data, not damage).
    pub reserved_bytes: u64,
    /// Dictionaries: id and size in bytes.
    pub dictionaries: Vec<(u32, u64)>,
    /// Checkpoint files, oldest first.
    pub checkpoints: Vec<CheckpointInfo>,
    /// An estimate of the memory the store's entity index takes once open, in bytes.
    pub index_memory_bytes: u64,
}

impl Stats {
    /// Uncompressed bytes per stored byte.
    ///
    /// ```
    /// let s = strata::inspect::Stats { raw_bytes: 300, stored_bytes: 100, ..Default::default() };
    /// assert_eq!(s.compression_ratio(), 3.0);
    /// ```
    pub fn compression_ratio(&self) -> f64 {
        ratio(self.raw_bytes, self.stored_bytes)
    }
}

impl Inspector {
    /// Measures the committed log: events by type and kind, entities, bytes, dictionaries
    /// and checkpoints. Damage other than a write in flight is an [`Error::Corruption`]
    /// (`verify` says more).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// drop(strata::Store::open(dir.path(), strata::Options::default())?);
    /// let stats = strata::inspect::Inspector::open(dir.path())?.stats()?;
    /// assert_eq!((stats.events, stats.segments), (0, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> Result<Stats> {
        if let Some(problem) = self.dictionary_problems.first() {
            return Err(problem.clone().into_error());
        }
        let mut stats = Stats::default();
        let walked = self.walk(Walk { decode: true, index: true, ..Walk::default() }, &mut |v| {
            stats.frames += 1;
            if let Some(decoded) = v.decoded {
                decoded
                    .for_each_record(|_, rec| {
                        *stats.events_by_type.entry(rec.event_type.to_string()).or_default() += 1;
                        Ok(())
                    })
                    .map_err(|r| Problem::new(v.path, v.frame.offset, r).into_error())?;
            }
            Ok(ControlFlow::Continue(()))
        })?;
        for (event_type, n) in &stats.events_by_type {
            let kind = event_type.split_once('.').map_or(event_type.as_str(), |(k, _)| k);
            *stats.events_by_kind.entry(kind.to_string()).or_default() += n;
        }
        for s in &walked.segments {
            stats.segments += 1;
            stats.sealed_segments += u64::from(s.state == super::SegmentState::Sealed);
            stats.events += s.records;
            stats.file_bytes += s.file_bytes;
            stats.stored_bytes += s.stored_bytes;
            stats.raw_bytes += s.raw_bytes;
            stats.uncommitted_bytes += s.uncommitted_bytes;
            stats.reserved_bytes += s.reserved_bytes;
            stats.first_timestamp = stats.first_timestamp.or(s.min_ts);
            stats.last_timestamp = s.max_ts.or(stats.last_timestamp);
        }
        stats.last_seq = walked.next_seq - 1;
        if let Some(index) = &walked.index {
            stats.entities = index.entities.len() as u64;
            stats.deleted_entities = index.entities.values().filter(|e| e.deleted).count() as u64;
            let mut deepest: Vec<DeepEntity> = index
                .entities
                .iter()
                .map(|(id, e)| DeepEntity { id: id.to_string(), kind: e.kind.to_string(), versions: e.version(), deleted: e.deleted })
                .collect();
            deepest.sort_by(|a, b| b.versions.cmp(&a.versions).then_with(|| a.id.cmp(&b.id)));
            deepest.truncate(DEEPEST_LISTED);
            stats.deepest = deepest;
            stats.index_memory_bytes = index.memory_estimate().0 as u64;
        }
        stats.dictionaries =
            self.dicts.ids().into_iter().filter(|&id| id > 0).map(|id| (id, self.dicts.bytes(id).map_or(0, |b| b.len() as u64))).collect();
        for (seq, name) in &self.listing.checkpoints {
            let path = self.dir.join(name);
            let bytes = match self.storage.read_copy(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io(&path, e)),
            };
            let (entities, frames, problem) = match Checkpoint::decode(&bytes) {
                Ok(cp) => (Some(cp.entities.len() as u64), Some(cp.frames.len() as u64), None),
                Err((offset, reason)) => (None, None, Some(format!("offset {offset}: {reason}"))),
            };
            stats.checkpoints.push(CheckpointInfo { path, covers_to_seq: *seq, bytes: bytes.len() as u64, entities, frames, problem });
        }
        Ok(stats)
    }
}
