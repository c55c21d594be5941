//! Shared by the fault tests (power_loss, truncation, bit_flips, io_errors): seeded
//! workloads, and the checks that a recovered store holds exactly what it should.
#![allow(dead_code)]

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};
use strata::{Event, EventQuery, NewEvent, Store};

/// Whether the long versions were asked for (`STRATA_LONG=1`).
pub fn long() -> bool {
    std::env::var("STRATA_LONG").is_ok_and(|v| v == "1")
}

/// The seed of a randomized test: `STRATA_SEED` when set (to replay a failure), else
/// `default`. Printed so that a failure can be replayed.
pub fn seed(test: &str, default: u64) -> u64 {
    let seed = std::env::var("STRATA_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(default);
    println!("{test}: seed {seed} (replay with STRATA_SEED={seed})");
    seed
}

#[path = "../support/rng.rs"]
mod rng;
pub use rng::Rng;

const WORDS: [&str; 16] = [
    "lead",
    "qualified",
    "proposal",
    "won",
    "lost",
    "meeting",
    "call",
    "email",
    "renewal",
    "invoice",
    "discount",
    "north",
    "south",
    "enterprise",
    "startup",
    "follow-up",
];

fn text(rng: &mut Rng, bytes: usize) -> String {
    let mut s = String::new();
    while s.len() < bytes {
        s.push_str(WORDS[rng.below(WORDS.len())]);
        s.push(' ');
    }
    s
}

/// A seeded workload of batches that all succeed when applied in order to an empty store:
/// creates, updates (some with a custom verb), deletes, restores, single events and
/// multi-event batches, with actors, metadata and caller-supplied ids here and there.
/// `payload_bytes` sizes each event's data; `batch_percent` of the steps are batches of
/// 2-6 events.
pub fn workload(seed: u64, steps: usize, payload_bytes: usize, batch_percent: u64) -> Vec<Vec<NewEvent>> {
    let mut rng = Rng(seed);
    // Entity id -> deleted.
    let mut model: BTreeMap<String, bool> = BTreeMap::new();
    let mut next_entity = 0;
    let mut out = Vec::with_capacity(steps);
    for step in 0..steps {
        let size = if rng.chance(batch_percent) { 2 + rng.below(5) } else { 1 };
        let mut batch = Vec::with_capacity(size);
        for i in 0..size {
            let ids: Vec<(String, bool)> = model.iter().map(|(k, v)| (k.clone(), *v)).collect();
            let pick = rng.below(100);
            let mut ev = if ids.is_empty() || pick < 30 {
                next_entity += 1;
                let id = format!("e{next_entity}");
                model.insert(id.clone(), false);
                let kind = ["Contact", "Deal", "Account"][rng.below(3)];
                NewEvent::create(kind, id, json!({"n": step, "stage": "lead", "note": text(&mut rng, payload_bytes)}))
            } else {
                let (id, deleted) = ids[rng.below(ids.len())].clone();
                if deleted {
                    model.insert(id.clone(), false);
                    NewEvent::restore(id)
                } else if pick < 38 {
                    model.insert(id.clone(), true);
                    NewEvent::delete(id)
                } else {
                    let patch = json!({"n": step, "stage": WORDS[rng.below(WORDS.len())], "note": text(&mut rng, payload_bytes / 2)});
                    let ev = NewEvent::update(id, patch);
                    if rng.chance(20) { ev.verb("Qualified") } else { ev }
                }
            };
            if rng.chance(30) {
                ev = ev.actor(format!("agent_{}", rng.below(4)));
            }
            if rng.chance(10) {
                ev = ev.metadata(json!({"source": "fault-test", "step": step}));
            }
            if rng.chance(10) {
                ev = ev.id(format!("req-{step}-{i}"));
            }
            batch.push(ev);
        }
        out.push(batch);
    }
    out
}

/// An entity's expected state: kind, version, deleted, fields.
#[derive(Debug, Clone, PartialEq)]
pub struct Expected {
    pub kind: String,
    pub version: u64,
    pub deleted: bool,
    pub state: Map<String, Value>,
}

/// The fold of `events` per entity, computed independently of the store.
pub fn fold(events: &[Event]) -> BTreeMap<String, Expected> {
    let mut out: BTreeMap<String, Expected> = BTreeMap::new();
    for ev in events {
        let data = ev.data.as_object().cloned().unwrap_or_default();
        if ev.verb() == "Created" {
            out.insert(ev.entity.clone(), Expected { kind: ev.kind().to_string(), version: ev.version, deleted: false, state: data });
            continue;
        }
        let e = out.get_mut(&ev.entity).expect("event for an entity never created");
        strata::merge_patch(&mut e.state, &data);
        e.version = ev.version;
        match ev.verb() {
            "Deleted" => e.deleted = true,
            "Restored" => e.deleted = false,
            _ => {}
        }
    }
    out
}

/// Checks that the store holds exactly `expected` (full `Event` values, in order) and that
/// the current state of the entities named in `spot_check` (all when `None`) is their fold.
pub fn assert_holds(store: &Store, expected: &[Event], spot_check: Option<&[String]>, context: &str) {
    let got = store.events(&EventQuery::new()).unwrap_or_else(|e| panic!("{context}: reading the log failed: {e}"));
    if got != expected {
        let first_diff = got.iter().zip(expected).position(|(a, b)| a != b).unwrap_or(got.len().min(expected.len()));
        panic!(
            "{context}: the store holds {} events, {} expected; first difference at index {first_diff}: got {:?}, expected {:?}",
            got.len(),
            expected.len(),
            got.get(first_diff),
            expected.get(first_diff)
        );
    }
    assert_eq!(store.last_seq(), expected.len() as u64, "{context}: last_seq");
    let states = fold(expected);
    let ids: Vec<String> = match spot_check {
        Some(ids) => ids.to_vec(),
        None => states.keys().cloned().collect(),
    };
    for id in ids {
        let got = store.get(&id).unwrap_or_else(|e| panic!("{context}: get({id}) failed: {e}"));
        match (states.get(&id), got) {
            (None, None) => {}
            (Some(want), Some(e)) => {
                let got =
                    Expected { kind: e.kind, version: e.version, deleted: e.deleted, state: std::sync::Arc::unwrap_or_clone(e.state) };
                assert_eq!(&got, want, "{context}: state of {id}");
            }
            (want, got) => panic!("{context}: entity {id}: expected {want:?}, got {got:?}"),
        }
    }
}

/// Checks a store reopened after a crash: it holds the first `n` batches of `all` for some
/// `n >= acked` (every acknowledged batch, and unacknowledged ones only whole and in order),
/// and returns `n`.
pub fn assert_recovered(store: &Store, all: &[Vec<Event>], acked: usize, context: &str) -> usize {
    let count = store.last_seq() as usize;
    let mut n = 0;
    let mut events = 0;
    while events < count && n < all.len() {
        events += all[n].len();
        n += 1;
    }
    assert_eq!(events, count, "{context}: the log ends inside batch {n}: part of a batch is visible ({count} events)");
    assert!(n >= acked, "{context}: {acked} batches were acknowledged but only {n} survived ({count} events)");
    let expected: Vec<Event> = all[..n].iter().flatten().cloned().collect();
    // The entities of the last few batches, plus a few others: the full state check is in
    // the events comparison.
    let mut ids: Vec<String> = all[n.saturating_sub(3)..n].iter().flatten().map(|e| e.entity.clone()).collect();
    ids.extend(["e1", "e2", "e7"].map(String::from));
    ids.sort();
    ids.dedup();
    assert_holds(store, &expected, Some(&ids), context);
    n
}

/// Checks that appends continue after recovery: a single event and a batch get the next
/// seqs and read back.
pub fn assert_appends_continue(store: &Store, context: &str) {
    let last = store.last_seq();
    let ev = store
        .append(NewEvent::create("Probe", format!("probe-{last}"), json!({"after": last})))
        .unwrap_or_else(|e| panic!("{context}: append after recovery failed: {e}"));
    assert_eq!(ev.seq, last + 1, "{context}: seq after recovery");
    let batch = store
        .append_batch(vec![
            NewEvent::update(format!("probe-{last}"), json!({"more": true})),
            NewEvent::create("Probe", format!("probe-{last}-b"), json!({})),
        ])
        .unwrap_or_else(|e| panic!("{context}: batch after recovery failed: {e}"));
    assert_eq!(batch[0].seq, last + 2, "{context}: batch seq after recovery");
    let back = store.events(&EventQuery::new().after_seq(last)).unwrap_or_else(|e| panic!("{context}: read after append: {e}"));
    let mut want = vec![ev];
    want.extend(batch);
    assert_eq!(back, want, "{context}: events appended after recovery");
}
