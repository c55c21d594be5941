//! Listing events with `Store::events`: by type pattern and by time range.
//!
//! The fixture is 200,000 CRM-like events in 1,000-event batches. Type patterns are
//! matched on every record of every frame; a time range skips whole frames by their
//! min/max timestamps.

mod common;

use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use strata::{EventQuery, Timestamp};

use common::fixture;

fn queries(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let config = fixture::bench_config(200_000, 10_000);
    let (store, _) = fixture::loaded_store(dir.path(), &config, 1_000);
    // The timestamps at 50% and 51% of the log: a range holding about 1% of it.
    let at = |seq: u64| -> Timestamp {
        let ev = store.events(&EventQuery::new().after_seq(seq - 1).limit(1)).expect("event");
        ev[0].timestamp
    };
    let (from, to) = (at(100_000), at(102_000));

    let mut group = c.benchmark_group("query");
    let queries = [
        ("type_suffix_qualified_all", EventQuery::new().event_type("*.Qualified")),
        ("type_prefix_deal_first_100", EventQuery::new().event_type("Deal.*").limit(100)),
        ("type_exact_contact_deleted_all", EventQuery::new().event_type("Contact.Deleted")),
        ("time_range_1_percent", EventQuery::new().after(from).before(to).expect("timestamp")),
        ("time_range_and_type_1_percent", EventQuery::new().after(from).before(to).expect("timestamp").event_type("*.Qualified")),
        ("entity_depth_1000_all", EventQuery::new().entity(config.deep_id(1))),
    ];
    for (name, query) in &queries {
        let found = store.events(query).expect("query").len();
        assert!(found > 0, "{name} finds events");
        group.bench_function(*name, |b| b.iter(|| store.events(query).expect("query")));
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(10).measurement_time(Duration::from_secs(4));
    targets = queries
}
criterion_main!(benches);
