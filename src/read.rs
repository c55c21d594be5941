//! The read path: events by seq, and entities at a version, rebuilt from the nearest
//! snapshot plus fewer than K events. Locks are held only to copy what a read needs; file
//! reads and JSON folding happen outside them.

use std::sync::Arc;

use crate::entity::Entity;
use crate::entity_index::{self, Snapshot};
use crate::error::{Error, Result};
use crate::event::Event;
use crate::projection;
use crate::segment_set;
use crate::store::Shared;

/// The event at `seq`.
pub(crate) fn event(shared: &Shared, seq: u64) -> Result<Event> {
    let located = shared.view.read().log.locate(seq);
    let at = located.ok_or_else(|| Error::invalid("seq", format!("seq {seq} is not in the log")))?;
    let ev = segment_set::read_event(&at, seq, &shared.dicts)?;
    if ev.seq != seq {
        return Err(Error::corruption(&at.segment.path, at.offset, format!("read seq {} where {seq} was expected", ev.seq)));
    }
    if at.unchecked {
        shared.view.write().log.mark_checked(at.position);
    }
    Ok(ev)
}

/// The entity `id` as of `version` (1-based); `None` if it does not exist or `version` is 0.
pub(crate) fn version(shared: &Shared, id: &str, version: u64) -> Result<Option<Entity>> {
    let plan = {
        let view = shared.view.read();
        let Some(rec) = view.index.entities.get(id) else { return Ok(None) };
        if version == 0 || version > rec.version() {
            return Ok(None);
        }
        rec.plan(id, version, view.index.snapshot_every)
    };
    if plan.replay.is_empty() {
        if plan.parsed {
            shared.view.write().index.install(id, plan.base.as_ref(), Vec::new());
        }
        return Ok(plan.base);
    }
    let every = shared.options.snapshot_every_versions.max(1);
    let mut entity = plan.base;
    let mut snapshots: Vec<(u64, Snapshot)> = Vec::new();
    for seq in &plan.replay {
        let ev = event(shared, *seq)?;
        if ev.entity != id {
            return Err(Error::corruption(&shared.dir, 0, format!("index points {id} at seq {seq}, which is an event of {}", ev.entity)));
        }
        projection::apply(&mut entity, &ev.entity, &ev.event_type, ev.version, ev.timestamp, projection::data_object(&ev.data));
        if let Some(e) = entity.as_ref().filter(|e| e.version % every == 0) {
            snapshots.push((e.version, entity_index::encode_snapshot(e.deleted, &e.state)));
        }
    }
    let latest = entity.as_ref().filter(|e| e.version == version);
    shared.view.write().index.install(id, latest, snapshots);
    Ok(entity)
}

/// The current state of `id`: the index's own state when materialized (shared, not
/// copied), else parsed from a checkpoint's text or folded from the log, and installed in
/// the index so that the next read is a lookup.
pub(crate) fn current(shared: &Shared, id: &str) -> Result<Option<Entity>> {
    let latest = {
        let view = shared.view.read();
        match view.index.entities.get(id) {
            None => return Ok(None),
            Some(rec) if rec.current.is_some() => return Ok(rec.current_entity(id)),
            Some(rec) => rec.version(),
        }
    };
    version(shared, id, latest)
}

/// The version of `id` in effect at `ts` (0 when it did not exist yet).
pub(crate) fn version_at(shared: &Shared, id: &str, ts: i64) -> Option<u64> {
    shared.view.read().index.entities.get(id).map(|rec| rec.version_at(ts))
}

/// Every event of `id`, in version order.
pub(crate) fn history(shared: &Shared, id: &str) -> Result<Vec<Event>> {
    let seqs: Vec<u64> = {
        let view = shared.view.read();
        match view.index.entities.get(id) {
            Some(rec) => rec.versions.iter().map(|v| v.seq).collect(),
            None => return Ok(Vec::new()),
        }
    };
    seqs.into_iter().map(|seq| event(shared, seq)).collect()
}

/// The events matching `q`, in seq order.
pub(crate) fn events(shared: &Shared, q: &crate::event_query::EventQuery) -> Result<Vec<Event>> {
    let limit = q.limit.unwrap_or(usize::MAX);
    let mut out = Vec::new();
    if limit == 0 {
        return Ok(out);
    }
    if let Some(id) = &q.entity {
        let seqs: Vec<u64> = {
            let view = shared.view.read();
            let Some(rec) = view.index.entities.get(id.as_str()) else { return Ok(out) };
            rec.versions.iter().filter(|v| v.seq > q.after_seq && q.matches_time(v.ts)).map(|v| v.seq).collect()
        };
        for seq in seqs {
            let ev = event(shared, seq)?;
            if q.matches(&ev) {
                out.push(ev);
                if out.len() >= limit {
                    break;
                }
            }
        }
        return Ok(out);
    }
    let mut position = shared.view.read().log.frame_position(q.after_seq.saturating_add(1));
    loop {
        let frames = shared.view.read().log.frames_at(position, 64);
        if frames.is_empty() {
            return Ok(out);
        }
        position += frames.len();
        for (segment, offset) in frames {
            let (bytes, header) = segment.frame_at(offset)?;
            // The header decides whether the frame is skipped: check it first, or a damaged
            // seq or timestamp would silently drop the frame's events from the result.
            if !crate::frame::verify_crc(&bytes, segment.header.salt) {
                return Err(Error::corruption(&segment.path, offset, "frame CRC mismatch"));
            }
            if header.next_seq() <= q.after_seq.saturating_add(1) || !q.frame_may_match(header.min_ts, header.max_ts) {
                continue;
            }
            let frame = crate::frame::DecodedFrame::decode(&bytes, segment.header.salt, &shared.dicts)
                .map_err(|r| Error::corruption(&segment.path, offset, r))?;
            let store = crate::event::StoreId(segment.header.store_id);
            frame
                .for_each_record(|seq, rec| {
                    let cheap = seq > q.after_seq
                        && out.len() < limit
                        && q.matches_time(rec.timestamp)
                        && q.matches_type(rec.event_type)
                        && q.actor.as_deref().is_none_or(|a| Some(a) == rec.actor);
                    if cheap {
                        out.push(segment_set::to_event(&rec, seq, header.base_seq, store)?);
                    }
                    Ok(())
                })
                .map_err(|r| Error::corruption(&segment.path, offset, r))?;
            if out.len() >= limit {
                return Ok(out);
            }
        }
    }
}

/// Materializes the current state of every entity that has none yet, in one sequential
/// pass over the log (cheaper than one point read per event), keeping snapshots on the way.
///
/// The pass starts at the frame of the earliest creation among those entities, not at the
/// start of the log: once a checkpoint has materialized every state, appends keep them
/// current, and the entities the next checkpoint finds without one are those created since
/// (a create does not build a state nobody has read). So each automatic checkpoint reads
/// the log written since the one before, not the whole log again.
pub(crate) fn materialize_all(shared: &Shared) -> Result<()> {
    let (missing, mut position, frame_count) = {
        let view = shared.view.read();
        let mut first_seq = u64::MAX;
        let missing: std::collections::HashSet<Arc<str>> = view
            .index
            .entities
            .iter()
            .filter(|(_, e)| e.current.is_none() && e.current_json.is_none())
            .map(|(id, e)| {
                first_seq = first_seq.min(e.versions.first().map_or(0, |v| v.seq));
                id.clone()
            })
            .collect();
        (missing, view.log.frame_position(first_seq), view.log.frames.len())
    };
    if missing.is_empty() {
        return Ok(());
    }
    let every = shared.options.snapshot_every_versions.max(1);
    type Folded = (Option<Entity>, Vec<(u64, Snapshot)>);
    let mut folded: std::collections::HashMap<Arc<str>, Folded> = std::collections::HashMap::new();
    while position < frame_count {
        let frames = shared.view.read().log.frames_at(position, 64.min(frame_count - position));
        if frames.is_empty() {
            break;
        }
        position += frames.len();
        for (segment, offset) in frames {
            let frame = segment_set::read_frame(&segment, offset, &shared.dicts)?;
            frame
                .for_each_record(|_, rec| {
                    let Some(id) = missing.get(rec.entity) else { return Ok(()) };
                    let data: serde_json::Map<String, serde_json::Value> =
                        serde_json::from_slice(rec.data).map_err(|e| format!("event data is not a JSON object: {e}"))?;
                    let (entity, snaps) = folded.entry(id.clone()).or_default();
                    let ts = crate::timestamp::Timestamp::from_micros(rec.timestamp);
                    projection::apply(entity, rec.entity, rec.event_type, rec.version, ts, &data);
                    if let Some(e) = entity.as_ref().filter(|e| e.version % every == 0) {
                        snaps.push((e.version, entity_index::encode_snapshot(e.deleted, &e.state)));
                    }
                    Ok(())
                })
                .map_err(|r| Error::corruption(&segment.path, offset, r))?;
        }
    }
    let mut view = shared.view.write();
    for (id, (entity, snaps)) in folded {
        view.index.install(&id, entity.as_ref(), snaps);
    }
    Ok(())
}

/// Entities in id order, each rebuilt as of a time (or current), skipping those that did
/// not exist then. Holds the store alive, not its locks.
pub(crate) struct EntityScan {
    shared: Arc<Shared>,
    ids: std::vec::IntoIter<Arc<str>>,
    at: Option<crate::timestamp::Timestamp>,
}

impl Iterator for EntityScan {
    type Item = Result<Entity>;

    fn next(&mut self) -> Option<Self::Item> {
        for id in self.ids.by_ref() {
            let result = match self.at {
                None => current(&self.shared, &id),
                Some(ts) => match version_at(&self.shared, &id, ts.as_micros()) {
                    Some(v) if v > 0 => version(&self.shared, &id, v),
                    _ => Ok(None),
                },
            };
            match result {
                Ok(Some(e)) => return Some(Ok(e)),
                Ok(None) => continue,
                Err(e) => return Some(Err(e)),
            }
        }
        None
    }
}

/// Scans the entities of `kind` (or all), as of `at` (or now).
pub(crate) fn scan_entities(shared: &Arc<Shared>, kind: Option<&str>, at: Option<crate::timestamp::Timestamp>) -> EntityScan {
    let mut ids: Vec<Arc<str>> = {
        let view = shared.view.read();
        view.index.entities.iter().filter(|(_, e)| kind.is_none_or(|k| *e.kind == *k)).map(|(id, _)| id.clone()).collect()
    };
    ids.sort_unstable();
    EntityScan { shared: shared.clone(), ids: ids.into_iter(), at }
}
