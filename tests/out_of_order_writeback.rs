//! Power loss on a disk that writes pages back in any order (`FaultStorage::crash_out_of_order`):
//! of the pages written since the last sync, any subset survives, so a later frame can be on
//! the disk while an earlier one is not. strata appends with `Durability::Never` here and
//! syncs every ~30 batches, so many frames are un-synced at once.
//!
//! What is asserted, after every crash: open with the default `Recovery::TolerateTornTail`
//! succeeds (what the crash left is a torn tail, not corruption: every frame carries the
//! offset up to which its segment was durable when it was written, and a valid frame after a
//! bad one whose mark is at or before the bad bytes proves them un-synced); the store holds
//! the first n batches exactly for some n at least the number synced (a batch whole or
//! absent); appends continue. Before frames carried the mark (format version 2), 119 of
//! these 402 crashes failed open with `Error::Corruption`.
//!
//! The second test does the same to group commits under the default `Durability::Always`,
//! where only the frames of the commit being synced are ever un-synced.

mod faults;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use faults::{Rng, assert_appends_continue, assert_recovered, workload};
use serde_json::json;
use strata::{Durability, Event, EventQuery, FaultStorage, NewEvent, Options, Store};

const DIR: &str = "/db";

fn open(storage: &FaultStorage, options: &Options) -> strata::Result<Store> {
    Store::open_with_storage(DIR, options.clone(), Arc::new(storage.clone()))
}

#[derive(Default, Debug)]
struct Tally {
    crashes: usize,
    /// Crashes that lost un-synced batches (the rest lost no page that held data).
    lost_unsynced: usize,
}

/// Crashes a copy of `storage` out of order and checks what the store opens to.
#[allow(clippy::too_many_arguments)]
fn check_crash(
    storage: &FaultStorage,
    crash_seed: u64,
    options: &Options,
    all: &[Vec<Event>],
    synced: usize,
    context: &str,
    tally: &mut Tally,
) {
    let crashed = storage.fork();
    crashed.set_seed(crash_seed);
    let what = crashed.crash_out_of_order();
    let context = format!("{context} ({what})");
    tally.crashes += 1;
    let store = open(&crashed, options).unwrap_or_else(|e| panic!("{context}: open failed: {e}"));
    let kept = assert_recovered(&store, all, synced, &context);
    if kept < all.len() {
        tally.lost_unsynced += 1;
    }
    assert_appends_continue(&store, &context);
}

#[test]
fn out_of_order_writeback_loses_nothing_synced_and_returns_nothing_bad() {
    let seed = faults::seed("out_of_order_writeback_loses_nothing_synced_and_returns_nothing_bad", 0x0dd0);
    let mut rng = Rng(seed);
    let options = Options {
        durability: Durability::Never,
        segment_size_bytes: 24 << 10,
        checkpoint_every_events: 0,
        checkpoint_every_bytes: 0,
        ..Options::default()
    };
    let steps = if faults::long() { 2_000 } else { 400 };
    let mut tally = Tally::default();
    for round in 0..if faults::long() { 8 } else { 3 } {
        let storage = FaultStorage::new(seed ^ round);
        let store = open(&storage, &options).unwrap();
        let mut all: Vec<Vec<Event>> = Vec::new();
        let mut synced = 0;
        for (i, batch) in workload(seed ^ (round << 8), steps, 800, 30).into_iter().enumerate() {
            all.push(store.append_batch(batch).unwrap());
            if rng.chance(3) {
                store.sync().unwrap();
                synced = all.len();
            }
            if rng.chance(10) {
                for _ in 0..3 {
                    let crash_seed = rng.next();
                    let context = format!("seed {seed} round {round} after batch {i}, crash seed {crash_seed}");
                    check_crash(&storage, crash_seed, &options, &all, synced, &context, &mut tally);
                }
            }
        }
    }
    println!("{tally:?}");
    assert!(tally.crashes >= 100, "only {} crashes", tally.crashes);
    assert!(tally.lost_unsynced * 4 >= tally.crashes, "only {} of {} crashes lost anything", tally.lost_unsynced, tally.crashes);
}

/// Group commit with the default `Durability::Always`: four threads append single events, so a
/// commit often writes several frames in one `write` before its one `fdatasync`, and those
/// frames can straddle pages. The storage is captured after every mutation and each moment
/// is crashed out of order with several seeds. Open always succeeds, every event acknowledged
/// by that moment is there, identical, and the log is a prefix of the log the run wrote.
#[test]
fn group_commits_crashed_out_of_order_lose_nothing_acknowledged() {
    let seed = faults::seed("group_commits_crashed_out_of_order_lose_nothing_acknowledged", 0x0dd1);
    let options = Options { segment_size_bytes: 32 << 10, checkpoint_every_events: 0, checkpoint_every_bytes: 0, ..Options::default() };
    let storage = FaultStorage::new(seed);
    let acked: Arc<Mutex<Vec<u64>>> = Arc::default();
    let moments: Arc<Mutex<Vec<(FaultStorage, usize)>>> = Arc::default();
    let store = Arc::new(open(&storage, &options).unwrap());
    {
        let (s, m, a) = (storage.clone(), moments.clone(), acked.clone());
        storage.set_mutation_hook(Some(Arc::new(move |_| {
            let acked = a.lock().unwrap().len();
            m.lock().unwrap().push((s.fork(), acked));
        })));
    }
    let per_thread = if faults::long() { 200 } else { 40 };
    std::thread::scope(|scope| {
        for t in 0..4 {
            let (store, acked) = (store.clone(), acked.clone());
            scope.spawn(move || {
                for i in 0..per_thread {
                    let note = format!("thread {t} call {i}: a follow-up about the renewal; ").repeat(4);
                    let ev = store.append(NewEvent::create("Call", format!("call-{t}-{i}"), json!({"note": note}))).unwrap();
                    acked.lock().unwrap().push(ev.seq);
                }
            });
        }
    });
    storage.set_mutation_hook(None);
    let acked = acked.lock().unwrap().clone();
    let log: BTreeMap<u64, Event> = store.events(&EventQuery::new()).unwrap().into_iter().map(|e| (e.seq, e)).collect();
    assert_eq!(log.len(), acked.len());
    let moments = std::mem::take(&mut *moments.lock().unwrap());
    let mut rng = Rng(seed);
    let mut crashes = 0;
    for (n, (moment, acked_then)) in moments.iter().enumerate() {
        for _ in 0..3 {
            let crash_seed = rng.next();
            let crashed = moment.fork();
            crashed.set_seed(crash_seed);
            let what = crashed.crash_out_of_order();
            let context = format!("seed {seed}, moment {n}, crash seed {crash_seed} ({what})");
            crashes += 1;
            let reopened = open(&crashed, &options).unwrap_or_else(|e| panic!("{context}: open failed: {e}"));
            let got = reopened.events(&EventQuery::new()).unwrap();
            for (i, ev) in got.iter().enumerate() {
                assert_eq!(ev.seq, i as u64 + 1, "{context}: seqs are dense");
                assert_eq!(Some(ev), log.get(&ev.seq), "{context}: event {} is the one written", ev.seq);
            }
            for seq in &acked[..*acked_then] {
                assert!(*seq <= got.len() as u64, "{context}: acknowledged event {seq} lost ({} survived)", got.len());
            }
        }
    }
    println!("{} moments, {crashes} crashes, {} events", moments.len(), acked.len());
    assert!(crashes >= 300, "only {crashes} crashes");
}
