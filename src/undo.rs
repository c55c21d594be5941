//! Compensating undo and redo of one event or of a whole atomic batch.
//!
//! Undo never rewrites the past: it appends a compensating event, linked to the event it
//! reverses by `metadata.undoOf` (that event's id) and `metadata.undoType` (its type), and
//! written through the ordinary write path, so validators, group commit and durability
//! apply to it as to any other event. The index keeps `undoOf` links (`undone_by`), rebuilt
//! from the log on open, so no event is ever undone twice; there is no other side state.
//!
//! # What an event "changed"
//!
//! An event's effect is the difference between the entity just before it and just after it,
//! taken field by field down to leaves: two objects are compared key by key, anything else
//! (a scalar, an array, an object replacing a scalar, a field appearing or disappearing) is
//! one leaf. So `{"address": {"zip": "75002"}}` applied to `{"address": {"city": "Paris",
//! "zip": "75001"}}` changed the field `address.zip` only, and a later change of
//! `address.city` does not stand in the way of undoing it; a patch that set `address` on an
//! entity that had none changed the field `address` as a whole. Setting a field to the value
//! it already had changes nothing. For a `Created` event every top-level field it set is a
//! field it changed.
//!
//! The compensation writes back the previous value of exactly those fields (removing the
//! ones the event added) and flips the deleted flag back if the event flipped it, except for
//! `Created`, whose compensation is a soft delete that keeps the fields.
//!
//! # Invariants
//! - An event is undone only if every field it changed still holds the value it gave it,
//!   its entity is not deleted unless the event left it deleted, and a deleted flag the
//!   event flipped is still as it left it; so undo followed by undo of the undo (redo)
//!   leaves the entity exactly as it was before both.
//! - Every compensating event carries `expect_version`: a concurrent change between the
//!   check and the append is a version conflict, after which the undo is checked and
//!   planned again (up to [`MAX_ATTEMPTS`] times) instead of writing a wrong compensation.

use std::collections::HashMap;

use serde_json::{Map, Value};

use crate::entity::Entity;
use crate::error::{Error, Result};
use crate::event::{Event, NewEvent};
use crate::merge_patch::{diff_patch, merge_patch};
use crate::projection;
use crate::store::Store;
use crate::timestamp::Timestamp;

/// How many times an undo or rollback is planned and appended when a concurrent append to
/// its entity makes the append fail with a version conflict.
pub(crate) const MAX_ATTEMPTS: usize = 4;

/// The answer of [`Store::can_undo`] and [`Store::can_undo_batch`]: whether the undo would
/// go through, and if not, why.
///
/// ```
/// use serde_json::json;
/// let dir = tempfile::tempdir()?;
/// let store = strata::Store::open(dir.path(), strata::Options::default())?;
/// let created = store.append(strata::NewEvent::create("Contact", "c1", json!({"stage": "Lead"})))?;
/// assert_eq!(store.can_undo(&created.id)?, strata::UndoCheck { can_undo: true, reason: None });
/// let undo = store.undo(&created.id)?;
/// let again = store.can_undo(&created.id)?;
/// assert!(!again.can_undo);
/// assert_eq!(again.reason, Some(format!("event {:?} was already undone by event {:?} (Contact.Deleted, version 2)", created.id, undo.id)));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UndoCheck {
    /// `true` when the undo would be appended.
    pub can_undo: bool,
    /// Why the undo cannot proceed (`None` when it can).
    pub reason: Option<String>,
}

impl UndoCheck {
    fn from_refusal(refusal: Option<Refusal>) -> Self {
        UndoCheck { can_undo: refusal.is_none(), reason: refusal }
    }
}

/// Why an undo cannot proceed: the text of [`UndoCheck::reason`] and [`Error::CannotUndo`].
type Refusal = String;

/// A field of an entity: the keys from the top-level object down to a leaf.
type FieldPath = Vec<String>;

/// What a compensating event does besides merging its patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Update,
    Delete,
    Restore,
}

impl Change {
    /// The change that takes the deleted flag from `was_deleted` to `deleted`.
    pub(crate) fn between(was_deleted: bool, deleted: bool) -> Change {
        match (was_deleted, deleted) {
            (false, true) => Change::Delete,
            (true, false) => Change::Restore,
            _ => Change::Update,
        }
    }

    fn verb(self) -> &'static str {
        match self {
            Change::Update => "Updated",
            Change::Delete => "Deleted",
            Change::Restore => "Restored",
        }
    }
}

/// Builds a compensating event: engine-internal (it may carry the reserved metadata keys
/// and delete an entity that is already deleted), and only valid at `expected_version`.
pub(crate) fn compensating_event(
    change: Change,
    entity: &str,
    patch: Map<String, Value>,
    metadata: Map<String, Value>,
    actor: Option<&str>,
    expected_version: u64,
) -> NewEvent {
    let mut event = match change {
        Change::Update => NewEvent::update(entity, Value::Null),
        Change::Delete => NewEvent::delete(entity),
        Change::Restore => NewEvent::restore(entity),
    };
    // Delete and restore may carry a patch too (a rollback to a deleted state that had
    // other fields, the undo of such a rollback).
    event.data = Value::Object(patch);
    event.metadata = metadata;
    event.internal = true;
    if let Some(actor) = actor {
        event = event.actor(actor);
    }
    event.expect_version(expected_version)
}

/// Plans a batch of compensating events and appends it; when a concurrent append to one of
/// its entities wins the race (a version conflict), plans again from the new state, which
/// re-runs every check. An empty plan appends nothing and returns no events.
pub(crate) fn append_planned(store: &Store, mut plan: impl FnMut() -> Result<Vec<NewEvent>>) -> Result<Vec<Event>> {
    let mut attempt = 1;
    loop {
        let batch = plan()?;
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        match crate::group_commit::submit(store.shared(), batch) {
            Err(Error::VersionConflict { .. }) if attempt < MAX_ATTEMPTS => attempt += 1,
            outcome => return outcome,
        }
    }
}

/// One planned compensating event and the entity it applies to.
struct Compensation {
    event: NewEvent,
    event_type: String,
    /// The entity just before the compensation (after the batch's earlier compensations).
    before: Entity,
    /// The entity just after it.
    after: Entity,
}

impl Store {
    /// Checks whether [`undo`](Store::undo) of the event with id `event_id` would go through,
    /// and if not, why. The checks run in this order, and the first that fails gives the
    /// reason:
    ///
    /// 1. the event exists: `event "x" does not exist`;
    /// 2. its type is undoable (`Kind.Verb`): `event "x" has type "t", which cannot be undone`;
    /// 3. it has not been undone already: `event "x" was already undone by event "u" (Contact.Updated, version 3)`;
    /// 4. its entity exists and is not deleted, unless the event left it deleted:
    ///    `entity "c1" has been deleted since event "x": later event "d" (Contact.Deleted, version 4) deleted it`;
    /// 5. the entity is as the event left it: every field the event changed (see the module
    ///    docs for what that means with nested objects) still holds the value the event gave
    ///    it, and a deleted flag the event set is still set. The reason names the field and
    ///    the latest later event that changed it (undo that one first):
    ///    `field "stage" of "c1" has changed since event "x": later event "y" (Contact.Won, version 5) changed it`,
    ///    or `entity "c1" has been restored since event "x": later event "r" (Contact.Restored, version 4) restored it`;
    /// 6. the compensation can be written as a JSON Merge Patch (a field that held `null`,
    ///    which only a `Created` event can store, cannot be written back);
    /// 7. no validator of the entity's kind rejects the compensating event (a dry run of the
    ///    validators with the would-be event; the reason is the text of the
    ///    [`Error::Rejected`] that [`undo`](Store::undo) would return).
    ///
    /// ```
    /// use serde_json::json;
    /// use strata::NewEvent;
    /// let dir = tempfile::tempdir()?;
    /// let store = strata::Store::open(dir.path(), strata::Options::default())?;
    /// store.append(NewEvent::create("Contact", "c1", json!({"stage": "Lead"})))?;
    /// let qualified = store.append(NewEvent::update("c1", json!({"stage": "Qualified"})).verb("Qualified"))?;
    /// let won = store.append(NewEvent::update("c1", json!({"stage": "Won"})).verb("Won"))?;
    /// let check = store.can_undo(&qualified.id)?;
    /// assert_eq!(check.reason, Some(format!(
    ///     "field \"stage\" of \"c1\" has changed since event {:?}: later event {:?} (Contact.Won, version 3) changed it",
    ///     qualified.id, won.id)));
    /// assert!(store.can_undo(&won.id)?.can_undo);
    /// assert_eq!(store.can_undo("no-such-event")?.reason.as_deref(), Some("event \"no-such-event\" does not exist"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn can_undo(&self, event_id: &str) -> Result<UndoCheck> {
        let refusal = match self.plan_undo(event_id, None)? {
            Ok(plan) => self.dry_run_validators(&plan)?,
            Err(refusal) => Some(refusal),
        };
        Ok(UndoCheck::from_refusal(refusal))
    }

    /// Undoes the event with id `event_id` by appending a compensating event, and returns it.
    ///
    /// - `Created` -> `Deleted` (a soft delete: the entity stays readable, `deleted = true`);
    /// - `Updated` or a custom verb -> `Updated`, writing back the previous value of exactly
    ///   the fields the event changed (a field it added is removed);
    /// - `Deleted` -> `Restored`, `Restored` -> `Deleted` (also writing back any fields the
    ///   event changed);
    /// - a rollback -> the state before the rollback;
    /// - an undo -> a redo, the effect of the original event again; a redo is itself an undo
    ///   and can be undone in turn.
    ///
    /// The compensating event carries `metadata.undoOf` (the undone event's id) and
    /// `metadata.undoType` (its type). If [`can_undo`](Store::can_undo) would refuse, nothing
    /// is written and the error is [`Error::CannotUndo`] with the same reason; a validator
    /// that rejects the compensation gives [`Error::Rejected`].
    ///
    /// ```
    /// use serde_json::json;
    /// use strata::NewEvent;
    /// let dir = tempfile::tempdir()?;
    /// let store = strata::Store::open(dir.path(), strata::Options::default())?;
    /// store.append(NewEvent::create("Contact", "c1", json!({"name": "Alice", "stage": "Lead"})))?;
    /// let oops = store.append(NewEvent::update("c1", json!({"stage": "Lost", "note": "wrong contact"})))?;
    ///
    /// let undo = store.undo(&oops.id)?;
    /// assert_eq!(undo.event_type, "Contact.Updated");
    /// assert_eq!(undo.metadata, json!({"undoOf": oops.id, "undoType": "Contact.Updated"}));
    /// assert_eq!(serde_json::Value::Object((*store.get("c1")?.unwrap().state).clone()), json!({"name": "Alice", "stage": "Lead"}));
    ///
    /// // Redo is the undo of the undo.
    /// store.undo(&undo.id)?;
    /// assert_eq!(store.get("c1")?.unwrap().state["stage"], "Lost");
    /// assert!(matches!(store.undo(&oops.id), Err(strata::Error::CannotUndo { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn undo(&self, event_id: &str) -> Result<Event> {
        self.undo_with(event_id, None)
    }

    /// [`undo`](Store::undo), recording `actor` as who made the compensating event.
    ///
    /// ```
    /// use serde_json::json;
    /// let dir = tempfile::tempdir()?;
    /// let store = strata::Store::open(dir.path(), strata::Options::default())?;
    /// let created = store.append(strata::NewEvent::create("Contact", "c1", json!({})))?;
    /// let undo = store.undo_by(&created.id, "agent_7")?;
    /// assert_eq!((undo.event_type.as_str(), undo.actor.as_deref()), ("Contact.Deleted", Some("agent_7")));
    /// assert!(store.get("c1")?.unwrap().deleted);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn undo_by(&self, event_id: &str, actor: &str) -> Result<Event> {
        self.undo_with(event_id, Some(actor))
    }

    /// Checks whether [`undo_batch`](Store::undo_batch) would go through, and if not, gives
    /// the first reason: `batch 7 does not exist`, or one of the reasons of
    /// [`can_undo`](Store::can_undo) for one of its events. Checks 1 to 3 run for the events
    /// in log order; the state checks then run from the last event back to the first, each
    /// against the entity as the compensations of the later events of the batch leave it
    /// (so a batch that changes the same entity twice can be undone).
    ///
    /// ```
    /// use serde_json::json;
    /// use strata::NewEvent;
    /// let dir = tempfile::tempdir()?;
    /// let store = strata::Store::open(dir.path(), strata::Options::default())?;
    /// let batch = store.append_batch(vec![
    ///     NewEvent::create("Account", "a", json!({"balance": 10})),
    ///     NewEvent::create("Account", "b", json!({"balance": 0})),
    /// ])?;
    /// assert!(store.can_undo_batch(batch[0].batch)?.can_undo);
    /// assert_eq!(store.can_undo_batch(999)?.reason.as_deref(), Some("batch 999 does not exist"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn can_undo_batch(&self, batch_id: u64) -> Result<UndoCheck> {
        let refusal = match self.plan_undo_batch(batch_id, None)? {
            Ok(plan) => self.dry_run_validators(&plan)?,
            Err(refusal) => Some(refusal),
        };
        Ok(UndoCheck::from_refusal(refusal))
    }

    /// Undoes every event of the atomic batch `batch_id` (the `batch` of its events) in one
    /// new atomic batch: the compensations of its events, last event first, all written or
    /// none. Returns the compensating events. Refusals are [`Error::CannotUndo`] with the
    /// reason of [`can_undo_batch`](Store::can_undo_batch); undoing the returned batch redoes
    /// the original one.
    ///
    /// ```
    /// use serde_json::json;
    /// use strata::NewEvent;
    /// let dir = tempfile::tempdir()?;
    /// let store = strata::Store::open(dir.path(), strata::Options::default())?;
    /// store.append(NewEvent::create("Account", "a", json!({"balance": 100})))?;
    /// store.append(NewEvent::create("Account", "b", json!({"balance": 0})))?;
    /// let transfer = store.append_batch(vec![
    ///     NewEvent::update("a", json!({"balance": 70})).verb("Debited"),
    ///     NewEvent::update("b", json!({"balance": 30})).verb("Credited"),
    /// ])?;
    /// let undone = store.undo_batch(transfer[0].batch)?;
    /// assert_eq!(undone.len(), 2);
    /// assert_eq!(undone[0].batch, undone[1].batch);
    /// assert_eq!(store.get("a")?.unwrap().state["balance"], 100);
    /// assert_eq!(store.get("b")?.unwrap().state["balance"], 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn undo_batch(&self, batch_id: u64) -> Result<Vec<Event>> {
        self.undo_batch_with(batch_id, None)
    }

    /// [`undo_batch`](Store::undo_batch), recording `actor` on every compensating event.
    ///
    /// ```
    /// use serde_json::json;
    /// let dir = tempfile::tempdir()?;
    /// let store = strata::Store::open(dir.path(), strata::Options::default())?;
    /// let created = store.append(strata::NewEvent::create("Contact", "c1", json!({})))?;
    /// let undone = store.undo_batch_by(created.batch, "agent_7")?;
    /// assert_eq!(undone[0].actor.as_deref(), Some("agent_7"));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn undo_batch_by(&self, batch_id: u64, actor: &str) -> Result<Vec<Event>> {
        self.undo_batch_with(batch_id, Some(actor))
    }

    fn undo_with(&self, event_id: &str, actor: Option<&str>) -> Result<Event> {
        let mut events = append_planned(self, || match self.plan_undo(event_id, actor)? {
            Ok(plan) => Ok(plan.into_iter().map(|c| c.event).collect()),
            Err(reason) => Err(Error::CannotUndo { reason }),
        })?;
        events.pop().ok_or_else(|| Error::invalid("undo", "internal: an undo appended no event"))
    }

    fn undo_batch_with(&self, batch_id: u64, actor: Option<&str>) -> Result<Vec<Event>> {
        append_planned(self, || match self.plan_undo_batch(batch_id, actor)? {
            Ok(plan) => Ok(plan.into_iter().map(|c| c.event).collect()),
            Err(reason) => Err(Error::CannotUndo { reason }),
        })
    }

    /// Checks 1 to 6 for one event and its compensation.
    fn plan_undo(&self, event_id: &str, actor: Option<&str>) -> Result<Result<Vec<Compensation>, Refusal>> {
        let Some(event) = self.event(event_id)? else {
            return Ok(Err(format!("event {event_id:?} does not exist")));
        };
        if let Some(refusal) = self.refusal_before_state(&event)? {
            return Ok(Err(refusal));
        }
        let Some(now) = self.get(&event.entity)? else {
            return Ok(Err(format!("entity {:?} of event {:?} does not exist", event.entity, event.id)));
        };
        Ok(self.compensate(&event, &now, actor)?.map(|c| vec![c]))
    }

    /// Checks 1 to 6 for every event of a batch, and their compensations in reverse order.
    fn plan_undo_batch(&self, batch_id: u64, actor: Option<&str>) -> Result<Result<Vec<Compensation>, Refusal>> {
        let events = self.batch_events(batch_id)?;
        if events.is_empty() {
            return Ok(Err(format!("batch {batch_id} does not exist")));
        }
        for event in &events {
            if let Some(refusal) = self.refusal_before_state(event)? {
                return Ok(Err(refusal));
            }
        }
        // The entities as the compensations planned so far leave them.
        let mut entities: HashMap<String, Entity> = HashMap::new();
        let mut plan = Vec::with_capacity(events.len());
        for event in events.iter().rev() {
            let now = match entities.remove(&event.entity) {
                Some(entity) => entity,
                None => match self.get(&event.entity)? {
                    Some(entity) => entity,
                    None => return Ok(Err(format!("entity {:?} of event {:?} does not exist", event.entity, event.id))),
                },
            };
            match self.compensate(event, &now, actor)? {
                Ok(compensation) => {
                    entities.insert(event.entity.clone(), compensation.after.clone());
                    plan.push(compensation);
                }
                Err(refusal) => return Ok(Err(refusal)),
            }
        }
        Ok(Ok(plan))
    }

    /// The events of batch `batch_id`, in log order; empty if no batch starts at that seq.
    fn batch_events(&self, batch_id: u64) -> Result<Vec<Event>> {
        let next_seq = self.shared().view.read().next_seq;
        let mut events = Vec::new();
        let mut seq = batch_id;
        while seq >= 1 && seq < next_seq {
            let event = crate::read::event(self.shared(), seq)?;
            if event.batch != batch_id {
                break;
            }
            events.push(event);
            seq += 1;
        }
        Ok(events)
    }

    /// Checks 2 and 3: the event's type is undoable and it has not been undone yet.
    fn refusal_before_state(&self, event: &Event) -> Result<Option<Refusal>> {
        if let Err(refusal) = check_undoable_type(event) {
            return Ok(Some(refusal));
        }
        let undone_by = self.shared().view.read().index.undone_by.get(&event.seq).copied();
        match undone_by {
            Some(seq) => {
                let undo = crate::read::event(self.shared(), seq)?;
                Ok(Some(format!("event {:?} was already undone by event {}", event.id, describe(&undo))))
            }
            None => Ok(None),
        }
    }

    /// Checks 4 to 6 for `event` against its entity as it is `now`, and plans the
    /// compensation.
    fn compensate(&self, event: &Event, now: &Entity, actor: Option<&str>) -> Result<Result<Compensation, Refusal>> {
        let shared = self.shared();
        let before = match event.version {
            0 | 1 => None,
            v => crate::read::version(shared, &event.entity, v - 1)?,
        };
        let Some(after) = crate::read::version(shared, &event.entity, event.version)? else {
            return Ok(Err(format!("entity {:?} of event {:?} does not exist", event.entity, event.id)));
        };
        let empty = Map::new();
        let fields = changed_fields(before.as_ref().map_or(&empty, |b| &*b.state), &after.state);
        if let Some(refusal) = self.state_refusal(event, before.as_ref(), &after, now, &fields)? {
            return Ok(Err(refusal));
        }
        let (change, patch) = match &before {
            // A create is compensated by a soft delete that keeps the fields.
            None => (Change::Delete, Map::new()),
            Some(before) => {
                let mut target = (*now.state).clone();
                for field in &fields {
                    set_value_at(&mut target, field, value_at(&before.state, field).cloned());
                }
                let patch = diff_patch(&now.state, &target);
                if let Some(field) = unreachable_field(&now.state, &patch, &target) {
                    return Ok(Err(format!(
                        "field {:?} of {:?} held null before event {:?}, which a merge patch cannot write back",
                        field.join("."),
                        event.entity,
                        event.id
                    )));
                }
                (Change::between(after.deleted, before.deleted), patch)
            }
        };
        let mut metadata = Map::new();
        metadata.insert("undoOf".into(), Value::from(event.id.clone()));
        metadata.insert("undoType".into(), Value::from(event.event_type.clone()));
        let event_type = format!("{}.{}", now.kind, change.verb());
        let new_event = compensating_event(change, &event.entity, patch, metadata, actor, now.version);
        let after = project(now, &event_type, now.version + 1, Timestamp::now(), &new_event.data);
        Ok(Ok(Compensation { event: new_event, event_type, before: now.clone(), after }))
    }

    /// Checks 4 and 5: the entity is not deleted unless `event` left it so, a deleted flag
    /// `event` set is still set, and every field it changed still holds the value it gave
    /// it. `before` and `after` are the entity around `event`, `now` as it is now.
    fn state_refusal(
        &self,
        event: &Event,
        before: Option<&Entity>,
        after: &Entity,
        now: &Entity,
        fields: &[FieldPath],
    ) -> Result<Option<Refusal>> {
        let (id, entity) = (&event.id, &event.entity);
        if now.deleted && !after.deleted {
            let by = self.latest_change(event, after, |a, b| !a.deleted && b.deleted)?;
            return Ok(Some(format!("entity {entity:?} has been deleted since event {id:?}{}", later(by.as_ref(), "deleted"))));
        }
        let flipped_flag = before.is_none_or(|b| b.deleted != after.deleted);
        if flipped_flag && after.deleted && !now.deleted {
            let by = self.latest_change(event, after, |a, b| a.deleted && !b.deleted)?;
            return Ok(Some(format!("entity {entity:?} has been restored since event {id:?}{}", later(by.as_ref(), "restored"))));
        }
        if let Some(field) = fields.iter().find(|f| value_at(&now.state, f) != value_at(&after.state, f)) {
            let by = self.latest_change(event, after, |a, b| value_at(&a.state, field) != value_at(&b.state, field))?;
            let name = field.join(".");
            return Ok(Some(format!("field {name:?} of {entity:?} has changed since event {id:?}{}", later(by.as_ref(), "changed"))));
        }
        Ok(None)
    }

    /// The latest event after `event` (on the same entity) for which `changed(before, after)`
    /// holds, replaying from `at_event`, the entity just after `event`.
    fn latest_change(&self, event: &Event, at_event: &Entity, changed: impl Fn(&Entity, &Entity) -> bool) -> Result<Option<Event>> {
        let seqs: Vec<u64> = {
            let view = self.shared().view.read();
            let versions = view.index.entities.get(event.entity.as_str()).map_or(&[][..], |r| &r.versions[..]);
            versions.get(event.version as usize..).unwrap_or(&[]).iter().map(|v| v.seq).collect()
        };
        let mut state = at_event.clone();
        let mut latest = None;
        for seq in seqs {
            let later = crate::read::event(self.shared(), seq)?;
            let next = project(&state, &later.event_type, later.version, later.timestamp, &later.data);
            if changed(&state, &next) {
                latest = Some(later);
            }
            state = next;
        }
        Ok(latest)
    }

    /// Check 7: runs the validators of each compensation's kind on the would-be events (with
    /// the seqs, ids and timestamp they would most likely get), as the writer will.
    fn dry_run_validators(&self, plan: &[Compensation]) -> Result<Option<Refusal>> {
        let shared = self.shared();
        let (next_seq, last_ts) = {
            let view = shared.view.read();
            (view.next_seq, view.last_ts)
        };
        let timestamp = Timestamp::from_micros(Timestamp::now().as_micros().max(last_ts.saturating_add(1)));
        let validators = shared.validators.read();
        for (i, compensation) in plan.iter().enumerate() {
            let Some(checks) = validators.get(&compensation.before.kind) else { continue };
            let seq = next_seq + i as u64;
            let event = Event {
                seq,
                id: shared.store_id.event_id(seq),
                event_type: compensation.event_type.clone(),
                entity: compensation.before.id.clone(),
                actor: compensation.event.actor.clone(),
                timestamp,
                version: compensation.before.version + 1,
                data: compensation.event.data.clone(),
                metadata: Value::Object(compensation.event.metadata.clone()),
                batch: next_seq,
                store: shared.store_id,
            };
            let after = project(&compensation.before, &event.event_type, event.version, timestamp, &event.data);
            for check in checks {
                if let Err(reason) = check(Some(&compensation.before), &event, &after) {
                    let rejected = Error::Rejected { entity: event.entity.clone(), event_type: event.event_type.clone(), reason };
                    return Ok(Some(rejected.to_string()));
                }
            }
        }
        Ok(None)
    }
}

/// Check 2: every event strata writes is `Kind.Verb`; anything else (a log written by
/// something else, a future merge of foreign logs) is not understood well enough to undo.
fn check_undoable_type(event: &Event) -> Result<(), Refusal> {
    let well_formed =
        event.event_type.split_once('.').is_some_and(|(kind, verb)| !kind.is_empty() && !verb.is_empty() && !verb.contains('.'));
    if well_formed { Ok(()) } else { Err(format!("event {:?} has type {:?}, which cannot be undone", event.id, event.event_type)) }
}

/// `"id" (Type, version N)`.
fn describe(event: &Event) -> String {
    format!("{:?} ({}, version {})", event.id, event.event_type, event.version)
}

/// `: later event "id" (Type, version N) <verb> it`, or nothing if no later event is known.
fn later(event: Option<&Event>, verb: &str) -> String {
    event.map_or_else(String::new, |e| format!(": later event {} {verb} it", describe(e)))
}

/// `entity` after an event with this type, version, timestamp and data.
fn project(entity: &Entity, event_type: &str, version: u64, timestamp: Timestamp, data: &Value) -> Entity {
    let mut next = Some(entity.clone());
    projection::apply(&mut next, &entity.id, event_type, version, timestamp, projection::data_object(data));
    next.unwrap_or_else(|| entity.clone())
}

/// The fields (leaves) where `from` and `to` differ, sorted: objects on both sides are
/// compared key by key, anything else is compared whole.
fn changed_fields(from: &Map<String, Value>, to: &Map<String, Value>) -> Vec<FieldPath> {
    let mut out = Vec::new();
    collect_changed(from, to, &mut Vec::new(), &mut out);
    out.sort();
    out
}

fn collect_changed(from: &Map<String, Value>, to: &Map<String, Value>, prefix: &mut FieldPath, out: &mut Vec<FieldPath>) {
    let added = to.keys().filter(|k| !from.contains_key(*k));
    for key in from.keys().chain(added) {
        prefix.push(key.clone());
        match (from.get(key), to.get(key)) {
            (Some(Value::Object(a)), Some(Value::Object(b))) => collect_changed(a, b, prefix, out),
            (a, b) if a != b => out.push(prefix.clone()),
            _ => {}
        }
        prefix.pop();
    }
}

/// The value at `field`, if every object on the way has the key.
fn value_at<'a>(state: &'a Map<String, Value>, field: &[String]) -> Option<&'a Value> {
    let (last, parents) = field.split_last()?;
    let mut object = state;
    for key in parents {
        object = object.get(key)?.as_object()?;
    }
    object.get(last)
}

/// Sets (`Some`) or removes (`None`) the value at `field`, creating the objects on the way
/// when setting.
fn set_value_at(state: &mut Map<String, Value>, field: &[String], value: Option<Value>) {
    let Some((last, parents)) = field.split_last() else { return };
    let mut object = state;
    for key in parents {
        if value.is_none() && !object.get(key).is_some_and(Value::is_object) {
            return;
        }
        let slot = object.entry(key.clone()).or_insert_with(|| Value::Object(Map::new()));
        if !slot.is_object() {
            *slot = Value::Object(Map::new());
        }
        let Value::Object(inner) = slot else { return };
        object = inner;
    }
    match value {
        Some(v) => {
            object.insert(last.clone(), v);
        }
        None => {
            object.remove(last);
        }
    }
}

/// A field where `patch` applied to `from` does not give `target` (merge patches cannot
/// write `null`), if any.
pub(crate) fn unreachable_field(from: &Map<String, Value>, patch: &Map<String, Value>, target: &Map<String, Value>) -> Option<FieldPath> {
    let mut reached = from.clone();
    merge_patch(&mut reached, patch);
    changed_fields(&reached, target).into_iter().next()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap_or_default()
    }

    fn path(p: &str) -> FieldPath {
        p.split('.').map(String::from).collect()
    }

    #[test]
    fn changed_fields_go_down_to_leaves_of_nested_objects() {
        let from = obj(json!({"a": 1, "n": {"x": 1, "y": 2}, "same": [1], "gone": true}));
        let to = obj(json!({"a": 2, "n": {"x": 1, "z": 3}, "same": [1], "new": {"k": 1}}));
        let fields: Vec<String> = changed_fields(&from, &to).iter().map(|f| f.join(".")).collect();
        assert_eq!(fields, ["a", "gone", "n.y", "n.z", "new"]);
    }

    #[test]
    fn an_object_replacing_a_scalar_is_one_field() {
        let fields = changed_fields(&obj(json!({"a": 5})), &obj(json!({"a": {"x": 1}})));
        assert_eq!(fields, [path("a")]);
    }

    #[test]
    fn set_value_at_creates_and_removes() {
        let mut state = obj(json!({"n": {"x": 1}}));
        set_value_at(&mut state, &path("n.y.z"), Some(json!(2)));
        set_value_at(&mut state, &path("n.x"), None);
        set_value_at(&mut state, &path("missing.deep"), None);
        assert_eq!(Value::Object(state), json!({"n": {"y": {"z": 2}}}));
    }

    #[test]
    fn null_cannot_be_written_back_by_a_merge_patch() {
        let from = obj(json!({"a": 1}));
        let target = obj(json!({"a": null}));
        let patch = diff_patch(&from, &target);
        assert_eq!(unreachable_field(&from, &patch, &target), Some(path("a")));
        let target = obj(json!({"a": 2}));
        assert_eq!(unreachable_field(&from, &diff_patch(&from, &target), &target), None);
    }

    #[test]
    fn malformed_types_are_not_undoable() {
        let mut event = Event {
            seq: 1,
            id: "e1".into(),
            event_type: "Contact.Updated".into(),
            entity: "c1".into(),
            actor: None,
            timestamp: Timestamp::from_micros(0),
            version: 2,
            data: json!({}),
            metadata: json!({}),
            batch: 1,
            store: crate::event::StoreId(1),
        };
        assert!(check_undoable_type(&event).is_ok());
        for bad in ["Contact", "Contact.", ".Updated", "A.B.C"] {
            event.event_type = bad.into();
            assert_eq!(check_undoable_type(&event), Err(format!("event \"e1\" has type {bad:?}, which cannot be undone")));
        }
    }
}
