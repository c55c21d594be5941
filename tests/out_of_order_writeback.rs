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

mod faults;

use std::sync::Arc;

use faults::{Rng, assert_appends_continue, assert_recovered, workload};
use strata::{Durability, Event, FaultStorage, Options, Store};

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
