//! Readers and writers at the same time: readers on several threads see a consistent,
//! monotonically growing store while appends go on (across segment rolls), and many
//! threads appending durably are all acknowledged with dense seqs, sharing fsyncs.

#[path = "support/counting_storage.rs"]
mod counting_storage;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use counting_storage::CountingStorage;
use serde_json::json;
use strata::{Durability, Error, EventQuery, NewEvent, Options, Store};

const BATCH: usize = 5;

/// The writer's script: a counter entity updated `rounds` times, and every 10th round a
/// batch creating `BATCH` entities at once.
fn write_rounds(store: &Store, rounds: u64) {
    store.append(NewEvent::create("Counter", "counter", json!({"n": 0}))).unwrap();
    for v in 2..=rounds {
        store.append(NewEvent::update("counter", json!({"n": v - 1, "pad": "x".repeat((v % 50) as usize)}))).unwrap();
        if v % 10 == 0 {
            let batch = (0..BATCH).map(|j| NewEvent::create("Item", format!("item_{v}_{j}"), json!({"v": v, "j": j}))).collect();
            store.append_batch(batch).unwrap();
        }
    }
}

/// One reader's checks, repeated until the writer is done.
fn read_until_done(store: &Store, done: &AtomicBool, reader: usize) -> u64 {
    let (mut last_seq, mut last_version, mut cursor, mut rounds) = (0, 0, 0u64, 0u64);
    let mut seen_batches: HashMap<u64, usize> = HashMap::new();
    loop {
        let finished = done.load(Ordering::Acquire);
        let seq = store.last_seq();
        assert!(seq >= last_seq, "reader {reader}: last_seq went back from {last_seq} to {seq}");
        last_seq = seq;

        if let Some(counter) = store.get("counter").unwrap() {
            assert!(counter.version >= last_version, "reader {reader}: version went back");
            assert_eq!(counter.state["n"], json!(counter.version - 1), "reader {reader}: state does not match version");
            last_version = counter.version;
            let history = store.history("counter").unwrap();
            assert!(history.len() as u64 >= counter.version);
            for (i, ev) in history.iter().enumerate() {
                assert_eq!(ev.version, i as u64 + 1);
                assert_eq!(ev.data["n"], json!(i));
            }
        }

        // Tail the log: every new event follows the previous one, and a batch is seen whole.
        let new = store.events(&EventQuery::new().after_seq(cursor)).unwrap();
        for ev in &new {
            assert_eq!(ev.seq, cursor + 1, "reader {reader}: gap in the log");
            cursor = ev.seq;
            if ev.kind() == "Item" {
                *seen_batches.entry(ev.batch).or_default() += 1;
            }
        }
        for (batch, count) in &seen_batches {
            assert_eq!(*count, BATCH, "reader {reader}: saw {count} events of batch {batch}");
        }
        assert!(cursor <= store.last_seq());

        // Entities of one batch appear together: if the last exists, so does the first.
        let v = (last_version / 10) * 10;
        if v >= 10 && store.get(&format!("item_{v}_{}", BATCH - 1)).unwrap().is_some() {
            assert!(store.get(&format!("item_{v}_0")).unwrap().is_some(), "reader {reader}: half a batch");
        }
        rounds += 1;
        if finished {
            return rounds;
        }
    }
}

#[test]
fn readers_see_consistent_growing_state_while_appends_go_on() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments so that readers cross segment rolls and re-mapped files.
    let options = Options { durability: Durability::Never, segment_size_bytes: 16 << 10, ..Options::default() };
    let store = Arc::new(Store::open(dir.path(), options).unwrap());
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..3)
        .map(|r| {
            let (store, done) = (store.clone(), done.clone());
            thread::spawn(move || read_until_done(&store, &done, r))
        })
        .collect();
    write_rounds(&store, 1500);
    done.store(true, Ordering::Release);
    for r in readers {
        let rounds = r.join().expect("a reader panicked");
        assert!(rounds > 1, "a reader ran only {rounds} rounds: it never overlapped the writer");
    }
    assert_eq!(store.get("counter").unwrap().unwrap().version, 1500);
    assert!(std::fs::read_dir(dir.path()).unwrap().count() > 5, "segments did not roll");
}

#[test]
fn concurrent_durable_appenders_are_all_acknowledged_with_dense_seqs_and_share_fsyncs() {
    const THREADS: usize = 8;
    const PER_THREAD: u64 = 150;
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(CountingStorage::default());
    let syncs = storage.syncs.clone();
    let store = Arc::new(Store::open_with_storage(dir.path(), Options::default(), storage).unwrap());
    let syncs_at_start = syncs.load(Ordering::Relaxed);
    let writers: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            thread::spawn(move || {
                let id = format!("thread_{t}");
                let mut acked = vec![store.append(NewEvent::create("Worker", &id, json!({"n": 0}))).unwrap()];
                for n in 1..PER_THREAD {
                    acked.push(store.append(NewEvent::update(&id, json!({"n": n})).expect_version(n)).unwrap());
                }
                acked
            })
        })
        .collect();
    let mut all_seqs = BTreeSet::new();
    for (t, w) in writers.into_iter().enumerate() {
        let acked = w.join().expect("an appender panicked");
        assert_eq!(acked.len() as u64, PER_THREAD);
        for (i, ev) in acked.iter().enumerate() {
            assert_eq!(ev.entity, format!("thread_{t}"));
            assert_eq!(ev.version, i as u64 + 1);
            assert!(all_seqs.insert(ev.seq), "seq {} acknowledged twice", ev.seq);
        }
        assert!(acked.windows(2).all(|w| w[0].seq < w[1].seq && w[0].timestamp < w[1].timestamp));
    }
    let total = THREADS as u64 * PER_THREAD;
    assert_eq!(all_seqs.into_iter().collect::<Vec<_>>(), (1..=total).collect::<Vec<_>>());
    let fsyncs = syncs.load(Ordering::Relaxed) - syncs_at_start;
    println!("{total} durable appends from {THREADS} threads took {fsyncs} fsyncs");
    assert!(fsyncs >= 1);
    assert!(fsyncs < total, "no group commit: {fsyncs} fsyncs for {total} appends");

    // Everything acknowledged is on disk.
    drop(store);
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.last_seq(), total);
    for t in 0..THREADS {
        let e = store.get(&format!("thread_{t}")).unwrap().unwrap();
        assert_eq!((e.version, e.state["n"].as_u64()), (PER_THREAD, Some(PER_THREAD - 1)));
    }
}

#[test]
fn contending_appenders_on_one_entity_get_conflicts_not_lost_updates() {
    const THREADS: usize = 4;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), Options { durability: Durability::Never, ..Options::default() }).unwrap());
    store.append(NewEvent::create("Account", "acc", json!({"balance": 0}))).unwrap();
    let writers: Vec<_> = (0..THREADS)
        .map(|_| {
            let store = store.clone();
            thread::spawn(move || {
                let mut done = 0;
                while done < 50 {
                    let e = store.get("acc").unwrap().unwrap();
                    let balance = e.state["balance"].as_i64().unwrap();
                    match store.append(NewEvent::update("acc", json!({"balance": balance + 1})).expect_version(e.version)) {
                        Ok(_) => done += 1,
                        Err(Error::VersionConflict { .. }) => {}
                        Err(other) => panic!("unexpected error {other:?}"),
                    }
                }
            })
        })
        .collect();
    for w in writers {
        w.join().expect("a writer panicked");
    }
    let e = store.get("acc").unwrap().unwrap();
    assert_eq!(e.state["balance"], json!(THREADS * 50));
    assert_eq!(e.version, THREADS as u64 * 50 + 1);
}

#[test]
fn concurrent_retries_of_one_caller_id_write_it_once() {
    const THREADS: usize = 6;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(dir.path(), Options::default()).unwrap());
    for round in 0..20 {
        let id = format!("req-{round}");
        let callers: Vec<_> = (0..THREADS)
            .map(|_| {
                let (store, id) = (store.clone(), id.clone());
                thread::spawn(move || store.append(NewEvent::create("Order", format!("order_{round}"), json!({"round": round})).id(id)))
            })
            .collect();
        let results: Vec<_> = callers.into_iter().map(|c| c.join().unwrap()).collect();
        let stored = store.event(&id).unwrap().expect("the id was never stored");
        // Every retry gets the stored event, even one that lands in the same commit group
        // as the original (it waits for the next group).
        for r in results {
            assert_eq!(r.unwrap_or_else(|e| panic!("round {round}: unexpected error {e:?}")), stored);
        }
        assert_eq!(store.history(&format!("order_{round}")).unwrap().len(), 1);
    }
    assert_eq!(store.last_seq(), 20);
}
