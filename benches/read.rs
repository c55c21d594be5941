//! Reads of one entity: `get` of the current state, `get_as_of` at random timestamps of
//! entities with 100, 1,000 and 10,000 versions, and `get_version`; `find` over a kind; and
//! as-of reads of the 10,000-version entity with snapshot intervals of 4, 16 and 64.
//!
//! The fixture is a store of 200,000 CRM-like events appended in 1,000-event batches, each
//! event with its own timestamp, kept open: states of the entities it created are already
//! materialized, as in a process that wrote them. Each as-of iteration reads at the
//! timestamp of a random version (uniform over the entity's versions, from a fixed seed).
//! The snapshot-interval group reopens the store, so its snapshots are built by the reads.
//!
//! `find` scans every entity of a kind (rebuilding each at the query's time) and filters on
//! its state: now, with a limit, and as of the log's midpoint.

mod common;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use strata::{EventQuery, Query, Timestamp};

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

    let middle = store.events(&EventQuery::new().after_seq(store.last_seq() / 2).limit(1)).expect("event")[0].timestamp;
    let mut group = c.benchmark_group("find");
    group.sample_size(10);
    let finds = [
        ("contacts_in_stage_qualified", Query::kind("Contact").eq("stage", "qualified")),
        ("deals_over_100000_first_10", Query::kind("Deal").gt("amount", 100_000).limit(10)),
        ("contacts_in_stage_qualified_as_of_midpoint", Query::kind("Contact").eq("stage", "qualified").as_of(middle)),
    ];
    for (name, query) in &finds {
        assert!(!store.find(query).expect("find").is_empty(), "{name} finds entities");
        group.bench_function(*name, |b| b.iter(|| store.find(query).expect("find")));
    }
    group.finish();

    // The snapshot interval K bounds an as-of read's replay: reopened with each K (so
    // snapshots are rebuilt lazily by the reads, as after any open without checkpoint).
    drop(store);
    let id = config.deep_id(2);
    let mut group = c.benchmark_group("get_as_of_depth_10000_by_snapshot_interval");
    for every in [4u64, 16, 64] {
        let options = strata::Options { snapshot_every_versions: every, ..fixture::options(strata::Durability::Never) };
        let store = strata::Store::open(dir.path(), options).expect("reopen");
        let stamps: Vec<Timestamp> = store.history(&id).expect("history").iter().map(|e| e.timestamp).collect();
        let mut rng = SplitMix64::new(every);
        group.bench_with_input(BenchmarkId::from_parameter(every), &id, |b, id| {
            b.iter(|| store.get_as_of(id, *rng.pick(&stamps)).expect("get_as_of"));
        });
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(std::time::Duration::from_secs(4));
    targets = reads
}
criterion_main!(benches);
