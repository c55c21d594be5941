//! Durable appends (`Durability::Always`: each commit is fdatasync'ed before `append`
//! returns): one event at a time from one thread, one event at a time from 8 threads
//! (group commit), and 1,000-event batches.
//!
//! These are dominated by the disk's sync latency; `benches/compare.rs` puts them next to
//! SQLite's on the same disk in the same run.

mod common;

use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use strata::{Durability, NewEvent, Store};

use common::fixture;
use common::workload::{self, Op, WorkloadConfig};

/// Entities the updates go to, created before measuring.
const ENTITIES: usize = 1_000;

/// Update patches taken from the workload, to be aimed at any live entity.
fn patches() -> Vec<(Value, Option<&'static str>)> {
    let config = WorkloadConfig { total_events: 50_000, entities: 2_000, deep_depths: vec![], seed: 5 };
    workload::generate(&config)
        .expect("workload config is valid")
        .into_iter()
        .filter_map(|op| match op {
            Op::Update { patch, verb, .. } => Some((patch, verb)),
            _ => None,
        })
        .collect()
}

/// A durable store with `ENTITIES` contacts `e0`, `e1`, ... to update.
fn store_with_entities(dir: &std::path::Path) -> Store {
    let store = Store::open(dir, fixture::options(Durability::Always)).expect("open store");
    let creates = (0..ENTITIES)
        .map(|i| NewEvent::create("Contact", format!("e{i}"), json!({"name": format!("Contact {i}"), "stage": "lead", "score": i})))
        .collect();
    store.append_batch(creates).expect("create entities");
    store
}

/// The `n`-th update of the run: a workload patch aimed at entity `n % ENTITIES`.
fn update(patches: &[(Value, Option<&'static str>)], n: usize) -> NewEvent {
    let (patch, verb) = &patches[n % patches.len()];
    let event = NewEvent::update(format!("e{}", n % ENTITIES), patch.clone());
    match verb {
        Some(v) => event.verb(*v),
        None => event,
    }
}

fn appends(c: &mut Criterion) {
    let patches = Arc::new(patches());
    let mut group = c.benchmark_group("append");

    let dir = tempfile::tempdir().expect("temporary directory");
    let store = store_with_entities(dir.path());
    let mut n = 0;
    group.throughput(Throughput::Elements(1));
    group.bench_function("durable_single_event", |b| {
        b.iter_batched(
            || {
                n += 1;
                update(&patches, n)
            },
            |event| store.append(event).expect("append"),
            BatchSize::SmallInput,
        );
    });
    drop(store);

    // Eight threads each append `iters / 8` events; the figure is time per event.
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Arc::new(store_with_entities(dir.path()));
    group.bench_function("durable_single_event_8_threads", |b| {
        b.iter_custom(|iters| {
            let per_thread = (iters as usize).div_ceil(8);
            let start = Instant::now();
            let handles: Vec<_> = (0..8)
                .map(|t| {
                    let (store, patches) = (Arc::clone(&store), Arc::clone(&patches));
                    thread::spawn(move || {
                        for i in 0..per_thread {
                            store.append(update(&patches, t + 8 * i)).expect("append");
                        }
                    })
                })
                .collect();
            for h in handles {
                h.join().expect("append thread panicked");
            }
            start.elapsed().mul_f64(iters as f64 / (per_thread * 8) as f64)
        });
    });
    drop(store);

    let dir = tempfile::tempdir().expect("temporary directory");
    let store = store_with_entities(dir.path());
    let mut n = 0;
    group.throughput(Throughput::Elements(1_000));
    group.bench_function("durable_batch_1000", |b| {
        b.iter_batched(
            || {
                n += 1_000;
                (n..n + 1_000).map(|i| update(&patches, i)).collect::<Vec<_>>()
            },
            |batch| store.append_batch(batch).expect("append batch"),
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(5));
    targets = appends
}
criterion_main!(benches);
