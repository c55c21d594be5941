//! The codecs, measured through the public API (they are crate-private):
//!
//! - encode: `append_batch` of 1,000 CRM-like updates with `Durability::Never`, so the
//!   figure is the write path's CPU cost (checks, JSON and record encoding, zstd in
//!   ~4 KiB chunks, CRC, one `write`) without an fsync; with and without a trained
//!   zstd dictionary.
//! - decode: `events` over one 1,000-event frame (CRC, decompression of every chunk,
//!   record decoding, JSON parsing), and `event(id)` of one event (one chunk); with and
//!   without the dictionary.
//! - CRC: `crc32fast`, which the frame and chunk checks use, over 64 KiB of a real
//!   segment.

mod common;

use std::path::Path;
use std::time::Duration;

use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use serde_json::{Value, json};
use strata::{Durability, EventQuery, NewEvent, Options, Store};

use common::fixture;
use common::workload::{self, Op, WorkloadConfig};

const ENTITIES: usize = 1_000;
const BATCH: usize = 1_000;

/// Update patches from the workload, aimed at entities `e0`... in turn.
struct Updates {
    patches: Vec<(Value, Option<&'static str>)>,
    next: usize,
}

impl Updates {
    fn new() -> Self {
        let config = WorkloadConfig { total_events: 50_000, entities: 2_000, deep_depths: vec![], seed: 9 };
        let patches = workload::generate(&config)
            .expect("workload config is valid")
            .into_iter()
            .filter_map(|op| match op {
                Op::Update { patch, verb, .. } => Some((patch, verb)),
                _ => None,
            })
            .collect();
        Updates { patches, next: 0 }
    }

    fn batch(&mut self, n: usize) -> Vec<NewEvent> {
        (0..n)
            .map(|_| {
                self.next += 1;
                let (patch, verb) = &self.patches[self.next % self.patches.len()];
                let event = NewEvent::update(format!("e{}", self.next % ENTITIES), patch.clone());
                match verb {
                    Some(v) => event.verb(*v),
                    None => event,
                }
            })
            .collect()
    }
}

/// A store without fsyncs holding `ENTITIES` contacts; with `dictionary`, enough single
/// appends first that a zstd dictionary is trained (checked).
fn store(dir: &Path, dictionary: bool, updates: &mut Updates) -> Store {
    let options = Options { train_dictionary: dictionary, ..fixture::options(Durability::Never) };
    let store = Store::open(dir, options).expect("open store");
    let creates = (0..ENTITIES)
        .map(|i| {
            let data = json!({"name": format!("Contact {i}"), "email": format!("c{i}@example.com"), "stage": "lead", "score": i});
            NewEvent::create("Contact", format!("e{i}"), data)
        })
        .collect();
    store.append_batch(creates).expect("create entities");
    if dictionary {
        // The dictionary is trained from the first few hundred commits.
        for _ in 0..2_000 {
            let event = updates.batch(1).pop().expect("one event");
            store.append(event).expect("append");
        }
        let trained =
            std::fs::read_dir(dir).expect("list store").any(|e| e.is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".zdict")));
        assert!(trained, "a dictionary was trained");
    }
    store
}

fn codec(c: &mut Criterion) {
    let mut updates = Updates::new();
    let mut group = c.benchmark_group("codec");
    for dictionary in [false, true] {
        let label = if dictionary { "with_dictionary" } else { "without_dictionary" };
        let dir = tempfile::tempdir().expect("temporary directory");
        let store = store(dir.path(), dictionary, &mut updates);

        group.throughput(Throughput::Elements(BATCH as u64));
        group.bench_function(BenchmarkId::new("encode_batch_1000", label), |b| {
            b.iter_batched(|| updates.batch(BATCH), |batch| store.append_batch(batch).expect("append"), BatchSize::SmallInput);
        });

        // One more batch, so that the frame read below is a 1,000-event one.
        let frame = store.append_batch(updates.batch(BATCH)).expect("append");
        let query = EventQuery::new().after_seq(frame[0].seq - 1).limit(BATCH);
        assert_eq!(store.events(&query).expect("events").len(), BATCH);
        group.bench_function(BenchmarkId::new("decode_frame_1000", label), |b| {
            b.iter(|| store.events(&query).expect("events"));
        });

        group.throughput(Throughput::Elements(1));
        let id = frame[BATCH / 2].id.clone();
        group.bench_function(BenchmarkId::new("decode_one_event", label), |b| {
            b.iter(|| store.event(&id).expect("event"));
        });
        drop(store);

        if !dictionary {
            let segment = std::fs::read_dir(dir.path())
                .expect("list store")
                .filter_map(Result::ok)
                .find(|e| e.file_name().to_string_lossy().ends_with(".seg"))
                .expect("a segment file");
            let bytes = std::fs::read(segment.path()).expect("read segment");
            let slice = &bytes[..bytes.len().min(64 << 10)];
            group.throughput(Throughput::Bytes(slice.len() as u64));
            group.bench_function("crc32_64KiB_of_a_segment", |b| b.iter(|| crc32fast::hash(slice)));
        }
    }
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20).measurement_time(Duration::from_secs(3));
    targets = codec
}
criterion_main!(benches);
