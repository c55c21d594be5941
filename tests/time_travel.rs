//! Time travel: `get_as_of`, `get_version`, `find(..as_of)` and `state_at` agree with a
//! naive fold of the log, across reopen, checkpoints, snapshots and segment rolls.

use std::collections::BTreeMap;

use proptest::prelude::*;
use serde_json::{Map, Value, json};
use strata::{Durability, Entity, NewEvent, Options, Query, Store, Timestamp};

const IDS: [&str; 6] = ["c0", "c1", "c2", "d0", "d1", "d2"];
const STAGES: [&str; 3] = ["Lead", "Qualified", "Won"];

fn options() -> Options {
    Options {
        durability: Durability::Never,
        segment_size_bytes: 1500,
        snapshot_every_versions: 3,
        checkpoint_every_events: 0,
        checkpoint_every_bytes: 0,
        ..Options::default()
    }
}

/// One step of a random history.
#[derive(Debug, Clone)]
enum Step {
    /// Events on up to three entities, committed as one batch at `gap` after the last one.
    Batch {
        ops: Vec<(usize, u8, u8, u8)>,
        gap: i64,
    },
    Checkpoint,
    Reopen,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        8 => (prop::collection::vec((0..IDS.len(), 0u8..5, 0u8..3, 0u8..4), 1..=3), 1i64..2_000).prop_map(|(ops, gap)| Step::Batch { ops, gap }),
        1 => Just(Step::Checkpoint),
        1 => Just(Step::Reopen),
    ]
}

/// The naive model: every committed event, per entity, with its timestamp.
#[derive(Default)]
struct Model {
    events: BTreeMap<String, Vec<(i64, String, Value)>>,
}

impl Model {
    fn fold(&self, id: &str, ts: i64) -> Option<(u64, bool, Map<String, Value>, String)> {
        let mut out: Option<(u64, bool, Map<String, Value>, String)> = None;
        for (t, ty, data) in self.events.get(id)?.iter().filter(|(t, ..)| *t <= ts) {
            let _ = t;
            let (kind, verb) = ty.split_once('.').unwrap();
            let d = data.as_object().unwrap();
            match (&mut out, verb) {
                (None, _) => out = Some((1, false, d.clone(), kind.to_string())),
                (Some(e), v) => {
                    e.0 += 1;
                    strata::merge_patch(&mut e.2, d);
                    match v {
                        "Deleted" => e.1 = true,
                        "Restored" => e.1 = false,
                        _ => {}
                    }
                }
            }
        }
        out
    }

    fn exists(&self, id: &str) -> Option<bool> {
        self.fold(id, i64::MAX).map(|e| e.1)
    }
}

/// Turns a random op into a valid event for the model's current state, or `None`.
fn make_event(
    model: &Model,
    pending: &BTreeMap<String, Option<bool>>,
    (i, action, stage, n): (usize, u8, u8, u8),
) -> Option<(NewEvent, String, Value)> {
    let id = IDS[i];
    let kind = if id.starts_with('c') { "Contact" } else { "Deal" };
    let deleted = match pending.get(id) {
        Some(state) => *state,
        None => model.exists(id),
    };
    let stage = STAGES[stage as usize];
    match (deleted, action) {
        (None, _) => {
            let data = json!({"stage": stage, "n": n, "nested": {"a": n, "b": "x"}});
            Some((NewEvent::create(kind, id, data.clone()), format!("{kind}.Created"), data))
        }
        (Some(false), 3) => Some((NewEvent::delete(id), format!("{kind}.Deleted"), json!({}))),
        (Some(true), 3 | 4) => Some((NewEvent::restore(id), format!("{kind}.Restored"), json!({}))),
        (Some(_), 0) => {
            let data = json!({"stage": stage});
            Some((NewEvent::update(id, data.clone()).verb("Qualified"), format!("{kind}.Qualified"), data))
        }
        (Some(_), 1) => {
            let data = json!({"n": n, "nested": {"b": null, "c": n}});
            Some((NewEvent::update(id, data.clone()), format!("{kind}.Updated"), data))
        }
        (Some(_), _) => {
            let data = if n % 2 == 0 { json!({"extra": n}) } else { json!({"extra": null, "n": null}) };
            Some((NewEvent::update(id, data.clone()), format!("{kind}.Updated"), data))
        }
    }
}

fn check_entity(model: &Model, got: Option<Entity>, id: &str, ts: i64) -> Result<(), TestCaseError> {
    let want = model.fold(id, ts);
    match (got, want) {
        (None, None) => Ok(()),
        (Some(e), Some((version, deleted, state, kind))) => {
            prop_assert_eq!(e.version, version, "version of {} at {}", id, ts);
            prop_assert_eq!(e.deleted, deleted, "deleted flag of {} at {}", id, ts);
            prop_assert_eq!(&e.kind, &kind);
            prop_assert_eq!(&*e.state, &state, "state of {} at {}", id, ts);
            Ok(())
        }
        (got, want) => Err(TestCaseError::fail(format!("{id} at {ts}: store has {got:?}, model has {want:?}"))),
    }
}

fn check_all(store: &Store, model: &Model, times: &[i64]) -> Result<(), TestCaseError> {
    for &t in times {
        for probe in [t - 1, t, t + 1] {
            for id in IDS {
                check_entity(model, store.get_as_of(id, Timestamp::from_micros(probe)).unwrap(), id, probe)?;
            }
            for kind in ["Contact", "Deal"] {
                for stage in STAGES {
                    for include_deleted in [false, true] {
                        let mut q = Query::kind(kind).eq("stage", stage).as_of(Timestamp::from_micros(probe));
                        if include_deleted {
                            q = q.include_deleted();
                        }
                        let got: Vec<String> = store.find(&q).unwrap().into_iter().map(|e| e.id).collect();
                        let want: Vec<String> = IDS
                            .iter()
                            .filter(|id| {
                                model.fold(id, probe).is_some_and(|(_, deleted, state, k)| {
                                    k == kind && state.get("stage") == Some(&json!(stage)) && (include_deleted || !deleted)
                                })
                            })
                            .map(|s| s.to_string())
                            .collect();
                        prop_assert_eq!(got, want, "find {} stage={} at {} (deleted: {})", kind, stage, probe, include_deleted);
                    }
                }
            }
            let at: Vec<String> = store.state_at(Timestamp::from_micros(probe)).unwrap().map(|e| e.unwrap().id).collect();
            let want: Vec<String> = IDS.iter().filter(|id| model.fold(id, probe).is_some()).map(|s| s.to_string()).collect();
            prop_assert_eq!(at, want, "state_at {}", probe);
        }
    }
    for id in IDS {
        let Some(events) = model.events.get(id) else { continue };
        for v in 1..=events.len() {
            let ts = events[v - 1].0;
            // The version as of its own timestamp may include later events of the same batch.
            let got = store.get_version(id, v as u64).unwrap().unwrap();
            prop_assert_eq!(got.version, v as u64);
            let same_ts_later = events[v..].iter().any(|e| e.0 == ts);
            if !same_ts_later {
                check_entity(model, Some(got), id, ts)?;
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn as_of_reads_equal_a_naive_fold(steps in prop::collection::vec(step(), 1..40)) {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path(), options()).unwrap();
        let mut model = Model::default();
        let mut now = 1_700_000_000_000_000i64;
        let mut times = vec![now];
        for s in steps {
            match s {
                Step::Batch { ops, gap } => {
                    now += gap;
                    let mut pending: BTreeMap<String, Option<bool>> = BTreeMap::new();
                    let mut batch = Vec::new();
                    let mut modeled = Vec::new();
                    for op in ops {
                        if let Some((ev, ty, data)) = make_event(&model, &pending, op) {
                            let id = ev.entity().to_string();
                            let verb = ty.split_once('.').unwrap().1.to_string();
                            let was = pending.get(&id).copied().unwrap_or_else(|| model.exists(&id));
                            pending.insert(id.clone(), Some(match verb.as_str() { "Deleted" => true, "Restored" | "Created" => false, _ => was.unwrap_or(false) }));
                            batch.push(ev.timestamp(Timestamp::from_micros(now)));
                            modeled.push((id, ty, data));
                        }
                    }
                    if batch.is_empty() {
                        continue;
                    }
                    let events = store.append_batch(batch).unwrap();
                    prop_assert!(events.iter().all(|e| e.timestamp.as_micros() == now && e.batch == events[0].batch));
                    for (id, ty, data) in modeled {
                        model.events.entry(id).or_default().push((now, ty, data));
                    }
                    times.push(now);
                }
                Step::Checkpoint => {
                    store.checkpoint().unwrap();
                }
                Step::Reopen => {
                    drop(store);
                    store = Store::open(dir.path(), options()).unwrap();
                }
            }
        }
        check_all(&store, &model, &times)?;
        drop(store);
        let store = Store::open(dir.path(), options()).unwrap();
        check_all(&store, &model, &times)?;
    }
}

#[test]
fn as_of_before_creation_is_none_and_deleted_entities_come_back_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let created = store.append(NewEvent::create("Contact", "contact_1", json!({"name": "Alice", "stage": "Lead"}))).unwrap();
    let qualified = store.append(NewEvent::update("contact_1", json!({"stage": "Qualified"})).verb("Qualified")).unwrap();
    let deleted = store.append(NewEvent::delete("contact_1")).unwrap();
    let before = Timestamp::from_micros(created.timestamp.as_micros() - 1);
    assert_eq!(store.get_as_of("contact_1", before).unwrap(), None);
    assert_eq!(store.get_as_of("contact_1", created.timestamp).unwrap().unwrap().state["stage"], "Lead");
    assert_eq!(store.get_as_of("contact_1", qualified.timestamp).unwrap().unwrap().state["stage"], "Qualified");
    let gone = store.get_as_of("contact_1", deleted.timestamp).unwrap().unwrap();
    assert!(gone.deleted);
    assert_eq!(gone.version, 3);
    assert_eq!(gone.state["name"], "Alice");
    // RFC 3339 strings work too.
    assert_eq!(store.get_as_of("contact_1", "2000-01-01T00:00:00Z").unwrap(), None);
    assert!(store.get_as_of("contact_1", "not a time").is_err());
    // find skips deleted entities unless asked.
    assert!(store.find(&Query::kind("Contact")).unwrap().is_empty());
    assert_eq!(store.find(&Query::kind("Contact").include_deleted()).unwrap().len(), 1);
    assert_eq!(store.find(&Query::kind("Contact").eq("stage", "Lead").as_of(created.timestamp)).unwrap().len(), 1);
}

#[test]
fn deep_history_reads_every_version_after_reopen_and_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { snapshot_every_versions: 16, durability: Durability::Never, ..Options::default() };
    let mut stamps = Vec::new();
    {
        let store = Store::open(dir.path(), opts.clone()).unwrap();
        stamps.push(store.append(NewEvent::create("Account", "acc", json!({"balance": 0}))).unwrap().timestamp);
        for i in 1..=500 {
            stamps.push(store.append(NewEvent::update("acc", json!({"balance": i}))).unwrap().timestamp);
        }
        store.checkpoint().unwrap();
        for i in 501..=600 {
            stamps.push(store.append(NewEvent::update("acc", json!({"balance": i}))).unwrap().timestamp);
        }
    }
    let store = Store::open(dir.path(), opts).unwrap();
    for (i, ts) in stamps.iter().enumerate() {
        let e = store.get_as_of("acc", *ts).unwrap().unwrap();
        assert_eq!((e.version, e.state["balance"].as_u64()), (i as u64 + 1, Some(i as u64)));
    }
    assert_eq!(store.get("acc").unwrap().unwrap().state["balance"], 600);
}

#[test]
fn malformed_queries_are_typed_errors() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    for q in [Query::all().eq("", 1), Query::all().gt("a..b", 1), Query::all().lt("n", json!([1])), Query::kind("1bad")] {
        assert!(matches!(store.find(&q), Err(strata::Error::InvalidInput { what: "query", .. })), "{q:?}");
    }
}
