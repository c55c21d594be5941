//! Property tests over random histories (creates, merge-patch updates with nested objects,
//! deletes, restores, atomic batches, undos, batch undos and rollbacks):
//!
//! - undo followed by undo of the undo (redo) leaves the entity as it was before both;
//! - after `rollback(id, t)` the entity equals `get_as_of(id, t)` (or is soft-deleted when
//!   `t` is before its creation);
//! - `can_undo` (and `can_undo_batch`) say yes exactly when `undo` (`undo_batch`) succeeds,
//!   with a validator in play, and a refusal carries the same reason.
//!
//! proptest prints the failing case and persists its seed in
//! `tests/undo_properties.proptest-regressions`; a failing seed becomes a named regression test in tests/undo.rs.
//! `STRATA_LONG=1` runs many more cases.

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use serde_json::{Map, Value, json};
use strata::{Durability, Entity, Error, Event, NewEvent, Options, Store, Timestamp};

const ENTITIES: [&str; 3] = ["e0", "e1", "e2"];
const KEYS: [&str; 4] = ["a", "b", "c", "n"];

#[derive(Debug, Clone)]
enum Op {
    Create(usize, Value),
    Update(usize, Value),
    Delete(usize),
    Restore(usize),
    Batch(Vec<(usize, Value)>),
    Undo(usize),
    UndoBatch(usize),
    Rollback(usize, usize),
}

fn cases() -> u32 {
    if std::env::var_os("STRATA_LONG").is_some() { 2048 } else { 48 }
}

/// A leaf value: never null (a created state holding null cannot be written back by a
/// merge patch; that refusal has its own tests).
fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![(0i64..3).prop_map(Value::from), Just(json!("s")), Just(json!([1, 2]))]
}

fn nested() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(prop::sample::select(vec!["x", "y"]), 0i64..3, 0..=2)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), Value::from(v))).collect()))
}

fn object() -> impl Strategy<Value = Value> {
    let fields = prop::collection::btree_map(prop::sample::select(KEYS.to_vec()), prop_oneof![3 => leaf(), 1 => nested()], 0..=3);
    (fields, prop::option::of(0i64..4)).prop_map(|(m, counter)| with_counter(m, counter.map(Value::from)))
}

/// `n` is always an integer counter (or absent), which the validator of the third property
/// keeps from going down.
fn with_counter(fields: std::collections::BTreeMap<&str, Value>, counter: Option<Value>) -> Value {
    let mut object: Map<String, Value> = fields.into_iter().filter(|(k, _)| *k != "n").map(|(k, v)| (k.to_string(), v)).collect();
    if let Some(counter) = counter {
        object.insert("n".into(), counter);
    }
    Value::Object(object)
}

/// A merge patch: removals, leaves, and nested patches (which may remove nested keys).
fn patch() -> impl Strategy<Value = Value> {
    let nested_patch = prop::collection::btree_map(
        prop::sample::select(vec!["x", "y"]),
        prop_oneof![Just(Value::Null), (0i64..3).prop_map(Value::from)],
        0..=2,
    )
    .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()));
    let fields = prop::collection::btree_map(
        prop::sample::select(KEYS.to_vec()),
        prop_oneof![2 => Just(Value::Null), 3 => leaf(), 2 => nested_patch],
        0..=3,
    );
    let counter = prop::option::of(prop_oneof![1 => Just(Value::Null), 4 => (0i64..4).prop_map(Value::from)]);
    (fields, counter).prop_map(|(m, counter)| with_counter(m, counter))
}

fn op() -> impl Strategy<Value = Op> {
    let entity = 0..ENTITIES.len();
    prop_oneof![
        3 => (entity.clone(), object()).prop_map(|(e, v)| Op::Create(e, v)),
        6 => (entity.clone(), patch()).prop_map(|(e, p)| Op::Update(e, p)),
        1 => entity.clone().prop_map(Op::Delete),
        1 => entity.clone().prop_map(Op::Restore),
        2 => prop::collection::vec((entity.clone(), patch()), 1..=3).prop_map(Op::Batch),
        3 => any::<usize>().prop_map(Op::Undo),
        1 => any::<usize>().prop_map(Op::UndoBatch),
        2 => (entity, any::<usize>()).prop_map(|(e, t)| Op::Rollback(e, t)),
    ]
}

fn history() -> impl Strategy<Value = Vec<Op>> {
    prop::collection::vec(op(), 1..40)
}

fn open() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    // Durability is not what these properties are about; skip the fsyncs to run more cases.
    let store = Store::open(dir.path(), Options { durability: Durability::Never, ..Options::default() }).unwrap();
    (dir, store)
}

/// Errors a random history may legitimately run into; anything else fails the test.
fn expected(err: &Error) -> bool {
    matches!(
        err,
        Error::NotFound { .. }
            | Error::AlreadyExists { .. }
            | Error::InvalidInput { .. }
            | Error::CannotUndo { .. }
            | Error::Rejected { .. }
    )
}

/// Plays `ops` and returns every event appended, in order.
fn play(store: &Store, ops: &[Op]) -> Result<Vec<Event>, TestCaseError> {
    let mut events: Vec<Event> = Vec::new();
    for op in ops {
        let pick = |i: usize| events.get(i % events.len().max(1)).cloned();
        let outcome = match op {
            Op::Create(e, v) => store.append(NewEvent::create("Item", ENTITIES[*e], v.clone())).map(|e| vec![e]),
            Op::Update(e, p) => store.append(NewEvent::update(ENTITIES[*e], p.clone())).map(|e| vec![e]),
            Op::Delete(e) => store.append(NewEvent::delete(ENTITIES[*e])).map(|e| vec![e]),
            Op::Restore(e) => store.append(NewEvent::restore(ENTITIES[*e])).map(|e| vec![e]),
            Op::Batch(updates) => store.append_batch(updates.iter().map(|(e, p)| NewEvent::update(ENTITIES[*e], p.clone())).collect()),
            Op::Undo(i) => match pick(*i) {
                Some(target) => store.undo(&target.id).map(|e| vec![e]),
                None => Ok(Vec::new()),
            },
            Op::UndoBatch(i) => match pick(*i) {
                Some(target) => store.undo_batch(target.batch),
                None => Ok(Vec::new()),
            },
            Op::Rollback(e, t) => {
                let ts = pick(*t).map_or(Timestamp::from_micros(0), |ev| ev.timestamp);
                store.rollback(ENTITIES[*e], ts).map(|outcome| outcome.event().cloned().into_iter().collect())
            }
        };
        match outcome {
            Ok(appended) => events.extend(appended),
            Err(err) => prop_assert!(expected(&err), "{op:?} failed with {err:?}"),
        }
    }
    Ok(events)
}

/// What a user sees of an entity, without its version and timestamps.
fn seen(entity: &Entity) -> (Map<String, Value>, bool) {
    ((*entity.state).clone(), entity.deleted)
}

fn current(store: &Store, id: &str) -> (Map<String, Value>, bool) {
    seen(&store.get(id).unwrap().expect("the entity of a stored event exists"))
}

/// The rules of the third property, so that some undos are rejected by a validator: `a`
/// and `b` never coexist, and `n` (when an integer before and after) never decreases, like a
/// ledger's running total.
fn item_rules(before: Option<&Entity>, _event: &Event, after: &Entity) -> Result<(), String> {
    if after.state.contains_key("a") && after.state.contains_key("b") {
        return Err(format!("{} would hold both a and b", after.id));
    }
    let n = |e: &Entity| e.state.get("n").and_then(Value::as_i64);
    match (before.and_then(n), n(after)) {
        (Some(was), Some(now)) if now < was => Err(format!("n of {} would go down from {was} to {now}", after.id)),
        _ => Ok(()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig {
        cases: cases(),
        // The default (next to lib.rs) cannot be found from tests/: keep failing seeds in
        // tests/undo_properties.proptest-regressions, replayed first on every run.
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource("proptest-regressions"))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn undo_then_redo_restores_the_state_before_both(ops in history(), picks in prop::collection::vec(any::<usize>(), 1..8)) {
        let (_dir, store) = open();
        let events = play(&store, &ops)?;
        prop_assume!(!events.is_empty());
        for pick in picks {
            let target = &events[pick % events.len()];
            let before = current(&store, &target.entity);
            let version = store.get(&target.entity).unwrap().unwrap().version;
            let Ok(undo) = store.undo(&target.id) else { continue };
            prop_assert_eq!(undo.version, version + 1);
            prop_assert_eq!(&undo.metadata["undoOf"], &Value::from(target.id.clone()));
            let redo = store.undo(&undo.id);
            prop_assert!(redo.is_ok(), "redo of {:?} failed: {:?}", undo, redo);
            prop_assert_eq!(current(&store, &target.entity), before, "undo {:?} then redo", target);
        }
    }

    #[test]
    fn batch_undo_then_redo_restores_every_entity(ops in history(), pick in any::<usize>()) {
        let (_dir, store) = open();
        let events = play(&store, &ops)?;
        prop_assume!(!events.is_empty());
        let batch = events[pick % events.len()].batch;
        let before: Vec<_> = ENTITIES.iter().map(|id| store.get(id).unwrap().map(|e| seen(&e))).collect();
        if let Ok(undone) = store.undo_batch(batch) {
            prop_assert!(undone.iter().all(|e| e.batch == undone[0].batch));
            let redo = store.undo_batch(undone[0].batch);
            prop_assert!(redo.is_ok(), "redo of batch {} failed: {:?}", batch, redo);
            let after: Vec<_> = ENTITIES.iter().map(|id| store.get(id).unwrap().map(|e| seen(&e))).collect();
            prop_assert_eq!(after, before);
        }
    }

    #[test]
    fn rollback_reaches_the_state_as_of_its_time(ops in history(), entity in 0..ENTITIES.len(), picks in prop::collection::vec((any::<usize>(), -1i64..=1), 1..5)) {
        let (_dir, store) = open();
        let events = play(&store, &ops)?;
        // The first entity from `entity` on that the history created.
        let existing = (0..ENTITIES.len()).map(|i| ENTITIES[(entity + i) % ENTITIES.len()]).find(|id| store.get(id).unwrap().is_some());
        let Some(id) = existing else { return Ok(()) };
        let mut times = vec![Timestamp::from_micros(0)];
        times.extend(events.iter().map(|e| e.timestamp));
        for (pick, nudge) in picks {
            let t = Timestamp::from_micros(times[pick % times.len()].as_micros() + nudge);
            let version = store.get(id).unwrap().unwrap().version;
            let outcome = store.rollback(id, t).unwrap();
            let now = store.get(id).unwrap().unwrap();
            match store.get_as_of(id, t).unwrap() {
                Some(then) => prop_assert_eq!(seen(&now), seen(&then), "rollback to {}", t),
                None => prop_assert!(now.deleted, "rollback to {} before creation", t),
            }
            let appended = outcome.event().is_some();
            prop_assert_eq!(now.version, version + u64::from(appended));
            if let Some(event) = outcome.event() {
                prop_assert_eq!(&event.metadata["rollbackTo"], &Value::from(t.to_rfc3339()));
            }
        }
    }

    #[test]
    fn can_undo_is_true_exactly_when_undo_succeeds(ops in history(), picks in prop::collection::vec((any::<usize>(), any::<bool>(), any::<bool>()), 1..10)) {
        let (_dir, store) = open();
        store.add_validator("Item", item_rules);
        let events = play(&store, &ops)?;
        prop_assume!(!events.is_empty());
        for (pick, whole_batch, recent) in picks {
            // Half the picks among the last events, which are the likeliest to pass the state
            // checks and reach the validator.
            let index = if recent { events.len() - 1 - pick % events.len().min(3) } else { pick % events.len() };
            let target = &events[index];
            let (check, outcome) = if whole_batch {
                (store.can_undo_batch(target.batch).unwrap(), store.undo_batch(target.batch).map(|_| ()))
            } else {
                (store.can_undo(&target.id).unwrap(), store.undo(&target.id).map(|_| ()))
            };
            prop_assert_eq!(check.can_undo, outcome.is_ok(), "{:?} then {:?} for {:?}", check, outcome, target);
            prop_assert_eq!(check.can_undo, check.reason.is_none());
            match outcome {
                Ok(()) => {}
                Err(Error::CannotUndo { reason }) => prop_assert_eq!(Some(reason), check.reason),
                Err(err @ Error::Rejected { .. }) => prop_assert_eq!(Some(err.to_string()), check.reason),
                Err(err) => prop_assert!(false, "unexpected error {:?}", err),
            }
        }
    }
}
