//! Turning workload ops into strata events, and building stores for the benchmarks.
//!
//! The workload's kinds are lower-case (`contact`, `deal`); strata stores them as
//! `Contact` and `Deal`, so event types read `Contact.Created`, `Deal.Qualified`.

#![allow(dead_code)]

use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use strata::{Durability, NewEvent, Options, Store};

use super::workload::{self, Op, WorkloadConfig};

/// The strata kind for a workload kind.
pub fn kind_name(kind: &str) -> &'static str {
    match kind {
        "contact" => "Contact",
        "deal" => "Deal",
        _ => "Other",
    }
}

/// The strata event for one op, taking its data.
pub fn new_event(op: Op) -> NewEvent {
    match op {
        Op::Create { kind, id, data } => NewEvent::create(kind_name(kind), id, data),
        Op::Update { id, patch, verb: Some(verb) } => NewEvent::update(id, patch).verb(verb),
        Op::Update { id, patch, verb: None } => NewEvent::update(id, patch),
        Op::Delete { id } => NewEvent::delete(id),
        Op::Restore { id } => NewEvent::restore(id),
    }
}

/// The strata event for one op, cloning its data.
pub fn new_event_ref(op: &Op) -> NewEvent {
    new_event(op.clone())
}

/// Options for benchmark stores: the defaults, with `durability`, and no automatic
/// checkpoints (a benchmark that wants one writes it explicitly, so that "open without a
/// checkpoint" really replays the whole log).
pub fn options(durability: Durability) -> Options {
    Options { durability, checkpoint_every_events: 0, checkpoint_every_bytes: 0, ..Options::default() }
}

/// The visible state of a strata entity, as the reference fold and the SQLite baseline
/// report it: `None` when absent or deleted.
pub fn visible(entity: Option<strata::Entity>) -> Option<Value> {
    entity.filter(|e| !e.deleted).map(|e| Value::Object(Arc::unwrap_or_clone(e.state)))
}

/// Gives the events of a workload their own timestamps, one microsecond apart from `base`.
///
/// strata stamps a whole batch with one timestamp unless told otherwise, so a log loaded
/// in big batches would hold runs of versions sharing a timestamp, and an as-of read could
/// only ever land on the last version of a batch. Loads in the benchmarks stamp each event
/// as the history being imported had it (and as the SQLite baseline does).
pub struct Stamper {
    next: i64,
}

impl Stamper {
    /// Timestamps from now on.
    pub fn new() -> Self {
        Stamper { next: strata::Timestamp::now().as_micros() }
    }

    /// `event` with the next timestamp.
    pub fn stamp(&mut self, event: NewEvent) -> NewEvent {
        self.next += 1;
        event.timestamp(strata::Timestamp::from_micros(self.next))
    }
}

impl Default for Stamper {
    fn default() -> Self {
        Self::new()
    }
}

/// A store in `dir` holding the workload of `config`, appended in `batch`-event batches
/// (each event with its own timestamp, see [`Stamper`]) without fsync, then synced once:
/// the fixture of the read, replay and query benches. Returns the store and the ops.
pub fn loaded_store(dir: &Path, config: &WorkloadConfig, batch: usize) -> (Store, Vec<Op>) {
    let ops = workload::generate(config).expect("workload config is valid");
    let store = Store::open(dir, options(Durability::Never)).expect("open fixture store");
    let mut stamper = Stamper::new();
    for chunk in ops.chunks(batch) {
        store.append_batch(chunk.iter().map(|op| stamper.stamp(new_event_ref(op))).collect()).expect("load fixture batch");
    }
    store.sync().expect("sync fixture store");
    (store, ops)
}

/// A small workload for the criterion suites: `events` events over `entities` ordinary
/// entities, with deep entities of 100, 1,000 and 10,000 versions.
pub fn bench_config(events: usize, entities: usize) -> WorkloadConfig {
    WorkloadConfig { total_events: events, entities, deep_depths: vec![100, 1_000, 10_000], seed: 0xBE7C_4000 }
}
