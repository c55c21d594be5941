//! Opening a store: without a checkpoint, open replays the whole log into the index.
//!
//! The fixture is 200,000 CRM-like events in 1,000-event batches, synced and closed
//! before measuring; each iteration opens the store (taking the lock, mapping every
//! segment, rebuilding the index) and closes it. The files stay in the page cache, so
//! this measures the CPU cost of replay, not the disk.
//!
//! Open with a checkpoint (`Store::checkpoint`) is not in the library yet; its bench
//! comes with it.

mod common;

use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use strata::{Durability, Store};

use common::fixture;

fn open(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = fixture::bench_config(200_000, 10_000);
    let (store, _) = fixture::loaded_store(dir.path(), &config, 1_000);
    let events = store.last_seq();
    drop(store);

    let mut group = c.benchmark_group("replay");
    group.throughput(Throughput::Elements(events));
    group.bench_function("open_without_checkpoint_200k_events", |b| {
        b.iter(|| Store::open(dir.path(), fixture::options(Durability::Always)).expect("open"));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(5));
    targets = open
}
criterion_main!(benches);
