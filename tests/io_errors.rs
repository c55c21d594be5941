//! I/O errors: for every k, the k-th write (append), fsync, rename, read, directory fsync,
//! file creation and truncation of a workload fails, once and then persistently (the
//! in-memory `FaultStorage`; a failed write may have written part of its data). What is
//! asserted:
//!
//! - the failing call returns an error, never a panic (an append's is `Error::Io`);
//! - a failed append (its write, its fsync, or the segment roll it triggered) poisons the
//!   writer: the next append returns `Error::Poisoned`;
//! - a failure while writing a trained dictionary fails nothing: the append whose commit
//!   trained it is acknowledged (it is durable), the writer is not poisoned, later appends
//!   work, and no frame is compressed with the dictionary;
//! - after the failure the store is dropped, the fault cleared and the store reopened, both
//!   as is and after a simulated power loss: every acknowledged batch is there, identical,
//!   and the batch whose append failed (its outcome is unknown to the caller) is there whole
//!   or not at all; then appends continue. A power loss after those appends (to the store
//!   reopened as is, which holds what the failed run left in the page cache) loses none of
//!   them either: open makes the log durable before its writer appends.
//!
//! The workloads open a store with a torn tail (so the open truncates it), roll 2 KiB
//! segments, write a checkpoint, reopen, and (second workload) train a dictionary.

mod faults;
mod layout;

use std::sync::Arc;
use std::time::Instant;

use faults::{assert_appends_continue, workload};
use serde_json::json;
use strata::{Error, Event, EventQuery, FaultMode, FaultOp, FaultStorage, NewEvent, Options, Store};

const DIR: &str = "/db";

#[derive(Clone)]
enum Step {
    Append(Vec<NewEvent>),
    Checkpoint,
    Reopen,
}

fn open(storage: &FaultStorage, options: &Options) -> strata::Result<Store> {
    Store::open_with_storage(DIR, options.clone(), Arc::new(storage.clone()))
}

/// What one run under a fault acknowledged, and the batch whose outcome is unknown.
#[derive(Default)]
struct Run {
    acked: Vec<Vec<Event>>,
    unknown: Option<Vec<NewEvent>>,
    /// The first error, as text.
    failure: Option<String>,
    /// The step whose call failed first (`None`: none, or the open before the first step).
    failed_step: Option<usize>,
}

/// Runs `steps` until the first error; checks the poisoning rule there.
fn run_steps(storage: &FaultStorage, options: &Options, steps: &[Step]) -> Result<Run, String> {
    let mut run = Run::default();
    let mut store = match open(storage, options) {
        Ok(s) => s,
        Err(e) => {
            run.failure = Some(format!("open: {e}"));
            return Ok(run);
        }
    };
    for (i, step) in steps.iter().enumerate() {
        match step {
            Step::Append(batch) => match store.append_batch(batch.clone()) {
                Ok(events) => run.acked.push(events),
                Err(e) => {
                    if !matches!(e, Error::Io { .. }) {
                        return Err(format!("step {i}: a failed append returned {e:?}, not Error::Io"));
                    }
                    run.failure = Some(format!("step {i} append: {e}"));
                    run.failed_step = Some(i);
                    run.unknown = Some(batch.clone());
                    let probe = store.append(NewEvent::create("Probe", "poison-probe", json!({})));
                    if !matches!(probe, Err(Error::Poisoned { .. })) {
                        return Err(format!("step {i}: after a failed append ({e}) the next append gave {probe:?}, not Poisoned"));
                    }
                    return Ok(run);
                }
            },
            Step::Checkpoint => {
                if let Err(e) = store.checkpoint() {
                    run.failure = Some(format!("step {i} checkpoint: {e}"));
                    run.failed_step = Some(i);
                    // A checkpoint is a cache: its failure leaves the log writable, unless
                    // the log's own fsync failed (then the writer is poisoned).
                    let probe = NewEvent::create("Probe", "after-checkpoint", json!({}));
                    match store.append(probe.clone()) {
                        Ok(ev) => run.acked.push(vec![ev]),
                        Err(Error::Poisoned { .. }) => {}
                        // A persistent fault fails the log's own write or fsync too.
                        Err(Error::Io { .. }) => run.unknown = Some(vec![probe]),
                        Err(other) => return Err(format!("step {i}: after a failed checkpoint ({e}) an append gave {other}")),
                    }
                    return Ok(run);
                }
            }
            Step::Reopen => {
                drop(store);
                store = match open(storage, options) {
                    Ok(s) => s,
                    Err(e) => {
                        run.failure = Some(format!("step {i} reopen: {e}"));
                        run.failed_step = Some(i);
                        return Ok(run);
                    }
                };
            }
        }
    }
    Ok(run)
}

/// Checks a store reopened after a run: the acknowledged batches, then at most the unknown
/// batch, whole.
fn check_reopened(store: &Store, run: &Run, context: &str) -> Result<(), String> {
    let got = store.events(&EventQuery::new()).map_err(|e| format!("{context}: reading the log: {e}"))?;
    let acked: Vec<Event> = run.acked.iter().flatten().cloned().collect();
    if got.len() < acked.len() || got[..acked.len()] != acked[..] {
        return Err(format!("{context}: {} acknowledged events, the store holds {}; they differ", acked.len(), got.len()));
    }
    let extra = &got[acked.len()..];
    if !extra.is_empty() {
        let whole = run.unknown.as_ref().is_some_and(|b| {
            b.len() == extra.len() && b.iter().zip(extra).all(|(ne, ev)| ne.entity() == ev.entity && extra[0].batch == ev.batch)
        });
        if !whole {
            return Err(format!("{context}: {} events beyond the acknowledged ones are not the failed batch, whole", extra.len()));
        }
    }
    Ok(())
}

/// Where the dictionary workload trains, in a run with no fault: the step whose append
/// trains, and each operation of the dictionary's write as [`FaultStorage::fail`] counts it
/// (from the open on, as [`enumerate`] does).
struct DictionaryWrite {
    step: usize,
    ops: Vec<(FaultOp, u64)>,
}

impl DictionaryWrite {
    fn find(base: &FaultStorage, options: &Options, steps: &[Step]) -> DictionaryWrite {
        let s = base.fork();
        s.reset_counts();
        let store = open(&s, options).unwrap();
        for (i, step) in steps.iter().enumerate() {
            let Step::Append(batch) = step else { panic!("the dictionary workload only appends") };
            let before = FaultOp::ALL.map(|op| s.count(op));
            store.append_batch(batch.clone()).unwrap();
            if !s.paths().iter().any(|p| p.extension().is_some_and(|x| x == "zdict")) {
                continue;
            }
            let counts = |op: FaultOp| {
                let at = FaultOp::ALL.iter().position(|o| *o == op).unwrap();
                (before[at], s.count(op) - before[at])
            };
            // The training append writes and syncs its frame, then writes the dictionary:
            // (kind, operations in the step, which of them is the dictionary's; 0: none).
            let expected: [(FaultOp, u64, u64); 6] = [
                (FaultOp::WriteAt, 1, 0),
                (FaultOp::SyncData, 2, 2),
                (FaultOp::Create, 1, 1),
                (FaultOp::Append, 1, 1),
                (FaultOp::Rename, 1, 1),
                (FaultOp::SyncDir, 1, 1),
            ];
            let mut ops = Vec::new();
            for (op, n, dictionary_nth) in expected {
                let (before, done) = counts(op);
                assert_eq!(done, n, "the training append did {done} {op:?}, the test expects {n}");
                if dictionary_nth > 0 {
                    ops.push((op, before + dictionary_nth));
                }
            }
            return DictionaryWrite { step: i, ops };
        }
        panic!("the workload must train a dictionary");
    }
}

/// A fault in the dictionary's write: it must fail nothing. The training append is
/// acknowledged; a fault that fires once leaves every later append working (the writer is
/// not poisoned); and no frame names a dictionary, since none was written.
fn check_dictionary_fault(storage: &FaultStorage, run: &Run, dictionary: &DictionaryWrite, mode: FaultMode) -> Result<(), String> {
    if run.failed_step.is_some_and(|i| i <= dictionary.step) {
        return Err(format!("the training append (step {}) or one before it failed: {:?}", dictionary.step, run.failure));
    }
    if mode == FaultMode::Once && run.failure.is_some() {
        return Err(format!("a fault in the dictionary's write failed a later call: {:?}", run.failure));
    }
    let segments = storage.paths().into_iter().filter(|p| p.extension().is_some_and(|x| x == "seg"));
    let dict_ids: Vec<u32> = segments.flat_map(|p| layout::frames_in(&storage.file_bytes(&p).unwrap())).map(|f| f.dict_id).collect();
    if dict_ids.iter().any(|&id| id != 0) {
        return Err("a frame names a dictionary whose write failed".into());
    }
    Ok(())
}

/// The store reopened as is goes on appending; a power loss then loses nothing it holds:
/// open made durable every file its writer relies on (a dictionary whose directory fsync
/// failed, say). The records are big enough to be compressed, with the dictionary if the
/// writer has one.
fn survives_a_later_power_loss(storage: &FaultStorage, store: &Store, options: &Options, context: &str) -> Result<(), String> {
    for i in 0..3 {
        let note = format!("a follow-up call about the renewal, number {i}; ").repeat(8);
        let event = NewEvent::create("After", format!("after-reopen-{i}"), json!({"note": note}));
        store.append(event).map_err(|e| format!("{context}: append after reopen: {e}"))?;
    }
    let held = store.events(&EventQuery::new()).map_err(|e| format!("{context}: reading the log: {e}"))?;
    let crashed = storage.fork();
    crashed.crash();
    let store = open(&crashed, options).map_err(|e| format!("{context}, then a power loss: open failed: {e}"))?;
    let got = store.events(&EventQuery::new()).map_err(|e| format!("{context}, then a power loss: reading the log: {e}"))?;
    if got != held {
        return Err(format!("{context}, then a power loss: the store held {} events, {} are left", held.len(), got.len()));
    }
    Ok(())
}

/// One fault: run, then reopen with the fault cleared, as is and after a power loss.
/// Returns whether the fault took effect (failed a call, or kept a dictionary out of use).
#[allow(clippy::too_many_arguments)]
fn check_fault(
    base: &FaultStorage,
    stored: &[Vec<Event>],
    options: &Options,
    steps: &[Step],
    dictionary: Option<&DictionaryWrite>,
    op: FaultOp,
    k: u64,
    mode: FaultMode,
) -> Result<bool, String> {
    let context = format!("{op:?} #{k} failing {mode:?}");
    let storage = base.fork();
    storage.reset_counts();
    storage.fail(op, k, mode);
    let mut run = run_steps(&storage, options, steps).map_err(|e| format!("{context}: {e}"))?;
    let in_dictionary = dictionary.filter(|d| d.ops.contains(&(op, k)));
    if let Some(d) = in_dictionary {
        check_dictionary_fault(&storage, &run, d, mode).map_err(|e| format!("{context} (the dictionary's write): {e}"))?;
    }
    // What the base store held was acknowledged before the workload began.
    run.acked.splice(0..0, stored.iter().cloned());
    if mode == FaultMode::Persistent {
        // With the fault still there an open may fail, but only with an error.
        drop(open(&storage, options));
    }
    storage.clear_faults();
    let crashed = storage.fork();
    crashed.crash();
    for (how, s) in [("reopened", &storage), ("reopened after a power loss", &crashed)] {
        let context = format!("{context}, {how} (first failure: {:?})", run.failure);
        let store = open(s, options).map_err(|e| format!("{context}: open failed: {e}"))?;
        check_reopened(&store, &run, &context)?;
        assert_appends_continue(&store, &context);
        // Reopened as is, the store holds what the failed run left in the page cache
        // (a sealed segment whose fsync failed, a new segment whose directory fsync failed,
        // a dictionary): open must make it durable before its writer acknowledges more.
        if how == "reopened" {
            survives_a_later_power_loss(s, &store, options, &context)?;
        }
    }
    Ok(run.failure.is_some() || in_dictionary.is_some())
}

/// Runs the workload once to count its operations, then fails each k-th operation of each
/// kind, once and persistently. Only operations after `skip` (counts at that point) are
/// enumerated when given.
#[allow(clippy::too_many_arguments)]
fn enumerate(
    name: &str,
    base: &FaultStorage,
    stored: &[Vec<Event>],
    options: &Options,
    steps: &[Step],
    kinds: &[FaultOp],
    window: Option<&[Step]>,
    dictionary: Option<&DictionaryWrite>,
) -> usize {
    let started = Instant::now();
    let count_after = |steps: &[Step]| {
        let s = base.fork();
        s.reset_counts();
        let run = run_steps(&s, options, steps).unwrap();
        assert!(run.failure.is_none(), "{name}: the workload fails with no fault: {:?}", run.failure);
        kinds.iter().map(|op| s.count(*op)).collect::<Vec<u64>>()
    };
    let totals = count_after(steps);
    let firsts = window.map_or_else(|| vec![0; kinds.len()], count_after);
    let mut cases = 0;
    let mut fired = 0;
    let mut failures = Vec::new();
    for ((op, total), first) in kinds.iter().zip(&totals).zip(&firsts) {
        assert!(*total > *first, "{name}: the workload does no {op:?} in its window");
        for k in first + 1..=*total {
            for mode in [FaultMode::Once, FaultMode::Persistent] {
                cases += 1;
                match check_fault(base, stored, options, steps, dictionary, *op, k, mode) {
                    Ok(true) => fired += 1,
                    Ok(false) => {}
                    Err(e) => failures.push(e),
                }
            }
        }
    }
    let per_kind: Vec<String> = kinds.iter().zip(&totals).zip(&firsts).map(|((op, t), f)| format!("{op:?} {}", t - f)).collect();
    println!("{name}: {cases} faults ({fired} took effect), operations per kind: {}, {:?}", per_kind.join(", "), started.elapsed());
    assert!(failures.is_empty(), "{name}: {} cases went wrong:\n{}", failures.len(), failures[..failures.len().min(15)].join("\n"));
    assert!(fired * 10 >= cases * 9, "{name}: only {fired} of {cases} injected faults took effect");
    cases
}

/// A store of a few batches whose active segment ends in a torn frame, so that the first
/// open of a workload repairs it (a truncation, an fsync and a directory fsync).
fn torn_base(seed: u64, options: &Options) -> (FaultStorage, Vec<Vec<Event>>) {
    let storage = FaultStorage::new(seed);
    let store = open(&storage, options).unwrap();
    let mut stored = Vec::new();
    for batch in workload(seed, 5, 60, 30) {
        stored.push(store.append_batch(batch).unwrap());
    }
    drop(store);
    let segment = storage.paths().into_iter().filter(|p| p.extension().is_some_and(|x| x == "seg")).max().unwrap();
    let mut bytes = storage.file_bytes(&segment).unwrap();
    bytes.extend_from_slice(&[0x5a; 40]);
    storage.set_file_bytes(&segment, bytes).unwrap();
    (storage, stored)
}

/// Later batches of the same seeded workload, renamed so they apply after the base's.
fn later(seed: u64, steps: usize) -> Vec<Vec<NewEvent>> {
    workload(seed ^ 0xabc, steps, 60, 30)
        .into_iter()
        .map(|b| {
            b.into_iter()
                .enumerate()
                .map(|(i, e)| {
                    // Give every event its own fresh entity so that the batches apply to any base.
                    let n = rand_like(e.entity(), i);
                    NewEvent::create("Later", format!("later-{n}"), json!({"n": n, "note": "io error workload"}))
                })
                .collect()
        })
        .collect()
}

fn rand_like(entity: &str, i: usize) -> String {
    static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    format!("{entity}-{i}-{}", NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
}

const ALL_KINDS: [FaultOp; 9] = [
    FaultOp::Append,
    FaultOp::WriteAt,
    FaultOp::Allocate,
    FaultOp::SyncData,
    FaultOp::Rename,
    FaultOp::Read,
    FaultOp::SyncDir,
    FaultOp::Create,
    FaultOp::SetLen,
];

/// The roll + checkpoint + reopen workload: `batches` batches after a torn base, with a
/// checkpoint and a clean reopen every 15 batches.
fn roll_workload(name: &str, seed: u64, options: Options, batches: usize, kinds: &[FaultOp]) -> usize {
    let (base, stored) = torn_base(seed, &options);
    let mut steps: Vec<Step> = Vec::new();
    for (i, b) in later(seed, batches).into_iter().enumerate() {
        match i % 15 {
            7 => steps.push(Step::Checkpoint),
            12 => steps.push(Step::Reopen),
            _ => {}
        }
        steps.push(Step::Append(b));
    }
    enumerate(name, &base, &stored, &options, &steps, kinds, None, None)
}

fn quiet(segment_size_bytes: u64) -> Options {
    Options { segment_size_bytes, train_dictionary: false, checkpoint_every_events: 0, checkpoint_every_bytes: 0, ..Options::default() }
}

#[test]
fn io_errors_in_roll_checkpoint_and_reopen_lose_nothing_acknowledged() {
    let seed = faults::seed("io_errors_in_roll_checkpoint_and_reopen_lose_nothing_acknowledged", 0x10e1);
    let cases = roll_workload("roll+checkpoint+reopen", seed, quiet(2048), if faults::long() { 300 } else { 60 }, &ALL_KINDS);
    assert!(cases >= 400, "only {cases} cases");
}

/// Bigger segments, one checkpoint kept (so each checkpoint removes the previous one), and
/// every other kind of operation failed too: opening files, listing and removing.
#[test]
fn io_errors_in_any_operation_lose_nothing_acknowledged() {
    let seed = faults::seed("io_errors_in_any_operation_lose_nothing_acknowledged", 0x10e3);
    let options = Options { checkpoints_kept: 1, ..quiet(8192) };
    let mut kinds = ALL_KINDS.to_vec();
    kinds.extend([FaultOp::Remove, FaultOp::List, FaultOp::Open]);
    let cases = roll_workload("any operation", seed, options, if faults::long() { 300 } else { 50 }, &kinds);
    assert!(cases >= 250, "only {cases} cases");
}

/// The dictionary is trained after 250 frames: only the operations around it are failed.
/// A fault in the log's own write or fsync fails its append and poisons the writer; a fault
/// in the dictionary's write (5 operations, once and persistently) fails nothing.
#[test]
fn io_errors_while_writing_a_dictionary_lose_nothing_acknowledged() {
    let seed = faults::seed("io_errors_while_writing_a_dictionary_lose_nothing_acknowledged", 0x10e2);
    let options = Options { segment_size_bytes: 64 << 10, checkpoint_every_events: 0, checkpoint_every_bytes: 0, ..Options::default() };
    let base = FaultStorage::new(seed);
    let steps: Vec<Step> = workload(seed, 262, 400, 0).into_iter().map(Step::Append).collect();
    let window = &steps[..244];
    let dictionary = DictionaryWrite::find(&base, &options, &steps);
    assert!(dictionary.step >= window.len(), "the dictionary must be trained after the window starts (step {})", dictionary.step);
    // No space is reserved in the window (its segment reserved its space before it).
    let kinds = [FaultOp::Append, FaultOp::WriteAt, FaultOp::SyncData, FaultOp::Rename, FaultOp::SyncDir, FaultOp::Create];
    let cases = enumerate("dictionary", &base, &[], &options, &steps, &kinds, Some(window), Some(&dictionary));
    assert!(cases >= 40, "only {cases} cases");
}
