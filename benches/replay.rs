//! Opening a store: without a checkpoint, open replays the whole log into the index;
//! with one, it loads the checkpoint and replays only the log after it.
//!
//! The fixture is 200,000 CRM-like events in 1,000-event batches, synced and closed
//! before measuring; each iteration opens the store (taking the lock, mapping every
//! segment, rebuilding the index) and closes it. The files stay in the page cache, so
//! this measures the CPU cost of open, not the disk; closing the store (freeing the
//! index and states) is left out of the timing. The checkpointed copy has 10,000
//! more events after its checkpoint, as a store between checkpoints would.

mod common;

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use strata::{Durability, Store};

use common::fixture;
use common::workload::{self, Op, WorkloadConfig};

fn open(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = fixture::bench_config(200_000, 10_000);
    let (store, _) = fixture::loaded_store(dir.path(), &config, 1_000);
    let events = store.last_seq();
    drop(store);

    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(events));
    group.bench_function("open_without_checkpoint_200k_events", |b| {
        // One open per batch, so the store is closed (outside the timing) before the next
        // open takes the directory lock.
        b.iter_batched(|| (), |()| Store::open(dir.path(), fixture::options(Durability::Always)).expect("open"), BatchSize::PerIteration);
    });

    // The same store, checkpointed, then 10,000 more events.
    let store = Store::open(dir.path(), fixture::options(Durability::Never)).expect("open");
    store.checkpoint().expect("checkpoint").expect("a checkpoint was written");
    let more = WorkloadConfig { total_events: 10_000, entities: 500, deep_depths: vec![], seed: 3 };
    let tail = workload::generate(&more).expect("workload config is valid");
    // The tail's own entities (renamed so they do not collide with the fixture's).
    for chunk in tail.chunks(1_000) {
        let batch = chunk.iter().map(|op| fixture::new_event(rename(op))).collect();
        store.append_batch(batch).expect("append after the checkpoint");
    }
    let events = store.last_seq();
    store.sync().expect("sync");
    drop(store);
    group.throughput(Throughput::Elements(events));
    group.bench_function("open_with_checkpoint_200k_plus_10k_events", |b| {
        // One open per batch, so the store is closed (outside the timing) before the next
        // open takes the directory lock.
        b.iter_batched(|| (), |()| Store::open(dir.path(), fixture::options(Durability::Always)).expect("open"), BatchSize::PerIteration);
    });

    // Writing the next checkpoint of that store once 1,000 events (100 new entities, never
    // read) were appended since the last: what an automatic checkpoint costs in a long-lived
    // store. The new entities' states are built from the log written since their creation.
    let store = Store::open(dir.path(), fixture::options(Durability::Never)).expect("open");
    let mut round = 0u64;
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("checkpoint_after_1k_new_events_on_210k", |b| {
        b.iter_batched(
            || {
                round += 1;
                let batch = (0..1_000)
                    .map(|i| {
                        let id = format!("later_{round}_{}", i % 100);
                        match i < 100 {
                            true => strata::NewEvent::create("Contact", id, serde_json::json!({"name": "Later", "stage": "Lead", "n": i})),
                            false => strata::NewEvent::update(id, serde_json::json!({"n": i})),
                        }
                    })
                    .collect();
                store.append_batch(batch).expect("append before the checkpoint");
            },
            |()| store.checkpoint().expect("checkpoint").expect("a checkpoint was written"),
            BatchSize::PerIteration,
        );
    });
    group.finish();
}

/// The op with its entity id prefixed by `tail_`.
fn rename(op: &Op) -> Op {
    let id = format!("tail_{}", op.entity());
    match op.clone() {
        Op::Create { kind, data, .. } => Op::Create { kind, id, data },
        Op::Update { patch, verb, .. } => Op::Update { id, patch, verb },
        Op::Delete { .. } => Op::Delete { id },
        Op::Restore { .. } => Op::Restore { id },
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(5));
    targets = open
}
criterion_main!(benches);
