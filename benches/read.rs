//! Reads of one entity: `get` of the current state, and `get_as_of` at random timestamps
//! of entities with 100, 1,000 and 10,000 versions.
//!
//! The fixture is a store of 200,000 CRM-like events appended in 1,000-event batches.
//! Each as-of iteration reads at the timestamp of a random version (uniform over the
//! entity's versions, from a fixed seed), so that the figure covers snapshot hits and
//! the replay of up to K - 1 events after one.
//!
//! `find` (`Store::find(&Query)`) is not in the library yet; its bench comes with it.

mod common;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use strata::Timestamp;

use common::fixture;
use common::workload::{Op, SplitMix64};

fn reads(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = fixture::bench_config(200_000, 10_000);
    let (store, ops) = fixture::loaded_store(dir.path(), &config, 1_000);
    let ordinary: Vec<String> = ops
        .iter()
        .filter_map(|op| match op {
            Op::Create { id, .. } if !id.starts_with("deep_") => Some(id.clone()),
            _ => None,
        })
        .collect();
    drop(ops);

    let mut group = c.benchmark_group("read");
    let mut rng = SplitMix64::new(7);
    group.bench_function("get/random_entity", |b| {
        b.iter(|| store.get(rng.pick(&ordinary).as_str()).expect("get"));
    });
    for (index, depth) in config.deep_depths.iter().enumerate() {
        let id = config.deep_id(index);
        let stamps: Vec<Timestamp> = store.history(&id).expect("history").iter().map(|e| e.timestamp).collect();
        assert_eq!(stamps.len(), *depth);
        let mut rng = SplitMix64::new(*depth as u64);
        group.bench_with_input(BenchmarkId::new("get_as_of/random_timestamp", depth), &id, |b, id| {
            b.iter(|| store.get_as_of(id, *rng.pick(&stamps)).expect("get_as_of"));
        });
    }
    let id = config.deep_id(1);
    let mut rng = SplitMix64::new(3);
    group.bench_function("get_version/depth_1000_random_version", |b| {
        b.iter(|| store.get_version(&id, 1 + rng.below(1_000) as u64).expect("get_version"));
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(4));
    targets = reads
}
criterion_main!(benches);
