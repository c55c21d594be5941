//! A naive in-memory reference model of a store, and a harness that runs the same
//! operations against a real store and the model and compares every answer.
//!
//! Shared by `tests/model.rs` (proptest generates the operations) and the `api_ops` fuzz
//! target (libFuzzer's bytes become the operations). On simulated storage the harness can
//! also cut the power (`Op::Crash`) and check that nothing acknowledged was lost. The model is written from the public
//! contract, not from the engine's code: it keeps a plain list of events and folds it from
//! scratch for every read, with its own merge patch and its own wildcard matcher.
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::{Map, Value, json};
use strata::{Durability, Entity, Error, Event, EventQuery, FaultStorage, NewEvent, Options, Store, StoreId, Timestamp};

/// The entity ids operations pick from; the last one is invalid (empty).
pub const ENTITY_IDS: [&str; 7] = ["e0", "e1", "e2", "e3", "e4", "e5", ""];
/// Kinds for creates.
pub const KINDS: [&str; 2] = ["Item", "Thing"];
/// Custom verbs for updates; the last one is reserved (refused).
pub const VERBS: [&str; 4] = ["Qualified", "Touched", "Updated", "Deleted"];
/// Actors.
pub const ACTORS: [&str; 3] = ["alice", "bob", "carol"];
/// Caller-supplied event ids.
pub const CALLER_IDS: [&str; 4] = ["req-0", "req-1", "req-2", "req-3"];
/// Event type patterns for listings.
pub const PATTERNS: [&str; 9] = ["*", "Item.*", "*.Qualified", "Item.Created", "Thing.*", "*e*", "Thing.Updated", "*.*d", "Item.Deleted"];

/// What one write does.
#[derive(Debug, Clone)]
pub enum Action {
    /// Create with this kind (index into [`KINDS`]) and data.
    Create { kind: u8, data: Value },
    /// Merge-patch, with an optional custom verb (index into [`VERBS`]).
    Update { patch: Value, verb: Option<u8> },
    /// Soft delete.
    Delete,
    /// Restore.
    Restore,
}

/// The event id a write supplies.
#[derive(Debug, Clone, Copy)]
pub enum IdPick {
    /// One of [`CALLER_IDS`].
    Caller(u8),
    /// The id the store generates for seq `k + 1` (refused unless already stored, when the
    /// append is an idempotent retry).
    Generated(u8),
}

/// The timestamp a write supplies.
#[derive(Debug, Clone, Copy)]
pub enum TsPick {
    /// None: the store picks it.
    Auto,
    /// The log's newest timestamp minus this many microseconds: always refused.
    Stale(u8),
    /// A day after both the wall clock and the newest timestamp, plus this many
    /// milliseconds: accepted unless an earlier event of the batch is later.
    Future(u8),
}

/// The expected version a write supplies.
#[derive(Debug, Clone, Copy)]
pub enum ExpectPick {
    /// None.
    No,
    /// The entity's version as the model knows it (0 when it does not exist).
    Current,
    /// The current version plus this (1..): a conflict.
    Off(u8),
}

/// One event to append.
#[derive(Debug, Clone)]
pub struct Write {
    /// Index into [`ENTITY_IDS`].
    pub entity: u8,
    /// What it does.
    pub action: Action,
    /// Index into [`ACTORS`].
    pub actor: Option<u8>,
    /// A supplied event id.
    pub id: Option<IdPick>,
    /// A supplied timestamp.
    pub ts: TsPick,
    /// A supplied expected version.
    pub expect: ExpectPick,
    /// Metadata: none, `{"reason": ...}`, or a reserved key (refused).
    pub metadata: Option<bool>,
}

/// A point in time for reads.
#[derive(Debug, Clone, Copy)]
pub enum TimePick {
    /// The earliest representable time.
    Min,
    /// The timestamp of event `k % len`, plus `delta` microseconds.
    AtEvent(u16, i8),
    /// The latest representable time.
    Max,
}

/// An event listing.
#[derive(Debug, Clone)]
pub struct QuerySpec {
    /// Index into [`ENTITY_IDS`].
    pub entity: Option<u8>,
    /// Index into [`PATTERNS`].
    pub pattern: Option<u8>,
    /// Index into [`ACTORS`].
    pub actor: Option<u8>,
    /// Lower time bound (inclusive).
    pub after: Option<TimePick>,
    /// Upper time bound (exclusive).
    pub before: Option<TimePick>,
    /// Cursor: `after_seq % (len + 2)`.
    pub after_seq: u16,
    /// Page size; with one, the listing is also paged to its end by cursor.
    pub limit: Option<u8>,
}

/// One step of a test.
#[derive(Debug, Clone)]
pub enum Op {
    /// `append`.
    Append(Write),
    /// `append_batch`.
    Batch(Vec<Write>),
    /// `get`.
    Get(u8),
    /// `get_as_of`.
    GetAsOf(u8, TimePick),
    /// `get_version` with `version % (current + 2)`.
    GetVersion(u8, u8),
    /// `history`.
    History(u8),
    /// `event` by id.
    EventById(IdPick),
    /// `events`.
    Events(QuerySpec),
    /// `undo` (or `undo_by` an actor) of event `k % len` (`u16::MAX`: an id that does not
    /// exist).
    Undo(u16, Option<u8>),
    /// `can_undo` of event `k % len` (`u16::MAX`: an id that does not exist).
    CanUndo(u16),
    /// `undo_batch` (or `undo_batch_by`) of batch id `k % (len + 2)`: often the first seq of
    /// a batch, sometimes the middle of one or nothing at all.
    UndoBatch(u16, Option<u8>),
    /// `rollback` (or `rollback_by`) of an entity to a point in time.
    Rollback(u8, TimePick, Option<u8>),
    /// `checkpoint`.
    Checkpoint,
    /// Close and open the store again.
    Reopen,
    /// On simulated storage with `Durability::Always`: cut the power with the store open,
    /// then open it again (elsewhere, a reopen). Nothing acknowledged may be lost.
    Crash,
}

/// Where a simulated store lives in its `FaultStorage`.
const SIMULATED_DIR: &str = "/strata-model";

/// A short name for an error's variant, to compare outcomes.
pub fn error_kind(e: &Error) -> &'static str {
    match e {
        Error::Io { .. } => "Io",
        Error::Locked { .. } => "Locked",
        Error::Corruption { .. } => "Corruption",
        Error::NotAStore { .. } => "NotAStore",
        Error::UnsupportedVersion { .. } => "UnsupportedVersion",
        Error::Poisoned { .. } => "Poisoned",
        Error::VersionConflict { .. } => "VersionConflict",
        Error::NotFound { .. } => "NotFound",
        Error::AlreadyExists { .. } => "AlreadyExists",
        Error::InvalidInput { .. } => "InvalidInput",
        Error::TimestampRegression { .. } => "TimestampRegression",
        Error::TooLarge { .. } => "TooLarge",
        Error::CannotUndo { .. } => "CannotUndo",
        Error::Rejected { .. } => "Rejected",
        _ => "other",
    }
}

/// RFC 7396, written independently of the engine's.
fn model_merge(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (k, v) in patch {
        if v.is_null() {
            target.remove(k);
        } else if let Value::Object(p) = v {
            let mut inner = match target.remove(k) {
                Some(Value::Object(m)) => m,
                _ => Map::new(),
            };
            model_merge(&mut inner, p);
            target.insert(k.clone(), Value::Object(inner));
        } else {
            target.insert(k.clone(), v.clone());
        }
    }
}

/// `*` matches any run of characters; written independently of the engine's.
fn model_glob(pattern: &[u8], text: &[u8]) -> bool {
    match pattern.split_first() {
        None => text.is_empty(),
        Some((b'*', rest)) => (0..=text.len()).any(|i| model_glob(rest, &text[i..])),
        Some((c, rest)) => text.split_first().is_some_and(|(t, tail)| t == c && model_glob(rest, tail)),
    }
}

fn verb_of(event_type: &str) -> &str {
    event_type.rsplit_once('.').map_or("", |(_, v)| v)
}

/// The model: every event the store acknowledged, checked against the contract first.
#[derive(Debug, Default)]
pub struct Model {
    pub events: Vec<Event>,
}

impl Model {
    fn last_ts(&self) -> i64 {
        self.events.last().map_or(i64::MIN, |e| e.timestamp.as_micros())
    }

    /// Folds the events of `id` that pass `keep`.
    fn fold(&self, id: &str, keep: impl Fn(&Event) -> bool) -> Option<Entity> {
        let mut entity: Option<Entity> = None;
        for ev in self.events.iter().filter(|e| e.entity == id && keep(e)) {
            let data = ev.data.as_object().cloned().unwrap_or_default();
            match (verb_of(&ev.event_type), entity.as_mut()) {
                ("Created", _) | (_, None) => {
                    entity = Some(Entity {
                        id: id.to_string(),
                        kind: ev.kind().to_string(),
                        version: ev.version,
                        state: Arc::new(data),
                        deleted: false,
                        created_at: ev.timestamp,
                        updated_at: ev.timestamp,
                    })
                }
                (verb, Some(e)) => {
                    model_merge(Arc::make_mut(&mut e.state), &data);
                    match verb {
                        "Deleted" => e.deleted = true,
                        "Restored" => e.deleted = false,
                        _ => {}
                    }
                    e.version = ev.version;
                    e.updated_at = ev.timestamp;
                }
            }
        }
        entity
    }

    fn current(&self, id: &str) -> Option<Entity> {
        self.fold(id, |_| true)
    }

    fn by_id(&self, id: &str) -> Option<&Event> {
        self.events.iter().find(|e| e.id == id)
    }

    fn time(&self, pick: TimePick) -> Timestamp {
        match pick {
            TimePick::Min => Timestamp::MIN,
            TimePick::Max => Timestamp::MAX,
            TimePick::AtEvent(k, delta) => match self.events.len() {
                0 => Timestamp::from_micros(i64::from(delta)),
                n => Timestamp::from_micros(self.events[usize::from(k) % n].timestamp.as_micros() + i64::from(delta)),
            },
        }
    }

    fn matches(&self, q: &ResolvedQuery, ev: &Event) -> bool {
        ev.seq > q.after_seq
            && q.entity.as_deref().is_none_or(|e| e == ev.entity)
            && q.pattern.is_none_or(|p| model_glob(p.as_bytes(), ev.event_type.as_bytes()))
            && q.actor.is_none_or(|a| ev.actor.as_deref() == Some(a))
            && q.after.is_none_or(|t| ev.timestamp >= t)
            && q.before.is_none_or(|t| ev.timestamp < t)
    }
}

/// One planned compensating event: the entity just before it, and the fields and deleted
/// flag it must leave.
#[derive(Debug)]
struct Compensation {
    entity: Entity,
    state: Arc<Map<String, Value>>,
    deleted: bool,
    metadata: Value,
}

impl Model {
    /// The events an undo of `id` covers (none when no event has that id).
    fn undo_events(&self, id: &str) -> Vec<Event> {
        self.by_id(id).cloned().into_iter().collect()
    }

    fn undone(&self, ev: &Event) -> bool {
        self.events.iter().any(|u| u.metadata.get("undoOf").and_then(Value::as_str) == Some(ev.id.as_str()))
    }

    /// The compensations that undo `events` (one event, or a batch in log order), last event
    /// first, each against its entity as the later compensations leave it; `Err` when the
    /// contract refuses: no such event, already undone, the entity deleted or restored since,
    /// a field the event changed has changed since, or a null that a merge patch cannot
    /// write back.
    fn plan_undo(&self, events: &[Event]) -> Result<Vec<Compensation>, ()> {
        if events.is_empty() || events.iter().any(|e| self.undone(e)) {
            return Err(());
        }
        let mut planned: HashMap<String, Entity> = HashMap::new();
        let mut plan = Vec::new();
        for ev in events.iter().rev() {
            let now = planned.remove(&ev.entity).or_else(|| self.current(&ev.entity)).ok_or(())?;
            let before = self.fold(&ev.entity, |e| e.version < ev.version);
            let after = self.fold(&ev.entity, |e| e.version <= ev.version).ok_or(())?;
            if now.deleted && !after.deleted {
                return Err(());
            }
            let flipped = before.as_ref().is_none_or(|b| b.deleted != after.deleted);
            if flipped && after.deleted && !now.deleted {
                return Err(());
            }
            let empty = Map::new();
            let fields = model_changed_fields(before.as_ref().map_or(&empty, |b| &*b.state), &after.state);
            if fields.iter().any(|f| model_value_at(&now.state, f) != model_value_at(&after.state, f)) {
                return Err(());
            }
            let (state, deleted) = match &before {
                None => (now.state.clone(), true),
                Some(b) => {
                    let mut state = (*now.state).clone();
                    for f in &fields {
                        model_set_at(&mut state, f, model_value_at(&b.state, f).cloned());
                    }
                    if !reachable(&now.state, &state) {
                        return Err(());
                    }
                    (Arc::new(state), if flipped { b.deleted } else { now.deleted })
                }
            };
            let next = Entity { version: now.version + 1, state: state.clone(), deleted, ..now.clone() };
            planned.insert(ev.entity.clone(), next);
            let metadata = json!({"undoOf": ev.id, "undoType": ev.event_type});
            plan.push(Compensation { entity: now, state, deleted, metadata });
        }
        Ok(plan)
    }
}

/// The leaves where two states differ: objects on both sides compare key by key, anything
/// else whole.
fn model_changed_fields(from: &Map<String, Value>, to: &Map<String, Value>) -> Vec<Vec<String>> {
    let mut keys: Vec<&String> = from.keys().chain(to.keys()).collect();
    keys.sort();
    keys.dedup();
    let mut out = Vec::new();
    for k in keys {
        match (from.get(k), to.get(k)) {
            (Some(Value::Object(a)), Some(Value::Object(b))) => {
                out.extend(model_changed_fields(a, b).into_iter().map(|mut p| {
                    p.insert(0, k.clone());
                    p
                }));
            }
            (a, b) if a != b => out.push(vec![k.clone()]),
            _ => {}
        }
    }
    out
}

fn model_value_at<'a>(state: &'a Map<String, Value>, path: &[String]) -> Option<&'a Value> {
    let (first, rest) = path.split_first()?;
    let v = state.get(first)?;
    if rest.is_empty() { Some(v) } else { model_value_at(v.as_object()?, rest) }
}

/// Writes back (`Some`) or removes (`None`) the value at `path`.
fn model_set_at(state: &mut Map<String, Value>, path: &[String], value: Option<Value>) {
    let Some((first, rest)) = path.split_first() else { return };
    if rest.is_empty() {
        match value {
            Some(v) => state.insert(first.clone(), v),
            None => state.remove(first),
        };
        return;
    }
    match (state.get_mut(first), value) {
        (Some(Value::Object(inner)), value) => model_set_at(inner, rest, value),
        (_, None) => {}
        (_, Some(v)) => {
            let mut inner = Map::new();
            model_set_at(&mut inner, rest, Some(v));
            state.insert(first.clone(), Value::Object(inner));
        }
    }
}

fn contains_null(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.values().any(contains_null),
        _ => false,
    }
}

/// Whether a merge patch can turn `from` into `to`: a patch never writes a null, so every
/// place where they differ must hold no null in `to`.
fn reachable(from: &Map<String, Value>, to: &Map<String, Value>) -> bool {
    model_changed_fields(from, to).iter().all(|f| model_value_at(to, f).is_none_or(|v| !contains_null(v)))
}

struct ResolvedQuery {
    entity: Option<String>,
    pattern: Option<&'static str>,
    actor: Option<&'static str>,
    after: Option<Timestamp>,
    before: Option<Timestamp>,
    after_seq: u64,
    limit: Option<usize>,
}

impl ResolvedQuery {
    fn to_query(&self) -> EventQuery {
        let mut q = EventQuery::new().after_seq(self.after_seq);
        if let Some(e) = &self.entity {
            q = q.entity(e.clone());
        }
        if let Some(p) = self.pattern {
            q = q.event_type(p);
        }
        if let Some(a) = self.actor {
            q = q.actor(a);
        }
        if let Some(t) = self.after {
            q = q.after(t);
        }
        if let Some(t) = self.before {
            q = q.before(t).expect("a Timestamp always converts");
        }
        if let Some(n) = self.limit {
            q = q.limit(n);
        }
        q
    }
}

/// The timestamp the model expects for one event of a batch.
#[derive(Debug, Clone, Copy)]
enum ExpectedTs {
    Exact(i64),
    Auto,
}

/// What the model expects an append to return.
#[derive(Debug)]
enum Expected {
    Err(&'static str),
    /// An idempotent retry: these stored events, nothing written.
    Stored(Vec<Event>),
    /// New events (timestamps checked separately).
    New(Vec<(Event, ExpectedTs)>),
}

/// Runs operations against a real store and the model.
pub struct Harness {
    dir: tempfile::TempDir,
    /// The simulated storage the store lives on, if not the real file system: then a crash
    /// can be simulated.
    fault: Option<FaultStorage>,
    options: Options,
    store: Option<Store>,
    model: Model,
    store_id: StoreId,
    /// How often each kind of operation succeeded or was refused (for coverage figures).
    pub outcomes: std::collections::BTreeMap<String, u64>,
}

impl Harness {
    /// A fresh store in a temporary directory.
    pub fn new(options: Options) -> Harness {
        Self::new_in(&std::env::temp_dir(), options)
    }

    /// A fresh store in a temporary directory under `parent`.
    pub fn new_in(parent: &std::path::Path, options: Options) -> Harness {
        Self::with_storage(tempfile::tempdir_in(parent).expect("a temporary directory"), None, options)
    }

    /// A fresh store on simulated storage (in memory, `strata::FaultStorage`), where
    /// [`Op::Crash`] cuts the power: un-synced data and directory entries are lost, cut or
    /// garbled as the storage's `seed` decides.
    pub fn new_simulated(options: Options, seed: u64) -> Harness {
        Self::with_storage(tempfile::tempdir().expect("a temporary directory"), Some(FaultStorage::new(seed)), options)
    }

    fn with_storage(dir: tempfile::TempDir, fault: Option<FaultStorage>, options: Options) -> Harness {
        let mut h =
            Harness { dir, fault, options, store: None, model: Model::default(), store_id: StoreId(0), outcomes: Default::default() };
        let store = h.open().expect("a new store opens");
        h.store_id = store.store_id();
        h.store = Some(store);
        h
    }

    fn open(&self) -> strata::Result<Store> {
        match &self.fault {
            Some(fault) => Store::open_with_storage(SIMULATED_DIR, self.options.clone(), std::sync::Arc::new(fault.clone())),
            None => Store::open(self.dir.path(), self.options.clone()),
        }
    }

    fn store(&self) -> &Store {
        self.store.as_ref().expect("the store is open")
    }

    fn entity(&self, i: u8) -> &'static str {
        ENTITY_IDS[usize::from(i) % ENTITY_IDS.len()]
    }

    /// Runs one operation and compares its outcome with the model's.
    pub fn run(&mut self, op: &Op) -> Result<(), String> {
        let before = self.model.events.len();
        let result = self.run_op(op);
        let name = format!("{op:?}");
        let name = name.split(['(', ' ']).next().unwrap_or("op");
        let appended = if self.model.events.len() > before { "appended" } else { "no event" };
        *self.outcomes.entry(format!("{name}: {appended}")).or_default() += 1;
        result
    }

    fn run_op(&mut self, op: &Op) -> Result<(), String> {
        match op {
            Op::Append(w) => self.append(std::slice::from_ref(w), false),
            Op::Batch(ws) => self.append(ws, true),
            Op::Get(e) => {
                let id = self.entity(*e);
                same("get", self.store().get(id).map_err(|e| e.to_string())?, self.model.current(id))
            }
            Op::GetAsOf(e, pick) => {
                let (id, at) = (self.entity(*e), self.model.time(*pick));
                let got = self.store().get_as_of(id, at).map_err(|e| e.to_string())?;
                same(&format!("get_as_of({id}, {at:?})"), got, self.model.fold(id, |ev| ev.timestamp <= at))
            }
            Op::GetVersion(e, v) => {
                let id = self.entity(*e);
                let current = self.model.current(id).map_or(0, |e| e.version);
                let version = u64::from(*v) % (current + 2);
                let got = self.store().get_version(id, version).map_err(|e| e.to_string())?;
                same(
                    &format!("get_version({id}, {version})"),
                    got,
                    self.model.fold(id, |ev| ev.version <= version).filter(|e| e.version == version),
                )
            }
            Op::History(e) => {
                let id = self.entity(*e);
                let want: Vec<Event> = self.model.events.iter().filter(|ev| ev.entity == id).cloned().collect();
                same(&format!("history({id})"), self.store().history(id).map_err(|e| e.to_string())?, want)
            }
            Op::EventById(pick) => {
                let id = self.id_text(*pick);
                same(&format!("event({id})"), self.store().event(&id).map_err(|e| e.to_string())?, self.model.by_id(&id).cloned())
            }
            Op::Events(spec) => self.events(spec),
            Op::Undo(k, actor) => self.undo(*k, *actor),
            Op::CanUndo(k) => {
                let id = self.undo_target(*k);
                let want = self.model.plan_undo(&self.model.undo_events(&id)).is_ok();
                let got = self.store().can_undo(&id).map_err(|e| format!("can_undo({id}): {e}"))?;
                if got.can_undo != want {
                    return Err(format!("can_undo({id}) is {got:?}, the model says {want}"));
                }
                Ok(())
            }
            Op::UndoBatch(k, actor) => self.undo_batch(*k, *actor),
            Op::Rollback(e, pick, actor) => self.rollback(*e, *pick, *actor),
            Op::Checkpoint => match self.store().checkpoint() {
                Ok(Some(seq)) if seq != self.model.events.len() as u64 => {
                    Err(format!("checkpoint covers seq {seq} but the log ends at {}", self.model.events.len()))
                }
                Ok(_) => Ok(()),
                Err(e) => Err(format!("checkpoint: {e}")),
            },
            Op::Crash if self.fault.is_none() || self.options.durability != Durability::Always => self.run_op(&Op::Reopen),
            Op::Crash => {
                // The power goes while the store is open; everything acknowledged was synced.
                let lost = self.fault.as_ref().map(FaultStorage::crash).unwrap_or_default();
                drop(self.store.take());
                let store = self.open().map_err(|e| format!("open after a crash ({lost}): {e}"))?;
                if store.store_id() != self.store_id {
                    return Err("open after a crash: the store id changed".into());
                }
                self.store = Some(store);
                self.check_all().map_err(|e| format!("after a crash ({lost}): {e}"))
            }
            Op::Reopen => {
                drop(self.store.take());
                let store = self.open().map_err(|e| format!("reopen: {e}"))?;
                if store.store_id() != self.store_id {
                    return Err("reopen: the store id changed".into());
                }
                self.store = Some(store);
                self.check_all()
            }
        }
    }

    fn undo_target(&self, k: u16) -> String {
        match self.model.events.len() {
            _ if k == u16::MAX => "no-such-event".to_string(),
            0 => "no-such-event".to_string(),
            n => self.model.events[usize::from(k) % n].id.clone(),
        }
    }

    fn undo(&mut self, k: u16, actor: Option<u8>) -> Result<(), String> {
        let id = self.undo_target(k);
        let actor = actor.map(|a| ACTORS[usize::from(a) % ACTORS.len()]);
        let plan = self.model.plan_undo(&self.model.undo_events(&id));
        let got = match actor {
            Some(a) => self.store().undo_by(&id, a),
            None => self.store().undo(&id),
        }
        .map(|e| vec![e]);
        self.check_compensations(&format!("undo({id})"), plan, got, actor)
    }

    fn undo_batch(&mut self, k: u16, actor: Option<u8>) -> Result<(), String> {
        let batch = u64::from(k) % (self.model.events.len() as u64 + 2);
        let actor = actor.map(|a| ACTORS[usize::from(a) % ACTORS.len()]);
        let events: Vec<Event> = self.model.events.iter().filter(|e| e.batch == batch).cloned().collect();
        let plan = self.model.plan_undo(&events);
        let got = match actor {
            Some(a) => self.store().undo_batch_by(batch, a),
            None => self.store().undo_batch(batch),
        };
        self.check_compensations(&format!("undo_batch({batch})"), plan, got, actor)
    }

    fn rollback(&mut self, e: u8, pick: TimePick, actor: Option<u8>) -> Result<(), String> {
        let (id, at) = (self.entity(e), self.model.time(pick));
        let actor = actor.map(|a| ACTORS[usize::from(a) % ACTORS.len()]);
        let label = format!("rollback({id}, {at:?})");
        let got = match actor {
            Some(a) => self.store().rollback_by(id, at, a),
            None => self.store().rollback(id, at),
        };
        let Some(now) = self.model.current(id) else {
            return match got {
                Err(Error::NotFound { .. }) => Ok(()),
                other => Err(format!("{label}: expected NotFound, got {other:?}")),
            };
        };
        let (state, deleted) = match self.model.fold(id, |ev| ev.timestamp <= at) {
            None => (now.state.clone(), true),
            Some(then) => {
                if !reachable(&now.state, &then.state) {
                    return match got {
                        Err(Error::InvalidInput { .. }) => Ok(()),
                        other => Err(format!("{label}: the target state holds an unwritable null; expected InvalidInput, got {other:?}")),
                    };
                }
                (then.state, then.deleted)
            }
        };
        let got = got.map_err(|e| format!("{label}: expected success, got {} ({e})", error_kind(&e)))?;
        if state == now.state && deleted == now.deleted {
            return match got {
                strata::RollbackOutcome::Unchanged => Ok(()),
                other => Err(format!("{label}: the entity is already in its state at that time, but the store appended {other:?}")),
            };
        }
        let Some(ev) = got.event().cloned() else {
            return Err(format!("{label}: the state differs but the store appended nothing"));
        };
        let metadata = json!({"rollbackTo": at.to_rfc3339()});
        let step = Compensation { entity: now, state, deleted, metadata };
        self.check_compensations(&label, Ok(vec![step]), Ok(vec![ev]), actor)
    }

    /// Checks the events an undo, batch undo or rollback appended against the model's plan:
    /// one per step, in order, in one new batch, each with the expected metadata and type and
    /// leaving its entity exactly in the planned state.
    fn check_compensations(
        &mut self,
        label: &str,
        plan: Result<Vec<Compensation>, ()>,
        got: strata::Result<Vec<Event>>,
        actor: Option<&str>,
    ) -> Result<(), String> {
        let plan = match (plan, got) {
            (Err(()), Err(Error::CannotUndo { .. })) => return Ok(()),
            (Err(()), other) => return Err(format!("{label}: the model refuses, the store answered {other:?}")),
            (Ok(_), Err(e)) => return Err(format!("{label}: the model expects success, got {} ({e})", error_kind(&e))),
            (Ok(plan), Ok(got)) if plan.len() != got.len() => {
                return Err(format!("{label}: the model plans {} events, the store appended {got:#?}", plan.len()));
            }
            (Ok(plan), Ok(got)) => plan.into_iter().zip(got).collect::<Vec<_>>(),
        };
        let base_seq = self.model.events.len() as u64 + 1;
        let last_ts = self.model.last_ts();
        for (i, (step, ev)) in plan.into_iter().enumerate() {
            let verb = match (step.entity.deleted, step.deleted) {
                (false, true) => "Deleted",
                (true, false) => "Restored",
                _ => "Updated",
            };
            let want = Event {
                seq: base_seq + i as u64,
                id: self.store_id.event_id(base_seq + i as u64),
                event_type: format!("{}.{verb}", step.entity.kind),
                entity: step.entity.id.clone(),
                actor: actor.map(str::to_string),
                timestamp: ev.timestamp,
                version: step.entity.version + 1,
                data: ev.data.clone(),
                metadata: step.metadata.clone(),
                batch: base_seq,
                store: self.store_id,
            };
            if ev != want || ev.timestamp.as_micros() <= last_ts || !ev.data.is_object() {
                return Err(format!("{label}: expected\n{want:#?}\n(after timestamp {last_ts}), got\n{ev:#?}"));
            }
            self.model.events.push(ev);
            let after = self.model.current(&step.entity.id).expect("the entity exists");
            if after.state != step.state || after.deleted != step.deleted {
                return Err(format!(
                    "{label}: event {} leaves {} as {:?} (deleted {}), the model expects {:?} (deleted {})",
                    base_seq + i as u64,
                    step.entity.id,
                    after.state,
                    after.deleted,
                    step.state,
                    step.deleted
                ));
            }
        }
        self.check_all()
    }

    fn id_text(&self, pick: IdPick) -> String {
        match pick {
            IdPick::Caller(k) => CALLER_IDS[usize::from(k) % CALLER_IDS.len()].to_string(),
            IdPick::Generated(k) => self.store_id.event_id(u64::from(k) + 1),
        }
    }

    /// Compares every entity and the whole log with the model.
    pub fn check_all(&self) -> Result<(), String> {
        let store = self.store();
        if store.last_seq() != self.model.events.len() as u64 {
            return Err(format!("last_seq is {} but the model has {} events", store.last_seq(), self.model.events.len()));
        }
        same("events(all)", store.events(&EventQuery::new()).map_err(|e| e.to_string())?, self.model.events.clone())?;
        for id in &ENTITY_IDS[..ENTITY_IDS.len() - 1] {
            same(&format!("get({id})"), store.get(id).map_err(|e| e.to_string())?, self.model.current(id))?;
        }
        Ok(())
    }

    fn events(&self, spec: &QuerySpec) -> Result<(), String> {
        let m = &self.model;
        let q = ResolvedQuery {
            entity: spec.entity.map(|e| self.entity(e).to_string()),
            pattern: spec.pattern.map(|p| PATTERNS[usize::from(p) % PATTERNS.len()]),
            actor: spec.actor.map(|a| ACTORS[usize::from(a) % ACTORS.len()]),
            after: spec.after.map(|t| m.time(t)),
            before: spec.before.map(|t| m.time(t)),
            after_seq: u64::from(spec.after_seq) % (m.events.len() as u64 + 2),
            limit: spec.limit.map(usize::from),
        };
        let all: Vec<Event> = m.events.iter().filter(|e| m.matches(&q, e)).cloned().collect();
        let want: Vec<Event> = all.iter().take(q.limit.unwrap_or(usize::MAX)).cloned().collect();
        let got = self.store().events(&q.to_query()).map_err(|e| e.to_string())?;
        let label = format!("events({:?})", q.to_query());
        same(&label, got, want)?;
        // Paging by cursor to the end gives the unlimited listing.
        if let Some(n) = q.limit.filter(|&n| n > 0) {
            let mut paged = Vec::new();
            let mut cursor = q.after_seq;
            loop {
                let page = self
                    .store()
                    .events(&ResolvedQuery { after_seq: cursor, limit: Some(n), ..copy(&q) }.to_query())
                    .map_err(|e| e.to_string())?;
                if page.len() > n {
                    return Err(format!("{label}: a page holds {} events, over its limit", page.len()));
                }
                let Some(last) = page.last() else { break };
                cursor = last.seq;
                paged.extend(page);
            }
            same(&format!("{label} paged by cursor"), paged, all)?;
        }
        Ok(())
    }

    /// Appends through the store and checks the outcome against the model's prediction.
    fn append(&mut self, writes: &[Write], as_batch: bool) -> Result<(), String> {
        let now = Timestamp::now().as_micros();
        let future_base = self.model.last_ts().max(now) + 86_400_000_000;
        // The version each write sees, assuming the batch's earlier writes succeed (if one
        // fails, the whole batch does).
        let mut seen: HashMap<&str, u64> = HashMap::new();
        let batch: Vec<NewEvent> = writes
            .iter()
            .map(|w| {
                let id = self.entity(w.entity);
                let current = *seen.entry(id).or_insert_with(|| self.model.current(id).map_or(0, |e| e.version));
                seen.insert(id, current + 1);
                self.new_event(w, future_base, current)
            })
            .collect();
        let expected = self.predict(writes, future_base);
        let got = if as_batch {
            self.store().append_batch(batch)
        } else {
            self.store().append(batch.into_iter().next().expect("one write")).map(|e| vec![e])
        };
        let label = format!("append{} of {} event(s)", if as_batch { "_batch" } else { "" }, writes.len());
        match (expected, got) {
            (Expected::Err(kind), Err(e)) if error_kind(&e) == kind => {
                *self.outcomes.entry(format!("append refused: {kind}")).or_default() += 1
            }
            (Expected::Err(kind), Err(e)) => return Err(format!("{label}: expected {kind}, got {} ({e})", error_kind(&e))),
            (Expected::Err(kind), Ok(evs)) => return Err(format!("{label}: expected {kind}, got Ok({evs:#?})")),
            (_, Err(e)) => return Err(format!("{label}: expected success, got {} ({e})", error_kind(&e))),
            (Expected::Stored(want), Ok(got)) => same(&format!("{label} (idempotent retry)"), got, want)?,
            (Expected::New(want), Ok(got)) => {
                self.check_new(&label, &want, &got)?;
                self.model.events.extend(got);
            }
        }
        if self.store().last_seq() != self.model.events.len() as u64 {
            return Err(format!("{label}: last_seq is {} but the model has {} events", self.store().last_seq(), self.model.events.len()));
        }
        for w in writes {
            let id = self.entity(w.entity);
            same(&format!("{label}, then get({id})"), self.store().get(id).map_err(|e| e.to_string())?, self.model.current(id))?;
        }
        Ok(())
    }

    fn check_new(&self, label: &str, want: &[(Event, ExpectedTs)], got: &[Event]) -> Result<(), String> {
        if want.len() != got.len() {
            return Err(format!("{label}: expected {} events, got {}", want.len(), got.len()));
        }
        let last_ts = self.model.last_ts();
        let mut prev = i64::MIN;
        for ((w, ts), g) in want.iter().zip(got) {
            let t = g.timestamp.as_micros();
            let ts_ok = match ts {
                ExpectedTs::Exact(x) => t == *x,
                ExpectedTs::Auto => t > last_ts && t >= prev,
            };
            if !ts_ok || t <= last_ts || t < prev {
                return Err(format!("{label}: seq {} has timestamp {t}, expected {ts:?} after {last_ts} and not before {prev}", g.seq));
            }
            prev = t;
            let mut w = w.clone();
            w.timestamp = g.timestamp;
            if &w != g {
                return Err(format!("{label}: expected\n{w:#?}\ngot\n{g:#?}"));
            }
        }
        if want.iter().all(|(_, ts)| matches!(ts, ExpectedTs::Auto)) && got.windows(2).any(|p| p[0].timestamp != p[1].timestamp) {
            return Err(format!("{label}: the events of a batch do not share a timestamp"));
        }
        Ok(())
    }

    fn new_event(&self, w: &Write, future_base: i64, current: u64) -> NewEvent {
        let id = self.entity(w.entity);
        let mut ne = match &w.action {
            Action::Create { kind, data } => NewEvent::create(KINDS[usize::from(*kind) % KINDS.len()], id, data.clone()),
            Action::Update { patch, verb } => {
                let ne = NewEvent::update(id, patch.clone());
                match verb {
                    Some(v) => ne.verb(VERBS[usize::from(*v) % VERBS.len()]),
                    None => ne,
                }
            }
            Action::Delete => NewEvent::delete(id),
            Action::Restore => NewEvent::restore(id),
        };
        if let Some(a) = w.actor {
            ne = ne.actor(ACTORS[usize::from(a) % ACTORS.len()]);
        }
        if let Some(pick) = w.id {
            ne = ne.id(self.id_text(pick));
        }
        match w.ts {
            TsPick::Auto => {}
            TsPick::Stale(d) => ne = ne.timestamp(Timestamp::from_micros(self.model.last_ts().saturating_sub(i64::from(d)))),
            TsPick::Future(k) => ne = ne.timestamp(Timestamp::from_micros(future_base + i64::from(k) * 1000)),
        }
        match w.expect {
            ExpectPick::No => {}
            ExpectPick::Current => ne = ne.expect_version(current),
            ExpectPick::Off(d) => ne = ne.expect_version(current + u64::from(d.max(1))),
        }
        match w.metadata {
            None => {}
            Some(true) => ne = ne.metadata(json!({"reason": format!("because {}", w.entity)})),
            Some(false) => ne = ne.metadata(json!({"undoOf": "x"})),
        }
        ne
    }

    /// What the store must answer, following the contract's order of checks: the batch's
    /// ids first (an all-stored batch is an idempotent retry), then per event its timestamp,
    /// its fields, its expected version and the operation against the entity's state.
    fn predict(&self, writes: &[Write], future_base: i64) -> Expected {
        let m = &self.model;
        let ids: Vec<String> = writes.iter().filter_map(|w| w.id.map(|p| self.id_text(p))).collect();
        if !ids.is_empty() {
            let mut unique = ids.clone();
            unique.sort();
            unique.dedup();
            if unique.len() != ids.len() {
                return Expected::Err("InvalidInput");
            }
            let stored: Vec<Event> = ids.iter().filter_map(|id| m.by_id(id).cloned()).collect();
            if stored.len() == writes.len() {
                return Expected::Stored(stored);
            }
            if !stored.is_empty() {
                return Expected::Err("InvalidInput");
            }
        }
        let base_seq = m.events.len() as u64 + 1;
        let last_ts = m.last_ts();
        let mut prev_explicit = i64::MIN;
        // Entity -> (kind, version, deleted), as the batch so far leaves it.
        let mut overlay: HashMap<&str, (String, u64, bool)> = HashMap::new();
        let mut out = Vec::new();
        for (i, w) in writes.iter().enumerate() {
            let id = self.entity(w.entity);
            let ts = match w.ts {
                TsPick::Auto => ExpectedTs::Auto,
                TsPick::Stale(_) => return Expected::Err("TimestampRegression"),
                TsPick::Future(k) => {
                    let t = future_base + i64::from(k) * 1000;
                    if t <= last_ts || t < prev_explicit {
                        return Expected::Err("TimestampRegression");
                    }
                    prev_explicit = t;
                    ExpectedTs::Exact(t)
                }
            };
            let verb = match &w.action {
                Action::Update { verb: Some(v), .. } => Some(VERBS[usize::from(*v) % VERBS.len()]),
                _ => None,
            };
            let bad_id = w.id.is_some_and(|p| matches!(p, IdPick::Generated(_)));
            if id.is_empty() || verb == Some("Deleted") || bad_id || w.metadata == Some(false) {
                return Expected::Err("InvalidInput");
            }
            let state = overlay.get(id).cloned().or_else(|| m.current(id).map(|e| (e.kind, e.version, e.deleted)));
            let version = state.as_ref().map_or(0, |s| s.1);
            match w.expect {
                ExpectPick::Off(_) => return Expected::Err("VersionConflict"),
                ExpectPick::Current | ExpectPick::No => {}
            }
            let (kind, deleted, event_type, data) = match (&w.action, state) {
                (Action::Create { .. }, Some(_)) => return Expected::Err("AlreadyExists"),
                (Action::Create { kind, data }, None) => {
                    let kind = KINDS[usize::from(*kind) % KINDS.len()].to_string();
                    (kind.clone(), false, format!("{kind}.Created"), data.clone())
                }
                (_, None) => return Expected::Err("NotFound"),
                (Action::Delete, Some((_, _, true))) | (Action::Restore, Some((_, _, false))) => return Expected::Err("InvalidInput"),
                (Action::Delete, Some((kind, _, _))) => (kind.clone(), true, format!("{kind}.Deleted"), json!({})),
                (Action::Restore, Some((kind, _, _))) => (kind.clone(), false, format!("{kind}.Restored"), json!({})),
                (Action::Update { patch, .. }, Some((kind, _, was_deleted))) => {
                    (kind.clone(), was_deleted, format!("{kind}.{}", verb.unwrap_or("Updated")), patch.clone())
                }
            };
            let seq = base_seq + i as u64;
            let metadata = match w.metadata {
                Some(true) => json!({"reason": format!("because {}", w.entity)}),
                _ => json!({}),
            };
            let event = Event {
                seq,
                id: w.id.map_or_else(|| self.store_id.event_id(seq), |p| self.id_text(p)),
                event_type,
                entity: id.to_string(),
                actor: w.actor.map(|a| ACTORS[usize::from(a) % ACTORS.len()].to_string()),
                timestamp: Timestamp::from_micros(0),
                version: version + 1,
                data,
                metadata,
                batch: base_seq,
                store: self.store_id,
            };
            overlay.insert(id, (kind, version + 1, deleted));
            out.push((event, ts));
        }
        Expected::New(out)
    }
}

fn copy(q: &ResolvedQuery) -> ResolvedQuery {
    ResolvedQuery { entity: q.entity.clone(), after_seq: q.after_seq, limit: q.limit, ..*q }
}

fn same<T: PartialEq + std::fmt::Debug>(what: &str, got: T, want: T) -> Result<(), String> {
    if got == want { Ok(()) } else { Err(format!("{what}: the store returned\n{got:#?}\nbut the model expects\n{want:#?}")) }
}
