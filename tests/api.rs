//! The public API as a user sees it: create, update, custom verbs, delete and restore;
//! versions and timestamps; event ids and idempotent retries; expected versions; atomic
//! batches; history; and listing events with every filter and cursor paging.

mod layout;

use layout::dir_sizes;
use std::sync::Arc;

use serde_json::{Value, json};
use strata::{Durability, Error, Event, EventQuery, NewEvent, Options, Store, Timestamp};

fn open(dir: &tempfile::TempDir) -> Store {
    Store::open(dir.path(), Options::default()).unwrap()
}

/// A store that does not fsync on append, for tests that need many events quickly.
fn open_fast(dir: &tempfile::TempDir) -> Store {
    Store::open(dir.path(), Options { durability: Durability::Never, ..Options::default() }).unwrap()
}

fn seqs(events: &[Event]) -> Vec<u64> {
    events.iter().map(|e| e.seq).collect()
}

fn types(events: &[Event]) -> Vec<&str> {
    events.iter().map(|e| e.event_type.as_str()).collect()
}

#[test]
fn create_returns_the_stored_event_and_the_entity_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let ev = store.append(NewEvent::create("Contact", "contact_1", json!({"name": "Alice", "stage": "Lead"})).actor("agent_1")).unwrap();
    assert_eq!(ev.seq, 1);
    assert_eq!(ev.version, 1);
    assert_eq!(ev.event_type, "Contact.Created");
    assert_eq!(ev.entity, "contact_1");
    assert_eq!(ev.actor.as_deref(), Some("agent_1"));
    assert_eq!(ev.data, json!({"name": "Alice", "stage": "Lead"}));
    assert_eq!(ev.metadata, json!({}));
    assert_eq!(ev.batch, 1);
    assert_eq!(ev.store, store.store_id());

    let e = store.get("contact_1").unwrap().unwrap();
    assert_eq!(e.id, "contact_1");
    assert_eq!(e.kind, "Contact");
    assert_eq!(e.version, 1);
    assert!(!e.deleted);
    assert_eq!(Value::Object(Arc::unwrap_or_clone(e.state)), json!({"name": "Alice", "stage": "Lead"}));
    assert_eq!(e.created_at, ev.timestamp);
    assert_eq!(e.updated_at, ev.timestamp);
    assert_eq!(store.last_seq(), 1);
}

#[test]
fn update_applies_a_json_merge_patch_including_nested_objects_and_null_removal() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store
        .append(NewEvent::create(
            "Contact",
            "c1",
            json!({"name": "Alice", "tmp": 1, "address": {"city": "Paris", "zip": "75001"}, "tags": ["a", "b"]}),
        ))
        .unwrap();
    let ev = store
        .append(NewEvent::update("c1", json!({"tmp": null, "address": {"zip": null, "street": "Rue X"}, "tags": ["c"], "stage": "Lead"})))
        .unwrap();
    assert_eq!(ev.event_type, "Contact.Updated");
    assert_eq!(ev.version, 2);
    // The stored data is the patch as given, not the resulting state.
    assert_eq!(ev.data, json!({"tmp": null, "address": {"zip": null, "street": "Rue X"}, "tags": ["c"], "stage": "Lead"}));
    let e = store.get("c1").unwrap().unwrap();
    assert_eq!(
        Value::Object(Arc::unwrap_or_clone(e.state)),
        json!({"name": "Alice", "address": {"city": "Paris", "street": "Rue X"}, "tags": ["c"], "stage": "Lead"})
    );
    // An object replacing a scalar merges into an empty object; a scalar replaces an object.
    store.append(NewEvent::update("c1", json!({"name": {"first": "Alice"}, "address": "gone"}))).unwrap();
    let e = store.get("c1").unwrap().unwrap();
    assert_eq!(e.state["name"], json!({"first": "Alice"}));
    assert_eq!(e.state["address"], json!("gone"));
    assert_eq!(e.version, 3);
}

#[test]
fn an_empty_patch_still_appends_a_version() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.append(NewEvent::create("Contact", "c1", json!({"a": 1}))).unwrap();
    let ev = store.append(NewEvent::update("c1", json!({}))).unwrap();
    assert_eq!(ev.version, 2);
    let e = store.get("c1").unwrap().unwrap();
    assert_eq!((e.version, Value::Object(Arc::unwrap_or_clone(e.state))), (2, json!({"a": 1})));
}

#[test]
fn custom_verb_names_the_event_type_and_patches_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.append(NewEvent::create("Contact", "c1", json!({"stage": "Lead"}))).unwrap();
    let ev = store.append(NewEvent::update("c1", json!({"stage": "Qualified"})).verb("Qualified")).unwrap();
    assert_eq!(ev.event_type, "Contact.Qualified");
    assert_eq!((ev.kind(), ev.verb()), ("Contact", "Qualified"));
    assert_eq!(store.get("c1").unwrap().unwrap().state["stage"], "Qualified");
}

#[test]
fn delete_keeps_state_and_marks_deleted_and_restore_clears_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.append(NewEvent::create("Contact", "c1", json!({"name": "Alice"}))).unwrap();
    let del = store.append(NewEvent::delete("c1").actor("admin")).unwrap();
    assert_eq!((del.event_type.as_str(), del.version), ("Contact.Deleted", 2));
    let e = store.get("c1").unwrap().unwrap();
    assert!(e.deleted);
    assert_eq!(e.state["name"], "Alice");
    assert_eq!(e.version, 2);

    // A deleted entity can still be updated (the log records it), and stays deleted.
    store.append(NewEvent::update("c1", json!({"note": "archived"}))).unwrap();
    let e = store.get("c1").unwrap().unwrap();
    assert!(e.deleted);
    assert_eq!(e.state["note"], "archived");

    let res = store.append(NewEvent::restore("c1")).unwrap();
    assert_eq!((res.event_type.as_str(), res.version), ("Contact.Restored", 4));
    let e = store.get("c1").unwrap().unwrap();
    assert!(!e.deleted);
    assert_eq!(Value::Object(Arc::unwrap_or_clone(e.state)), json!({"name": "Alice", "note": "archived"}));
    assert_eq!(types(&store.history("c1").unwrap()), ["Contact.Created", "Contact.Deleted", "Contact.Updated", "Contact.Restored"]);
}

#[test]
fn a_read_entity_is_a_snapshot_later_appends_do_not_change_and_rereads_share_its_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.append(NewEvent::create("Contact", "c1", json!({"name": "Alice", "stage": "Lead"}))).unwrap();
    let first = store.get("c1").unwrap().unwrap();
    let second = store.get("c1").unwrap().unwrap();
    // Reading an unchanged entity again copies nothing: both results share one map.
    assert!(Arc::ptr_eq(&first.state, &second.state));

    store.append(NewEvent::update("c1", json!({"stage": "Qualified", "name": null}))).unwrap();
    store.append(NewEvent::delete("c1")).unwrap();
    // What was read keeps the state it was read at.
    assert_eq!((first.version, first.deleted), (1, false));
    assert_eq!(Value::Object((*first.state).clone()), json!({"name": "Alice", "stage": "Lead"}));
    assert_eq!(first, second);

    let now = store.get("c1").unwrap().unwrap();
    assert_eq!((now.version, now.deleted), (3, true));
    assert_eq!(Value::Object((*now.state).clone()), json!({"stage": "Qualified"}));
    assert!(!Arc::ptr_eq(&first.state, &now.state));
    let again = store.get("c1").unwrap().unwrap();
    assert!(Arc::ptr_eq(&now.state, &again.state));

    // An owned copy is the caller's own: changing it changes no later read.
    let mut owned = Arc::unwrap_or_clone(again.state);
    owned.insert("stage".into(), json!("Won"));
    assert_eq!(store.get("c1").unwrap().unwrap().state["stage"], "Qualified");
    assert_eq!(now.state["stage"], "Qualified");
}

#[test]
fn after_an_open_with_a_checkpoint_the_first_read_keeps_the_state_for_the_next() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = open(&dir);
        store.append(NewEvent::create("Contact", "c1", json!({"name": "Alice"}))).unwrap();
        store.append(NewEvent::create("Contact", "c2", json!({"name": "Bob"}))).unwrap();
        store.append(NewEvent::update("c2", json!({"stage": "Lead"}))).unwrap();
        store.checkpoint().unwrap().expect("a checkpoint is written");
    }
    let store = open(&dir);
    let first = store.get("c1").unwrap().unwrap();
    let second = store.get("c1").unwrap().unwrap();
    assert_eq!(first.state["name"], "Alice");
    assert!(Arc::ptr_eq(&first.state, &second.state));
    // A read of the latest version by number keeps it too.
    let by_version = store.get_version("c2", 2).unwrap().unwrap();
    let current = store.get("c2").unwrap().unwrap();
    assert_eq!(Value::Object((*current.state).clone()), json!({"name": "Bob", "stage": "Lead"}));
    assert!(Arc::ptr_eq(&by_version.state, &current.state));
}

#[test]
fn deleting_twice_or_restoring_a_live_entity_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.append(NewEvent::create("Contact", "c1", json!({}))).unwrap();
    assert!(matches!(store.append(NewEvent::restore("c1")), Err(Error::InvalidInput { .. })));
    store.append(NewEvent::delete("c1")).unwrap();
    assert!(matches!(store.append(NewEvent::delete("c1")), Err(Error::InvalidInput { .. })));
    assert_eq!(store.last_seq(), 2);
    assert_eq!(store.get("c1").unwrap().unwrap().version, 2);
}

#[test]
fn versions_count_every_event_and_created_at_stays_while_updated_at_moves() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let created = store.append(NewEvent::create("Deal", "d1", json!({"amount": 0}))).unwrap();
    let mut last = created.clone();
    for i in 1..=5 {
        last = store.append(NewEvent::update("d1", json!({"amount": i}))).unwrap();
        assert_eq!(last.version, 1 + i as u64);
    }
    let del = store.append(NewEvent::delete("d1")).unwrap();
    assert_eq!(del.version, 7);
    let e = store.get("d1").unwrap().unwrap();
    assert_eq!(e.version, 7);
    assert_eq!(e.created_at, created.timestamp);
    assert_eq!(e.updated_at, del.timestamp);
    assert!(last.timestamp < del.timestamp);
    // Other entities have their own version counters.
    assert_eq!(store.append(NewEvent::create("Deal", "d2", json!({}))).unwrap().version, 1);
}

#[test]
fn generated_event_ids_are_store_id_dash_seq_and_resolve_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let a = store.append(NewEvent::create("Contact", "c1", json!({}))).unwrap();
    let b = store.append(NewEvent::update("c1", json!({"x": 1}))).unwrap();
    assert_eq!(a.id, format!("{}-1", store.store_id()));
    assert_eq!(b.id, format!("{}-2", store.store_id()));
    assert_eq!(store.event(&b.id).unwrap(), Some(b.clone()));
    assert_eq!(store.event(&format!("{}-3", store.store_id())).unwrap(), None);
    assert_eq!(store.event("no-such-id").unwrap(), None);
}

#[test]
fn generated_ids_differ_between_stores() {
    let (d1, d2) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (s1, s2) = (open(&d1), open(&d2));
    let a = s1.append(NewEvent::create("Contact", "c1", json!({}))).unwrap();
    let b = s2.append(NewEvent::create("Contact", "c1", json!({}))).unwrap();
    assert_ne!(s1.store_id(), s2.store_id());
    assert_ne!(a.id, b.id);
}

#[test]
fn retrying_a_caller_supplied_id_returns_the_stored_event_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let first = store.append(NewEvent::create("Contact", "c1", json!({"name": "Alice"})).id("req-1").actor("a")).unwrap();
    assert_eq!(first.id, "req-1");
    let seq_before = store.last_seq();
    let files_before = dir_sizes(dir.path());

    // The retry carries the same id; even if its body differs, the stored event wins.
    let retry = store.append(NewEvent::create("Contact", "c1", json!({"name": "Alice"})).id("req-1").actor("a")).unwrap();
    assert_eq!(retry, first);
    let odd_retry = store.append(NewEvent::update("c1", json!({"name": "Bob"})).id("req-1")).unwrap();
    assert_eq!(odd_retry, first);

    assert_eq!(store.last_seq(), seq_before);
    assert_eq!(dir_sizes(dir.path()), files_before);
    assert_eq!(store.get("c1").unwrap().unwrap().version, 1);
    assert_eq!(store.event("req-1").unwrap(), Some(first.clone()));
    drop(store);
    let store = open(&dir);
    assert_eq!(store.event("req-1").unwrap(), Some(first.clone()));
    assert_eq!(store.append(NewEvent::create("Contact", "c1", json!({})).id("req-1")).unwrap(), first);
    assert_eq!(store.last_seq(), seq_before);
}

#[test]
fn a_batch_retried_whole_returns_the_stored_events_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let batch = || {
        vec![
            NewEvent::create("Account", "a", json!({"balance": 10})).id("tx-1/a"),
            NewEvent::create("Account", "b", json!({"balance": 0})).id("tx-1/b"),
        ]
    };
    let stored = store.append_batch(batch()).unwrap();
    let last = store.last_seq();
    let again = store.append_batch(batch()).unwrap();
    assert_eq!(again, stored);
    assert_eq!(store.last_seq(), last);
}

#[test]
fn a_batch_mixing_stored_and_new_ids_is_an_error_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.append(NewEvent::create("Account", "a", json!({"balance": 10})).id("tx-1")).unwrap();
    let last = store.last_seq();
    let err = store
        .append_batch(vec![
            NewEvent::update("a", json!({"balance": 5})).id("tx-1"),
            NewEvent::create("Account", "b", json!({"balance": 5})).id("tx-2"),
        ])
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { what: "event id", .. }), "{err:?}");
    // A batch where only some events carry an id, one of them stored, is just as mixed.
    let err = store
        .append_batch(vec![NewEvent::update("a", json!({"balance": 5})).id("tx-1"), NewEvent::create("Account", "b", json!({}))])
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { what: "event id", .. }), "{err:?}");
    assert_eq!(store.last_seq(), last);
    assert_eq!(store.get("b").unwrap(), None);
    assert_eq!(store.event("tx-2").unwrap(), None);
}

#[test]
fn the_same_id_twice_in_one_batch_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let err = store
        .append_batch(vec![NewEvent::create("Account", "a", json!({})).id("x"), NewEvent::create("Account", "b", json!({})).id("x")])
        .unwrap_err();
    assert!(matches!(err, Error::InvalidInput { what: "event id", .. }), "{err:?}");
    assert_eq!(store.last_seq(), 0);
}

#[test]
fn a_caller_id_shaped_like_a_generated_id_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let forged = store.store_id().event_id(5);
    let err = store.append(NewEvent::create("Account", "a", json!({})).id(forged)).unwrap_err();
    assert!(matches!(err, Error::InvalidInput { what: "event id", .. }), "{err:?}");
    assert_eq!(store.last_seq(), 0);
}

#[test]
fn expected_version_matching_appends_and_mismatch_is_a_conflict_that_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.append(NewEvent::create("Contact", "c1", json!({"stage": "Lead"})).expect_version(0)).unwrap();
    store.append(NewEvent::update("c1", json!({"stage": "Qualified"})).expect_version(1)).unwrap();
    let err = store.append(NewEvent::update("c1", json!({"stage": "Lost"})).expect_version(1)).unwrap_err();
    match err {
        Error::VersionConflict { entity, expected, actual } => assert_eq!((entity.as_str(), expected, actual), ("c1", 1, 2)),
        other => panic!("expected a version conflict, got {other:?}"),
    }
    // On a missing entity the actual version is 0.
    let err = store.append(NewEvent::delete("ghost").expect_version(3)).unwrap_err();
    assert!(matches!(err, Error::VersionConflict { expected: 3, actual: 0, .. }), "{err:?}");
    // Expecting 0 on an existing entity conflicts before it is a duplicate create.
    let err = store.append(NewEvent::create("Contact", "c1", json!({})).expect_version(0)).unwrap_err();
    assert!(matches!(err, Error::VersionConflict { expected: 0, actual: 2, .. }), "{err:?}");
    assert_eq!(store.last_seq(), 2);
    assert_eq!(store.get("c1").unwrap().unwrap().state["stage"], "Qualified");
    // Expected versions also apply to delete and restore.
    store.append(NewEvent::delete("c1").expect_version(2)).unwrap();
    assert!(matches!(store.append(NewEvent::restore("c1").expect_version(2)), Err(Error::VersionConflict { actual: 3, .. })));
    store.append(NewEvent::restore("c1").expect_version(3)).unwrap();
}

#[test]
fn expected_versions_inside_a_batch_see_the_batch_s_earlier_events() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let evs = store
        .append_batch(vec![
            NewEvent::create("Deal", "d1", json!({"n": 0})).expect_version(0),
            NewEvent::update("d1", json!({"n": 1})).expect_version(1),
            NewEvent::update("d1", json!({"n": 2})).expect_version(2),
        ])
        .unwrap();
    assert_eq!(evs.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2, 3]);
    let err = store
        .append_batch(vec![
            NewEvent::update("d1", json!({"n": 3})).expect_version(3),
            NewEvent::update("d1", json!({"n": 4})).expect_version(3),
        ])
        .unwrap_err();
    assert!(matches!(err, Error::VersionConflict { expected: 3, actual: 4, .. }), "{err:?}");
    assert_eq!(store.get("d1").unwrap().unwrap().version, 3);
}

#[test]
fn timestamps_strictly_increase_across_batches() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_fast(&dir);
    store.append(NewEvent::create("Contact", "c1", json!({}))).unwrap();
    let mut prev = store.history("c1").unwrap()[0].timestamp;
    // Appends in a tight loop land in the same microsecond often enough to test the bump.
    for i in 0..500 {
        let ev = store.append(NewEvent::update("c1", json!({"i": i}))).unwrap();
        assert!(ev.timestamp > prev, "event {} at {} is not after {}", ev.seq, ev.timestamp, prev);
        prev = ev.timestamp;
    }
}

#[test]
fn a_caller_supplied_future_timestamp_is_kept_and_later_appends_come_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.append(NewEvent::create("Contact", "c1", json!({}))).unwrap();
    let future = Timestamp::from_micros(Timestamp::now().as_micros() + 3_600_000_000);
    let ev = store.append(NewEvent::update("c1", json!({"x": 1})).timestamp(future)).unwrap();
    assert_eq!(ev.timestamp, future);
    // The wall clock is now behind the log: the next append still moves forward.
    let next = store.append(NewEvent::update("c1", json!({"x": 2}))).unwrap();
    assert!(next.timestamp > future, "{} is not after {}", next.timestamp, future);
    // And the ordering survives a reopen.
    drop(store);
    let store = open(&dir);
    let again = store.append(NewEvent::update("c1", json!({"x": 3}))).unwrap();
    assert!(again.timestamp > next.timestamp);
}

#[test]
fn a_caller_supplied_timestamp_not_after_the_last_is_a_regression() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let created = store.append(NewEvent::create("Contact", "c1", json!({}))).unwrap();
    for ts in [created.timestamp, Timestamp::from_micros(created.timestamp.as_micros() - 1), Timestamp::from_micros(0)] {
        let err = store.append(NewEvent::update("c1", json!({"x": 1})).timestamp(ts)).unwrap_err();
        match err {
            Error::TimestampRegression { given, last } => {
                assert_eq!(given, ts.to_rfc3339());
                assert_eq!(last, created.timestamp.to_rfc3339());
            }
            other => panic!("expected a timestamp regression, got {other:?}"),
        }
    }
    assert_eq!(store.last_seq(), 1);
    let later = Timestamp::from_micros(created.timestamp.as_micros() + 1);
    assert_eq!(store.append(NewEvent::update("c1", json!({"x": 1})).timestamp(later)).unwrap().timestamp, later);
}

#[test]
fn a_batch_shares_one_batch_id_and_one_timestamp() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.append(NewEvent::create("Contact", "c0", json!({}))).unwrap();
    let evs = store
        .append_batch(vec![
            NewEvent::create("Account", "a", json!({"balance": 10})),
            NewEvent::create("Account", "b", json!({"balance": 0})),
            NewEvent::update("a", json!({"balance": 5})),
            NewEvent::update("b", json!({"balance": 5})).verb("Credited"),
        ])
        .unwrap();
    assert_eq!(seqs(&evs), [2, 3, 4, 5]);
    assert!(evs.iter().all(|e| e.batch == 2), "{:?}", evs.iter().map(|e| e.batch).collect::<Vec<_>>());
    assert!(evs.iter().all(|e| e.timestamp == evs[0].timestamp));
    assert_eq!(evs[2].version, 2);
    assert_eq!(store.get("a").unwrap().unwrap().state["balance"], 5);
    assert_eq!(store.get("b").unwrap().unwrap().state["balance"], 5);
    // The batch id survives a read back from disk.
    drop(store);
    let store = open(&dir);
    let back = store.events(&EventQuery::new().after_seq(1)).unwrap();
    assert_eq!(back, evs);
    assert_eq!(store.history("c0").unwrap()[0].batch, 1);
}

#[test]
fn a_batch_fails_whole_when_any_event_fails() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.append(NewEvent::create("Account", "a", json!({"balance": 10}))).unwrap();
    let failing: Vec<Vec<NewEvent>> = vec![
        vec![NewEvent::update("a", json!({"balance": 5})), NewEvent::update("missing", json!({}))],
        vec![NewEvent::create("Account", "b", json!({})), NewEvent::create("Account", "b", json!({}))],
        vec![NewEvent::update("a", json!({"balance": 5})), NewEvent::update("a", json!({})).expect_version(1)],
        vec![NewEvent::create("Account", "c", json!({})), NewEvent::update("a", json!([1, 2]))],
        vec![NewEvent::create("Account", "c", json!({})), NewEvent::create("bad kind", "d", json!({}))],
        vec![],
    ];
    for batch in failing {
        let described = format!("{batch:?}");
        assert!(store.append_batch(batch).is_err(), "batch {described} was accepted");
        assert_eq!(store.last_seq(), 1, "batch {described} wrote something");
    }
    assert_eq!(store.get("a").unwrap().unwrap().version, 1);
    assert_eq!(store.get("a").unwrap().unwrap().state["balance"], 10);
    assert_eq!(store.get("b").unwrap(), None);
    assert_eq!(store.get("c").unwrap(), None);
    // The next successful append gets the next seq: nothing was reserved by the failures.
    assert_eq!(store.append(NewEvent::create("Account", "b", json!({}))).unwrap().seq, 2);
}

#[test]
fn a_batch_can_create_and_delete_the_same_entity() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let evs =
        store.append_batch(vec![NewEvent::create("Tmp", "t", json!({"x": 1})), NewEvent::delete("t"), NewEvent::restore("t")]).unwrap();
    assert_eq!(types(&evs), ["Tmp.Created", "Tmp.Deleted", "Tmp.Restored"]);
    let e = store.get("t").unwrap().unwrap();
    assert_eq!((e.version, e.deleted), (3, false));
}

#[test]
fn history_lists_an_entity_s_events_in_version_order_and_nothing_for_unknown_ids() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    store.append(NewEvent::create("Contact", "c1", json!({"stage": "Lead"}))).unwrap();
    store.append(NewEvent::create("Contact", "c2", json!({}))).unwrap();
    store.append(NewEvent::update("c1", json!({"stage": "Qualified"})).verb("Qualified")).unwrap();
    store.append_batch(vec![NewEvent::update("c2", json!({"x": 1})), NewEvent::delete("c1")]).unwrap();
    let h = store.history("c1").unwrap();
    assert_eq!(h.iter().map(|e| e.version).collect::<Vec<_>>(), [1, 2, 3]);
    assert_eq!(seqs(&h), [1, 3, 5]);
    assert_eq!(types(&h), ["Contact.Created", "Contact.Qualified", "Contact.Deleted"]);
    assert!(h.iter().all(|e| e.entity == "c1"));
    assert_eq!(store.history("nobody").unwrap(), Vec::<Event>::new());
}

/// A small CRM log: contacts and deals by two agents, spread over several batches.
fn crm(store: &Store) -> Vec<Event> {
    let mut all = Vec::new();
    all.push(store.append(NewEvent::create("Contact", "c1", json!({"name": "Alice"})).actor("agent_1")).unwrap());
    all.push(store.append(NewEvent::create("Contact", "c2", json!({"name": "Bob"})).actor("agent_2")).unwrap());
    all.push(store.append(NewEvent::create("Deal", "d1", json!({"amount": 100})).actor("agent_1")).unwrap());
    all.push(store.append(NewEvent::update("c1", json!({"stage": "Qualified"})).verb("Qualified").actor("agent_2")).unwrap());
    all.extend(
        store
            .append_batch(vec![
                NewEvent::update("d1", json!({"stage": "Won"})).verb("Won").actor("agent_1"),
                NewEvent::update("c2", json!({"stage": "Qualified"})).verb("Qualified"),
                NewEvent::create("Deal", "d2", json!({"amount": 5})).actor("agent_2"),
            ])
            .unwrap(),
    );
    all.push(store.append(NewEvent::delete("d2").actor("agent_1")).unwrap());
    all.push(store.append(NewEvent::create("Dealer", "x1", json!({}))).unwrap());
    all
}

#[test]
fn events_filters_by_entity_exact_type_wildcards_and_actor() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let all = crm(&store);
    let q = |q: EventQuery| seqs(&store.events(&q).unwrap());
    let expect = |f: &dyn Fn(&Event) -> bool| all.iter().filter(|e| f(e)).map(|e| e.seq).collect::<Vec<_>>();

    assert_eq!(q(EventQuery::new()), expect(&|_| true));
    assert_eq!(store.events(&EventQuery::new()).unwrap(), all);
    assert_eq!(q(EventQuery::new().entity("c1")), [1, 4]);
    assert_eq!(q(EventQuery::new().entity("nobody")), Vec::<u64>::new());
    assert_eq!(q(EventQuery::new().event_type("Contact.Qualified")), [4, 6]);
    assert_eq!(q(EventQuery::new().event_type("Contact.Qualifie")), Vec::<u64>::new());
    // `Deal.*` must not match `Dealer.Created`.
    assert_eq!(q(EventQuery::new().event_type("Deal.*")), [3, 5, 7, 8]);
    assert_eq!(q(EventQuery::new().event_type("*.Qualified")), [4, 6]);
    assert_eq!(q(EventQuery::new().event_type("*.Created")), [1, 2, 3, 7, 9]);
    assert_eq!(q(EventQuery::new().event_type("*")), expect(&|_| true));
    assert_eq!(q(EventQuery::new().actor("agent_1")), [1, 3, 5, 8]);
    assert_eq!(q(EventQuery::new().actor("agent_3")), Vec::<u64>::new());
    // Conditions combine.
    assert_eq!(q(EventQuery::new().event_type("Deal.*").actor("agent_2")), [7]);
    assert_eq!(q(EventQuery::new().entity("d1").event_type("*.Won").actor("agent_1")), [5]);
    assert_eq!(q(EventQuery::new().entity("c2").actor("agent_1")), Vec::<u64>::new());
}

#[test]
fn events_time_range_is_half_open() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let all = crm(&store);
    let ts: Vec<Timestamp> = all.iter().map(|e| e.timestamp).collect();
    let q = |q: EventQuery| seqs(&store.events(&q).unwrap());
    // [t(4), t(8)): seq 4 is in, the batch 5..=7 is in, seq 8 is out.
    let range = EventQuery::new().after(ts[3]).before(ts[7]).unwrap();
    assert_eq!(q(range.clone()), [4, 5, 6, 7]);
    assert_eq!(q(range.entity("c1")), [4]);
    assert_eq!(q(EventQuery::new().after(ts[8])), [9]);
    assert_eq!(q(EventQuery::new().after(Timestamp::from_micros(ts[8].as_micros() + 1))), Vec::<u64>::new());
    assert_eq!(q(EventQuery::new().before(ts[0]).unwrap()), Vec::<u64>::new());
    assert_eq!(q(EventQuery::new().before(Timestamp::from_micros(ts[0].as_micros() + 1)).unwrap()), [1]);
    assert_eq!(q(EventQuery::new().after(ts[4]).before(ts[4]).unwrap()), Vec::<u64>::new());
    // RFC 3339 text works for `before`.
    assert_eq!(q(EventQuery::new().before("2000-01-01T00:00:00Z").unwrap()), Vec::<u64>::new());
    assert!(EventQuery::new().before("not a time").is_err());
}

#[test]
fn events_after_seq_and_limit_page_through_the_whole_log() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments so that pages cross segment boundaries.
    let store =
        Store::open(dir.path(), Options { durability: Durability::Never, segment_size_bytes: 16 << 10, ..Options::default() }).unwrap();
    for i in 0..50 {
        store.append(NewEvent::create("Contact", format!("c{i}"), json!({"i": i})).actor(if i % 3 == 0 { "a" } else { "b" })).unwrap();
        let batch = (0..7).map(|j| NewEvent::update(format!("c{i}"), json!({"j": j})).actor("b")).collect();
        store.append_batch(batch).unwrap();
    }
    let total = store.last_seq();
    assert_eq!(total, 400);
    let every = store.events(&EventQuery::new()).unwrap();
    assert_eq!(seqs(&every), (1..=total).collect::<Vec<_>>());

    for page_size in [1, 7, 10, 64, 399, 400, 1000] {
        let mut cursor = 0;
        let mut got = Vec::new();
        loop {
            let page = store.events(&EventQuery::new().after_seq(cursor).limit(page_size)).unwrap();
            assert!(page.len() <= page_size);
            let Some(last) = page.last() else { break };
            cursor = last.seq;
            got.extend(page);
        }
        assert_eq!(got, every, "paging by {page_size}");
    }

    // Paging a filtered query gives the filter's events, in order, once each.
    let filtered = store.events(&EventQuery::new().actor("a")).unwrap();
    assert_eq!(filtered.len(), 17);
    let mut cursor = 0;
    let mut got = Vec::new();
    loop {
        let page = store.events(&EventQuery::new().actor("a").after_seq(cursor).limit(4)).unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.seq;
        got.extend(page);
    }
    assert_eq!(got, filtered);

    // The same by entity.
    let mut cursor = 0;
    let mut got = Vec::new();
    loop {
        let page = store.events(&EventQuery::new().entity("c7").after_seq(cursor).limit(3)).unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.seq;
        got.extend(page);
    }
    assert_eq!(got, store.history("c7").unwrap());
    assert_eq!(store.events(&EventQuery::new().limit(0)).unwrap(), Vec::<Event>::new());
    assert_eq!(store.events(&EventQuery::new().after_seq(total)).unwrap(), Vec::<Event>::new());
    assert_eq!(store.events(&EventQuery::new().after_seq(u64::MAX)).unwrap(), Vec::<Event>::new());
}

#[test]
fn metadata_is_stored_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let ev = store.append(NewEvent::create("Contact", "c1", json!({})).metadata(json!({"reason": "import", "batch": {"n": 3}}))).unwrap();
    assert_eq!(ev.metadata, json!({"reason": "import", "batch": {"n": 3}}));
    drop(store);
    let store = open(&dir);
    assert_eq!(store.history("c1").unwrap()[0].metadata, json!({"reason": "import", "batch": {"n": 3}}));
}

#[test]
fn unicode_ids_and_data_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir);
    let id = "contact/Zoë-日本-🙂";
    store.append(NewEvent::create("Contact", id, json!({"name": "Zoë 日本 🙂", "q": "\"quoted\"\\"})).actor("agent é")).unwrap();
    drop(store);
    let store = open(&dir);
    let e = store.get(id).unwrap().unwrap();
    assert_eq!(e.state["name"], "Zoë 日本 🙂");
    assert_eq!(e.state["q"], "\"quoted\"\\");
    assert_eq!(store.events(&EventQuery::new().actor("agent é")).unwrap().len(), 1);
}
