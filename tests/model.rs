//! Model-based property test: random sequences of operations (creates, merge-patch updates
//! with custom verbs, deletes, restores, atomic batches, idempotent retries, supplied
//! timestamps and expected versions, every read path, undo, batch undo, redo, rollback,
//! checkpoints, reopens and, on simulated storage, power cuts) run against a
//! real store and a naive in-memory model (`tests/support/reference.rs`), compared step by
//! step. A failing case is shrunk to a minimal sequence, printed with its seed, and becomes a
//! named regression test below.
//!
//! 512 cases by default, 5,000 with `STRATA_LONG=1` (`STRATA_MODEL_CASES=N` for any number,
//! `STRATA_SEED=S` to replay a run).

#[path = "support/reference.rs"]
mod reference;

use proptest::prelude::*;
use proptest::test_runner::{Config, RngAlgorithm, TestCaseError, TestError, TestRng, TestRunner};
use reference::{Action, ExpectPick, Harness, IdPick, Op, QuerySpec, TimePick, TsPick, Write};
use serde_json::{Map, Value};
use strata::{Durability, Options};

fn scalar() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<i16>().prop_map(Value::from),
        "[a-z]{0,6}".prop_map(Value::from),
        any::<bool>().prop_map(Value::from),
        Just(Value::Array(vec![Value::from(1), Value::Null])),
    ]
}

fn field_value() -> impl Strategy<Value = Value> {
    prop_oneof![
        4 => scalar(),
        1 => prop::collection::btree_map(prop::sample::select(vec!["x", "y"]), scalar(), 0..3)
            .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Map<_, _>>())),
    ]
}

fn object() -> impl Strategy<Value = Value> {
    prop::collection::btree_map(prop::sample::select(vec!["a", "b", "c", "n"]), field_value(), 0..4)
        .prop_map(|m| Value::Object(m.into_iter().map(|(k, v)| (k.to_string(), v)).collect::<Map<_, _>>()))
}

/// Mostly valid entities, now and then the invalid empty id (index 6).
fn entity() -> impl Strategy<Value = u8> {
    prop_oneof![40 => 0u8..4, 4 => 4u8..6, 1 => Just(6u8)]
}

/// A plain create of one of the first entities: cases start with a few, so that most later
/// operations find something to work on.
fn create(entity: u8) -> impl Strategy<Value = Op> {
    (0u8..2, object(), prop::option::weighted(0.4, 0u8..3)).prop_map(move |(kind, data, actor)| {
        Op::Append(Write {
            entity,
            action: Action::Create { kind, data },
            actor,
            id: None,
            ts: TsPick::Auto,
            expect: ExpectPick::No,
            metadata: None,
        })
    })
}

fn write() -> impl Strategy<Value = Write> {
    let action = prop_oneof![
        2 => (0u8..2, object()).prop_map(|(kind, data)| Action::Create { kind, data }),
        8 => (object(), prop::option::weighted(0.4, 0u8..4)).prop_map(|(patch, verb)| Action::Update { patch, verb }),
        1 => Just(Action::Delete),
        1 => Just(Action::Restore),
    ];
    let id = prop::option::weighted(0.12, prop_oneof![6 => (0u8..4).prop_map(IdPick::Caller), 1 => (0u8..8).prop_map(IdPick::Generated)]);
    let ts = prop_oneof![26 => Just(TsPick::Auto), 1 => (0u8..3).prop_map(TsPick::Stale), 3 => (0u8..4).prop_map(TsPick::Future)];
    let expect = prop_oneof![12 => Just(ExpectPick::No), 7 => Just(ExpectPick::Current), 1 => (1u8..3).prop_map(ExpectPick::Off)];
    let metadata = prop_oneof![20 => Just(None), 6 => Just(Some(true)), 1 => Just(Some(false))];
    (entity(), action, prop::option::weighted(0.4, 0u8..3), id, ts, expect, metadata)
        .prop_map(|(entity, action, actor, id, ts, expect, metadata)| Write { entity, action, actor, id, ts, expect, metadata })
}

fn time_pick() -> impl Strategy<Value = TimePick> {
    prop_oneof![1 => Just(TimePick::Min), 6 => (any::<u16>(), -1i8..=1).prop_map(|(k, d)| TimePick::AtEvent(k, d)), 1 => Just(TimePick::Max)]
}

fn query() -> impl Strategy<Value = QuerySpec> {
    (
        prop::option::weighted(0.3, entity()),
        prop::option::weighted(0.5, 0u8..9),
        prop::option::weighted(0.2, 0u8..3),
        prop::option::weighted(0.3, time_pick()),
        prop::option::weighted(0.3, time_pick()),
        prop_oneof![3 => Just(0u16), 1 => any::<u16>()],
        prop::option::weighted(0.4, 0u8..5),
    )
        .prop_map(|(entity, pattern, actor, after, before, after_seq, limit)| QuerySpec {
            entity,
            pattern,
            actor,
            after,
            before,
            after_seq,
            limit,
        })
}

/// An event to undo by its position in the log; now and then an id that does not exist.
fn undo_target() -> impl Strategy<Value = u16> {
    prop_oneof![15 => 0u16..u16::MAX, 1 => Just(u16::MAX)]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => write().prop_map(Op::Append),
        4 => prop::collection::vec(write(), 1..4).prop_map(Op::Batch),
        3 => entity().prop_map(Op::Get),
        3 => (entity(), time_pick()).prop_map(|(e, t)| Op::GetAsOf(e, t)),
        2 => (entity(), any::<u8>()).prop_map(|(e, v)| Op::GetVersion(e, v)),
        2 => entity().prop_map(Op::History),
        1 => prop_oneof![(0u8..4).prop_map(IdPick::Caller), (0u8..40).prop_map(IdPick::Generated)].prop_map(Op::EventById),
        4 => query().prop_map(Op::Events),
        3 => (undo_target(), prop::option::weighted(0.3, 0u8..3)).prop_map(|(k, a)| Op::Undo(k, a)),
        1 => undo_target().prop_map(Op::CanUndo),
        2 => (any::<u16>(), prop::option::weighted(0.3, 0u8..3)).prop_map(|(k, a)| Op::UndoBatch(k, a)),
        2 => (entity(), time_pick(), prop::option::weighted(0.3, 0u8..3)).prop_map(|(e, t, a)| Op::Rollback(e, t, a)),
        1 => Just(Op::Checkpoint),
        1 => Just(Op::Reopen),
        1 => Just(Op::Crash),
    ]
}

/// Store options vary per case: tiny segments roll every few events, and small snapshot
/// intervals exercise the snapshot read path.
fn options() -> impl Strategy<Value = Options> {
    (prop::sample::select(vec![300u64, 1 << 10, 4 << 10, 64 << 20]), prop::sample::select(vec![1u64, 2, 3, 16]), any::<bool>()).prop_map(
        |(segment_size_bytes, snapshot_every_versions, train_dictionary)| Options {
            durability: Durability::Always,
            segment_size_bytes,
            snapshot_every_versions,
            train_dictionary,
            checkpoint_every_events: 20,
            ..Options::default()
        },
    )
}

/// Runs `ops` step by step; the error names the failing step.
/// Runs `ops` on real files, or on simulated storage (where `Op::Crash` cuts the power) when
/// `simulated` holds its seed.
fn run_case(options: Options, simulated: Option<u64>, ops: &[Op]) -> Result<(), String> {
    let mut h = match simulated {
        Some(seed) => Harness::new_simulated(options, seed),
        None => Harness::new(options),
    };
    let result = ops.iter().enumerate().try_for_each(|(i, op)| h.run(op).map_err(|e| format!("step {i} ({op:?}): {e}")));
    let mut totals = OUTCOMES.lock().unwrap();
    for (k, n) in &h.outcomes {
        *totals.entry(k.clone()).or_default() += n;
    }
    drop(totals);
    result?;
    h.check_all().map_err(|e| format!("after the last step: {e}"))
}

/// Outcome counts over every case run (shrinking included), for the summary.
static OUTCOMES: std::sync::Mutex<std::collections::BTreeMap<String, u64>> = std::sync::Mutex::new(std::collections::BTreeMap::new());

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| v.parse().unwrap_or_else(|_| panic!("{name} must be a number")))
}

#[test]
fn store_matches_the_model_step_by_step() {
    let long = std::env::var("STRATA_LONG").is_ok_and(|v| v == "1");
    let cases = env_u64("STRATA_MODEL_CASES").unwrap_or(if long { 5000 } else { 512 }) as u32;
    let seed = env_u64("STRATA_SEED")
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64);
    println!("model: seed {seed} (replay with STRATA_SEED={seed}), {cases} cases");
    let mut seed_bytes = [0u8; 32];
    seed_bytes[..8].copy_from_slice(&seed.to_le_bytes());
    let config = Config { cases, failure_persistence: None, max_shrink_iters: 4096, ..Config::default() };
    let mut runner = TestRunner::new_with_rng(config, TestRng::from_seed(RngAlgorithm::ChaCha, &seed_bytes));
    let started = std::time::Instant::now();
    let creates = [0u8, 1, 2, 3].map(|e| prop::option::weighted(0.85, create(e)));
    let ops = (creates, prop::collection::vec(op(), 1..48))
        .prop_map(|(creates, ops)| creates.into_iter().flatten().chain(ops).collect::<Vec<_>>());
    let strategy = (options(), prop::option::of(any::<u64>()), ops);
    let result = runner.run(&strategy, |(options, simulated, ops)| run_case(options, simulated, &ops).map_err(TestCaseError::fail));
    match result {
        Ok(()) => {
            println!("model: {cases} cases passed in {:.1} s; operations run:", started.elapsed().as_secs_f64());
            for (k, n) in OUTCOMES.lock().unwrap().iter() {
                println!("  {k}: {n}");
            }
        }
        Err(TestError::Fail(reason, (options, simulated, ops))) => {
            panic!(
                "seed {seed}: minimal failing case\noptions: {options:?}\nsimulated storage seed: {simulated:?}\nops: {ops:#?}\n{reason}"
            )
        }
        Err(e) => panic!("seed {seed}: {e}"),
    }
}

// ---------------------------------------------------------------------------------------
// Named cases: failing cases found by the model test (kept by name), and edge cases written
// by hand.

fn small_segments() -> Options {
    Options { segment_size_bytes: 300, snapshot_every_versions: 2, ..Options::default() }
}

fn plain_write(entity: u8, action: Action) -> Write {
    Write { entity, action, actor: None, id: None, ts: TsPick::Auto, expect: ExpectPick::No, metadata: None }
}

/// Expected versions inside a batch count the batch's own earlier events.
#[test]
fn batch_with_expected_versions_after_create_in_same_batch() {
    let create = Action::Create { kind: 0, data: serde_json::json!({"a": 1}) };
    let update = Action::Update { patch: serde_json::json!({"a": null, "b": {"x": 2}}), verb: Some(0) };
    let ops = vec![
        Op::Batch(vec![
            plain_write(0, create),
            Write { expect: ExpectPick::Current, ..plain_write(0, update.clone()) },
            plain_write(0, Action::Delete),
        ]),
        Op::Append(Write { expect: ExpectPick::Current, ..plain_write(0, update) }),
        Op::Reopen,
        Op::GetAsOf(0, TimePick::AtEvent(0, 0)),
    ];
    run_case(small_segments(), None, &ops).unwrap();
}

/// Found by the model test: seq 1 carries the caller id `req-0`; appending with the id the
/// store would have generated for seq 1 returned event `req-0` as an "idempotent retry"
/// (and `event()` of that id returned it too), though no event has that id.
#[test]
fn generated_form_id_of_an_event_with_a_caller_id_is_not_stored() {
    let create = || Action::Create { kind: 0, data: serde_json::json!({}) };
    let ops = vec![
        Op::Append(Write { id: Some(IdPick::Caller(0)), ..plain_write(0, create()) }),
        Op::EventById(IdPick::Generated(0)),
        Op::Append(Write { id: Some(IdPick::Generated(0)), ..plain_write(0, create()) }),
    ];
    run_case(small_segments(), None, &ops).unwrap();
}
