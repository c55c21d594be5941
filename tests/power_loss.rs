//! Simulated power loss: run a workload on the in-memory [`FaultStorage`], capture the
//! storage after every mutating I/O operation (append, fsync, create, rename, remove,
//! truncate, directory fsync), and for each captured moment simulate a power loss with
//! several seeds: un-synced data is dropped whole, cut to a prefix or cut and followed by
//! garbage, and un-synced directory operations are lost. After each crash state:
//!
//! - the store opens with the default `Recovery::TolerateTornTail` (a crash leaves only a
//!   torn tail, which must never be reported as corruption);
//! - it holds the first n batches of the workload, exactly (full `Event` values), for some n
//!   at least the number of batches acknowledged (with `Durability::Always`) before that
//!   moment: no acknowledged event is lost, and an unacknowledged batch is either wholly
//!   there or wholly absent;
//! - appends continue.
//!
//! Workloads cover segment roll and seal (small segments), dictionary training (the writer
//! trains after 250 frames holding >= 64 KiB of records), clean reopen in the middle (the
//! recovery path with a dictionary and sealed segments), and recovery itself: the open that
//! follows a crash is captured the same way and crashed at every mutation.

mod faults;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use faults::{Rng, assert_appends_continue, assert_recovered, workload};
use strata::{Event, FaultOp, FaultStorage, NewEvent, Options, Store};

const DIR: &str = "/db";

/// One moment of a workload: the storage right after a mutation, and how many batches had
/// been acknowledged by then.
struct Moment {
    storage: FaultStorage,
    acked: usize,
    mutation: u64,
}

/// What a recorded workload leaves: every batch as stored, and the captured moments.
struct Recording {
    all: Vec<Vec<Event>>,
    moments: Vec<Moment>,
    final_storage: FaultStorage,
}

/// A step of a recorded workload.
enum Step {
    Append(Vec<NewEvent>),
    /// Close the store cleanly and open it again.
    Reopen,
    /// Write a checkpoint.
    Checkpoint,
}

fn open(storage: &FaultStorage, options: &Options) -> strata::Result<Store> {
    Store::open_with_storage(DIR, options.clone(), Arc::new(storage.clone()))
}

/// Captures the storage after every mutation on `storage` while `run` executes.
fn capture<T>(storage: &FaultStorage, acked: &Arc<AtomicUsize>, run: impl FnOnce() -> T) -> (T, Vec<Moment>) {
    let moments = Arc::new(Mutex::new(Vec::new()));
    let (s, m, a) = (storage.clone(), moments.clone(), acked.clone());
    storage.set_mutation_hook(Some(Arc::new(move |mutation| {
        m.lock().unwrap().push(Moment { storage: s.fork(), acked: a.load(Ordering::SeqCst), mutation });
    })));
    let out = run();
    storage.set_mutation_hook(None);
    let moments = std::mem::take(&mut *moments.lock().unwrap());
    (out, moments)
}

fn record(seed: u64, options: &Options, steps: Vec<Step>) -> Recording {
    let storage = FaultStorage::new(seed);
    let acked = Arc::new(AtomicUsize::new(0));
    let (all, moments) = capture(&storage, &acked, || {
        let mut store = open(&storage, options).unwrap();
        let mut all = Vec::new();
        for step in steps {
            match step {
                Step::Append(batch) => {
                    all.push(store.append_batch(batch).unwrap());
                    acked.fetch_add(1, Ordering::SeqCst);
                }
                Step::Reopen => {
                    drop(store);
                    store = open(&storage, options).unwrap();
                }
                Step::Checkpoint => {
                    store.checkpoint().unwrap();
                }
            }
        }
        all
    });
    Recording { all, moments, final_storage: storage }
}

/// A fingerprint of the whole storage, to count only distinct crash states.
fn fingerprint(storage: &FaultStorage) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    for path in storage.paths() {
        path.hash(&mut h);
        storage.file_bytes(&path).hash(&mut h);
    }
    h.finish()
}

#[derive(Default)]
struct Tally {
    states: usize,
    moments: usize,
    recovery_states: usize,
    torn_repairs: usize,
    /// The files the workload left.
    files: Vec<String>,
}

impl Tally {
    fn count(&self, suffix: &str) -> usize {
        self.files.iter().filter(|f| f.ends_with(suffix)).count()
    }
}

/// Crashes `moment` with `seeds` seeds (one when nothing is un-synced), and checks every
/// distinct resulting state. The first crash state of the moment that needs writes to open
/// (a repair, a new segment) is crashed again during that open, at every mutation of it.
fn check_moment(name: &str, moment: &Moment, all: &[Vec<Event>], options: &Options, rng: &mut Rng, seeds: usize, tally: &mut Tally) {
    let mut seen = HashSet::new();
    let tries = if moment.storage.has_unsynced() { seeds } else { 1 };
    tally.moments += 1;
    // The recovering open is crashed for the first state of the moment that needs a repair.
    let mut recovery_crashed = false;
    for _ in 0..tries {
        let crash_seed = rng.next();
        let crashed = moment.storage.fork();
        crashed.set_seed(crash_seed);
        // Every other crash writes un-synced pages back in any order instead of as a prefix.
        let what = if crash_seed.is_multiple_of(2) { crashed.crash() } else { crashed.crash_out_of_order() };
        if !seen.insert(fingerprint(&crashed)) {
            continue;
        }
        tally.states += 1;
        let context = format!("{name}: crash after mutation {} (crash seed {crash_seed}: {what})", moment.mutation);
        // Writes other than syncs: open syncs every segment and the directory first, always.
        let writes = |s: &FaultStorage| s.mutations() - s.count(FaultOp::SyncData) - s.count(FaultOp::SyncDir);
        let before = writes(&crashed);
        let recovery = crashed.fork();
        let store = open(&crashed, options).unwrap_or_else(|e| panic!("{context}: open after the crash failed: {e}"));
        let n = assert_recovered(&store, all, moment.acked, &context);
        let repaired = writes(&crashed) > before;
        if repaired {
            tally.torn_repairs += 1;
        }
        assert_appends_continue(&store, &context);
        drop(store);
        if repaired && !recovery_crashed {
            recovery_crashed = true;
            crash_during_recovery(&context, &recovery, all, n, options, rng, tally);
        }
    }
}

/// Opens `crashed` while capturing every mutation of the open, then crashes each captured
/// moment and checks that the next open still recovers.
fn crash_during_recovery(
    context: &str,
    crashed: &FaultStorage,
    all: &[Vec<Event>],
    acked: usize,
    options: &Options,
    rng: &mut Rng,
    tally: &mut Tally,
) {
    let counter = Arc::new(AtomicUsize::new(acked));
    let (store, moments) = capture(crashed, &counter, || open(crashed, options).unwrap());
    drop(store);
    for m in moments {
        {
            let crash_seed = rng.next();
            let again = m.storage.fork();
            again.set_seed(crash_seed);
            let what = again.crash();
            tally.recovery_states += 1;
            let context =
                format!("{context}, then a crash after mutation {} of the recovering open (seed {crash_seed}: {what})", m.mutation);
            let store = open(&again, options).unwrap_or_else(|e| panic!("{context}: open failed: {e}"));
            assert_recovered(&store, all, acked, &context);
        }
    }
}

fn run(name: &str, seed: u64, options: Options, steps: Vec<Step>, seeds: usize) -> Tally {
    let started = Instant::now();
    let recording = record(seed, &options, steps);
    let mut rng = Rng(seed ^ 0x5eed);
    let mut tally = Tally::default();
    for moment in &recording.moments {
        check_moment(name, moment, &recording.all, &options, &mut rng, seeds, &mut tally);
    }
    // The workload itself, with no crash, must read back whole.
    let store = open(&recording.final_storage, &options).unwrap();
    assert_recovered(&store, &recording.all, recording.all.len(), name);
    tally.files = recording.final_storage.paths().iter().map(|p| p.display().to_string()).collect();
    println!(
        "{name}: {} moments, {} distinct crash states ({} needed writes to open), {} crash states during recovery, {} batches, {:?}",
        tally.moments,
        tally.states,
        tally.torn_repairs,
        tally.recovery_states,
        recording.all.len(),
        started.elapsed()
    );
    tally
}

/// Options for a workload: checkpoints only where the workload asks (a background
/// checkpoint would make the order of mutations, and so the crash points, vary by run).
fn options(segment_size_bytes: u64, train_dictionary: bool) -> Options {
    Options { segment_size_bytes, train_dictionary, checkpoint_every_events: 0, checkpoint_every_bytes: 0, ..Options::default() }
}

/// Inserts a `step` before every `every`-th step, starting at `first`.
fn every(steps: Vec<Step>, first: usize, every: usize, step: fn() -> Step) -> Vec<Step> {
    let mut out = Vec::with_capacity(steps.len() + steps.len() / every + 1);
    for (i, s) in steps.into_iter().enumerate() {
        if i >= first && (i - first).is_multiple_of(every) {
            out.push(step());
        }
        out.push(s);
    }
    out
}

fn appends(batches: Vec<Vec<NewEvent>>) -> Vec<Step> {
    batches.into_iter().map(Step::Append).collect()
}

fn scale(default: usize, long: usize) -> usize {
    if faults::long() { long } else { default }
}

/// Segment roll and seal: 4 KiB segments and multi-event batches, so that a group of frames
/// regularly straddles a roll; a checkpoint every 40 batches.
#[test]
fn power_loss_during_segment_roll_loses_nothing_acknowledged() {
    let seed = faults::seed("power_loss_during_segment_roll_loses_nothing_acknowledged", 0x5e61);
    let steps = every(appends(workload(seed, scale(150, 600), 120, 40)), 30, 40, || Step::Checkpoint);
    let tally = run("roll", seed, options(4096, false), steps, scale(24, 60));
    assert!(tally.count(".seg") >= 8, "the workload must roll segments: {:?}", tally.files);
    assert!(tally.count(".ckpt") >= 1, "the workload must write checkpoints: {:?}", tally.files);
    assert!(tally.states + tally.recovery_states >= 3500, "only {} crash states", tally.states + tally.recovery_states);
}

/// Dictionary creation: single-event appends of ~400-byte records train a dictionary at the
/// 250th frame; then a checkpoint, a clean reopen (sealed segments, the dictionary loaded,
/// the checkpoint used) and more appends compressed with the dictionary; 16 KiB segments.
#[test]
fn power_loss_around_dictionary_training_loses_nothing_acknowledged() {
    let seed = faults::seed("power_loss_around_dictionary_training_loses_nothing_acknowledged", 0xd1c7);
    let mut steps = appends(workload(seed, scale(290, 1200), 400, 0));
    let after: Vec<Step> = steps.split_off(260);
    steps.extend([Step::Checkpoint, Step::Reopen]);
    steps.extend(after);
    let tally = run("dictionary", seed, options(16 << 10, true), steps, scale(8, 30));
    assert_eq!(tally.count(".zdict"), 1, "the workload must train a dictionary: {:?}", tally.files);
    assert!(tally.count(".seg") >= 3, "the workload must roll segments: {:?}", tally.files);
    assert!(tally.states + tally.recovery_states >= 3000, "only {} crash states", tally.states + tally.recovery_states);
}

/// Many small batches with a clean reopen every 25 steps and a checkpoint every 30: crash
/// states around the open's own writes (a new segment after a sealed one, the repair of a
/// torn tail) and around checkpoints (temporary file, rename, removal of the oldest).
#[test]
fn power_loss_around_reopen_and_checkpoints_loses_nothing_acknowledged() {
    let seed = faults::seed("power_loss_around_reopen_and_checkpoints_loses_nothing_acknowledged", 0x0e9e);
    let steps = appends(workload(seed, scale(150, 600), 60, 50));
    let steps = every(every(steps, 24, 25, || Step::Reopen), 10, 30, || Step::Checkpoint);
    let tally = run("reopen", seed, options(2048, false), steps, scale(20, 40));
    assert!(tally.count(".seg") >= 8, "the workload must roll segments: {:?}", tally.files);
    assert_eq!(tally.count(".ckpt"), 2, "two checkpoints are kept: {:?}", tally.files);
    assert!(tally.states + tally.recovery_states >= 2800, "only {} crash states", tally.states + tally.recovery_states);
}

/// A crash before the first segment is durable leaves an empty store that opens and works.
#[test]
fn power_loss_while_creating_the_store_leaves_an_empty_store() {
    let storage = FaultStorage::new(1);
    let acked = Arc::new(AtomicUsize::new(0));
    let (_, moments) = capture(&storage, &acked, || drop(open(&storage, &Options::default()).unwrap()));
    assert!(moments.len() >= 3, "creating a store takes a create, a write, an fsync and a directory fsync");
    for m in moments {
        for seed in 0..8 {
            let crashed = m.storage.fork();
            crashed.set_seed(seed);
            crashed.crash();
            let store = open(&crashed, &Options::default()).unwrap();
            assert_eq!(store.last_seq(), 0);
            assert_appends_continue(&store, "empty store");
        }
    }
}
