//! Closing and reopening a store changes nothing a user can see: after every kind of
//! operation, across segment rolls, with and without a trained dictionary, and with every
//! durability mode, the state, histories and event listing are identical, and appends
//! carry on where they left off.

mod layout;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::json;
use strata::{Durability, Entity, Event, EventQuery, NewEvent, Options, Store};

/// One entity as read back: its id, current state, history and every past version.
type EntityView = (String, Option<Entity>, Vec<Event>, Vec<Option<Entity>>);

/// Everything a user can read from a store.
#[derive(Debug, PartialEq)]
struct Observed {
    last_seq: u64,
    events: Vec<Event>,
    entities: Vec<EntityView>,
}

fn observe(store: &Store) -> Observed {
    let events = store.events(&EventQuery::new()).unwrap();
    let ids: BTreeSet<String> = events.iter().map(|e| e.entity.clone()).collect();
    let entities = ids
        .into_iter()
        .map(|id| {
            let current = store.get(&id).unwrap();
            let history = store.history(&id).unwrap();
            let versions = (1..=history.len() as u64).map(|v| store.get_version(&id, v).unwrap()).collect();
            (id, current, history, versions)
        })
        .collect();
    Observed { last_seq: store.last_seq(), events, entities }
}

/// Runs `write` on a fresh store, then checks that a reopened store observes the same, that
/// appends continue with the next seq and a later timestamp, and that a second reopen sees
/// those too.
fn survives_reopen(options: Options, write: impl FnOnce(&Store)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let before = {
        let store = Store::open(dir.path(), options.clone()).unwrap();
        write(&store);
        observe(&store)
    };
    assert!(before.last_seq > 0);
    let store = Store::open(dir.path(), options.clone()).unwrap();
    let after = observe(&store);
    assert_eq!(after, before);

    let last = before.events.last().unwrap();
    let next = store.append(NewEvent::create("Marker", "after-reopen", json!({"n": 1}))).unwrap();
    assert_eq!(next.seq, before.last_seq + 1);
    assert!(next.timestamp > last.timestamp);
    let again = observe(&store);
    drop(store);
    let store = Store::open(dir.path(), options).unwrap();
    assert_eq!(observe(&store), again);
    dir
}

#[test]
fn reopen_after_create() {
    survives_reopen(Options::default(), |s| {
        s.append(NewEvent::create("Contact", "c1", json!({"name": "Alice", "stage": "Lead"})).actor("agent_1")).unwrap();
        s.append(NewEvent::create("Deal", "d1", json!({"amount": 10})).id("req-7").metadata(json!({"src": "import"}))).unwrap();
    });
}

#[test]
fn reopen_after_update() {
    let dir = survives_reopen(Options::default(), |s| {
        s.append(NewEvent::create("Contact", "c1", json!({"name": "Alice", "tmp": true, "address": {"city": "Paris"}}))).unwrap();
        s.append(NewEvent::update("c1", json!({"tmp": null, "address": {"zip": "75001"}}))).unwrap();
    });
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let e = store.get("c1").unwrap().unwrap();
    assert_eq!(
        serde_json::Value::Object(Arc::unwrap_or_clone(e.state)),
        json!({"name": "Alice", "address": {"city": "Paris", "zip": "75001"}})
    );
}

#[test]
fn reopen_after_custom_verb() {
    let dir = survives_reopen(Options::default(), |s| {
        s.append(NewEvent::create("Contact", "c1", json!({"stage": "Lead"}))).unwrap();
        s.append(NewEvent::update("c1", json!({"stage": "Qualified"})).verb("Qualified").actor("agent_2")).unwrap();
    });
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.events(&EventQuery::new().event_type("*.Qualified")).unwrap().len(), 1);
}

#[test]
fn reopen_after_delete() {
    let dir = survives_reopen(Options::default(), |s| {
        s.append(NewEvent::create("Contact", "c1", json!({"name": "Alice"}))).unwrap();
        s.append(NewEvent::delete("c1")).unwrap();
    });
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let e = store.get("c1").unwrap().unwrap();
    assert!(e.deleted);
    assert_eq!(e.state["name"], "Alice");
    // The index knows it is deleted: deleting again is refused, restoring works.
    assert!(store.append(NewEvent::delete("c1")).is_err());
    store.append(NewEvent::restore("c1")).unwrap();
}

#[test]
fn reopen_after_restore() {
    let dir = survives_reopen(Options::default(), |s| {
        s.append(NewEvent::create("Contact", "c1", json!({"name": "Alice"}))).unwrap();
        s.append(NewEvent::delete("c1")).unwrap();
        s.append(NewEvent::restore("c1")).unwrap();
    });
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let e = store.get("c1").unwrap().unwrap();
    assert!(!e.deleted);
    assert_eq!(e.version, 3);
    assert!(store.append(NewEvent::restore("c1")).is_err());
}

#[test]
fn reopen_after_batch() {
    let dir = survives_reopen(Options::default(), |s| {
        s.append_batch(vec![
            NewEvent::create("Account", "a", json!({"balance": 10})),
            NewEvent::create("Account", "b", json!({"balance": 0})),
            NewEvent::update("a", json!({"balance": 5})).verb("Debited"),
            NewEvent::update("b", json!({"balance": 5})).verb("Credited"),
        ])
        .unwrap();
    });
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let evs = store.events(&EventQuery::new()).unwrap();
    assert!(evs[..4].iter().all(|e| e.batch == 1 && e.timestamp == evs[0].timestamp));
}

#[test]
fn reopen_keeps_caller_ids_idempotent() {
    let dir = survives_reopen(Options::default(), |s| {
        s.append(NewEvent::create("Contact", "c1", json!({})).id("req-1")).unwrap();
    });
    let store = Store::open(dir.path(), Options::default()).unwrap();
    let last = store.last_seq();
    assert_eq!(store.append(NewEvent::create("Contact", "c1", json!({})).id("req-1")).unwrap().seq, 1);
    assert_eq!(store.last_seq(), last);
}

/// A CRM-like workload: `contacts` contacts with 8 fields, then `updates` updates of 1 to 3
/// fields, some custom verbs, deletes and restores, single events and small batches.
fn crm_workload(store: &Store, contacts: usize, updates: usize) {
    for i in 0..contacts {
        store
            .append(NewEvent::create(
                "Contact",
                format!("contact_{i}"),
                json!({
                    "name": format!("Person {i}"),
                    "email": format!("person{i}@example.com"),
                    "phone": format!("+33 6 {:02} {:02} {:02} {:02}", i % 97, i % 89, i % 83, i % 79),
                    "company": format!("Company {}", i % 50),
                    "stage": "Lead",
                    "owner": format!("agent_{}", i % 7),
                    "score": i % 100,
                    "tags": ["crm", if i % 2 == 0 { "inbound" } else { "outbound" }],
                }),
            ))
            .unwrap();
    }
    for u in 0..updates {
        let id = format!("contact_{}", (u * 7919) % contacts);
        match u % 10 {
            0 => store.append(NewEvent::update(&id, json!({"stage": "Qualified"})).verb("Qualified").actor("agent_1")).unwrap(),
            1 if store.get(&id).unwrap().is_some_and(|e| !e.deleted) => store.append(NewEvent::delete(&id)).unwrap(),
            2 if store.get(&id).unwrap().is_some_and(|e| e.deleted) => store.append(NewEvent::restore(&id)).unwrap(),
            3 => {
                let other = format!("contact_{}", (u * 31) % contacts);
                let batch = vec![NewEvent::update(&id, json!({"score": u % 100})), NewEvent::update(&other, json!({"owner": "agent_9"}))];
                store.append_batch(batch).unwrap().remove(0)
            }
            4 => store.append(NewEvent::update(&id, json!({"score": u % 100, "stage": "Contacted", "tags": null}))).unwrap(),
            _ => store.append(NewEvent::update(&id, json!({"score": u % 100}))).unwrap(),
        };
    }
}

#[test]
fn reopen_across_segment_rolls_without_a_dictionary() {
    let options = Options { segment_size_bytes: 8 << 10, train_dictionary: false, durability: Durability::Never, ..Options::default() };
    let dir = survives_reopen(options.clone(), |s| crm_workload(s, 100, 400));
    let segments = layout::segments(dir.path());
    assert!(segments.len() >= 5, "only {} segments", segments.len());
    let names = layout::dir_sizes(dir.path());
    assert!(!names.iter().any(|(n, _)| n.ends_with(".zdict")), "{names:?}");
    // Every segment but the last is sealed; frames never use a dictionary.
    for (i, seg) in segments.iter().enumerate() {
        let bytes = std::fs::read(seg).unwrap();
        assert_eq!(layout::trailer_index_offset(&bytes).is_some(), i + 1 < segments.len(), "{}", seg.display());
        assert!(layout::frames_in(&bytes).iter().all(|f| f.dict_id == 0 && !f.codecs.contains(&2)));
    }
}

#[test]
fn reopen_across_segment_rolls_with_a_trained_dictionary() {
    let options = Options { segment_size_bytes: 64 << 10, durability: Durability::Never, ..Options::default() };
    let dir = survives_reopen(options.clone(), |s| crm_workload(s, 600, 1500));
    let dict = dir.path().join("dict-0000000001.zdict");
    assert!(dict.exists(), "no dictionary: {:?}", layout::dir_sizes(dir.path()));
    assert_eq!(&std::fs::read(&dict).unwrap()[..8], b"STRATDIC");
    assert!(!dir.path().join("dict-0000000002.zdict").exists(), "a second dictionary was trained after reopen");

    let frames: Vec<layout::Frame> = layout::segments(dir.path()).iter().flat_map(|s| layout::frames(s)).collect();
    assert!(layout::segments(dir.path()).len() >= 3);
    // Frames before training use plain zstd or raw chunks; after it, the dictionary.
    let first_dict = frames.iter().position(|f| f.dict_id == 1).expect("no frame uses the dictionary");
    assert!(first_dict > 0);
    assert!(frames[..first_dict].iter().all(|f| f.dict_id == 0 && !f.codecs.contains(&2)));
    assert!(frames[first_dict..].iter().all(|f| f.dict_id == 1));
    // Records of a few dozen bytes may still be stored raw (compression must save more than
    // it costs), but nothing uses plain zstd any more and every sizeable frame uses the
    // dictionary.
    for f in &frames[first_dict..] {
        assert!(f.codecs.iter().all(|&c| c == 0 || c == 2), "{f:?}");
        assert!(f.raw_len < 100 || f.codecs == [2], "{f:?}");
    }
    let with_dict = frames[first_dict..].iter().filter(|f| f.codecs.contains(&2)).count();
    assert!(with_dict >= 100, "only {with_dict} frames use the dictionary");
    // The frame written after the reopen (the marker) uses the dictionary too.
    let marker = frames.last().unwrap();
    assert_eq!(marker.dict_id, 1);
}

#[test]
fn reopen_after_interval_durability_with_sync() {
    let options = Options { durability: Durability::Interval(5), ..Options::default() };
    survives_reopen(options, |s| {
        crm_workload(s, 20, 50);
        s.sync().unwrap();
    });
}

#[test]
fn reopen_after_never_durability_with_sync() {
    let options = Options { durability: Durability::Never, ..Options::default() };
    survives_reopen(options, |s| {
        crm_workload(s, 20, 50);
        s.sync().unwrap();
    });
}

#[test]
fn a_clean_drop_without_sync_keeps_everything() {
    for durability in [Durability::Never, Durability::Interval(60_000)] {
        let options = Options { durability, ..Options::default() };
        survives_reopen(options, |s| crm_workload(s, 20, 50));
    }
}

#[test]
fn the_interval_flusher_makes_appends_durable_without_an_explicit_sync() {
    // The flusher thread must have synced within a few intervals; we cannot see fsyncs from
    // here, but the store must keep working while it runs and reopen cleanly.
    let dir = tempfile::tempdir().unwrap();
    let options = Options { durability: Durability::Interval(1), ..Options::default() };
    {
        let store = Store::open(dir.path(), options.clone()).unwrap();
        for i in 0..200 {
            store.append(NewEvent::create("Contact", format!("c{i}"), json!({"i": i}))).unwrap();
            if i % 50 == 0 {
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
    }
    let store = Store::open(dir.path(), options).unwrap();
    assert_eq!(store.last_seq(), 200);
}

#[test]
fn reopening_many_times_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { segment_size_bytes: 4 << 10, durability: Durability::Never, ..Options::default() };
    let mut expected = None;
    for round in 0..8 {
        let store = Store::open(dir.path(), options.clone()).unwrap();
        if let Some(exp) = &expected {
            assert_eq!(&observe(&store), exp, "round {round}");
        }
        crm_workload_round(&store, round);
        expected = Some(observe(&store));
    }
    let segments = layout::segments(dir.path());
    assert!(segments.len() > 1);
}

fn crm_workload_round(store: &Store, round: usize) {
    for i in 0..10 {
        store.append(NewEvent::create("Contact", format!("r{round}_{i}"), json!({"round": round, "i": i}))).unwrap();
    }
    if round > 0 {
        store.append(NewEvent::update(format!("r{}_0", round - 1), json!({"seen": round}))).unwrap();
    }
}

#[test]
fn reopen_of_an_empty_store_is_empty() {
    let dir = tempfile::tempdir().unwrap();
    let id = {
        let store = Store::open(dir.path(), Options::default()).unwrap();
        store.store_id()
    };
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.last_seq(), 0);
    assert_eq!(store.events(&EventQuery::new()).unwrap(), Vec::<Event>::new());
    // The store keeps its id even with no events: it is in the first segment's header.
    assert_eq!(store.store_id(), id);
    assert_eq!(store.append(NewEvent::create("Contact", "c1", json!({}))).unwrap().seq, 1);
}

#[test]
fn store_id_survives_reopen_and_generated_ids_still_resolve() {
    let dir = tempfile::tempdir().unwrap();
    let (id, ev) = {
        let store = Store::open(dir.path(), Options::default()).unwrap();
        let ev = store.append(NewEvent::create("Contact", "c1", json!({}))).unwrap();
        (store.store_id(), ev)
    };
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.store_id(), id);
    assert_eq!(store.event(&ev.id).unwrap(), Some(ev));
}

/// A child process forked while the store is open shares the descriptor of its `LOCK` file
/// (and, with it, the lock) until it execs or exits; any thread of an application may fork
/// one, to run a command say. Closing the store releases the lock for every holder, so the
/// application can reopen the store at once, while the child still runs (it exits only
/// when told to, after the reopen).
#[cfg(target_os = "linux")]
#[test]
fn a_forked_child_holding_the_lock_descriptor_does_not_keep_a_closed_store_locked() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store.append(NewEvent::create("Contact", "c1", json!({"name": "Alice"}))).unwrap();
    // The child holds its descriptors until the parent has reopened the store: it blocks
    // reading a pipe that the parent writes to (or closes, by exiting) afterwards.
    let mut fds = [0; 2];
    // SAFETY: `fds` is the two-element array pipe(2) fills.
    assert_eq!(unsafe { libc::pipe(fds.as_mut_ptr()) }, 0, "pipe: {}", std::io::Error::last_os_error());
    let (read_end, write_end) = (fds[0], fds[1]);
    // SAFETY: the child calls only async-signal-safe functions (`close`, `read`, `_exit`), as
    // a forked child of a multi-threaded process must, and exits without running any
    // destructor; `byte` outlives the read.
    let child = unsafe { libc::fork() };
    assert!(child >= 0, "fork failed: {}", std::io::Error::last_os_error());
    if child == 0 {
        unsafe {
            libc::close(write_end);
            let mut byte = 0u8;
            libc::read(read_end, (&raw mut byte).cast(), 1);
            libc::_exit(0);
        }
    }
    // SAFETY: closes the parent's copy of the read end, which nothing else uses.
    unsafe { libc::close(read_end) };
    drop(store);
    let reopened = Store::open(dir.path(), Options::default());
    // SAFETY: writes one byte from a live buffer to the pipe's write end, then closes it:
    // the child, which held every inherited descriptor until now, exits.
    unsafe {
        libc::write(write_end, b"x".as_ptr().cast(), 1);
        libc::close(write_end);
    }
    let mut status = 0;
    // SAFETY: waits for the child forked above; `status` outlives the call.
    let waited = unsafe { libc::waitpid(child, &mut status, 0) };
    assert_eq!(waited, child);
    let store = reopened.expect("reopened while a forked child still holds the lock's descriptor");
    assert_eq!(store.get("c1").unwrap().unwrap().version, 1);
}
