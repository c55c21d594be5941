//! Stores written by earlier format versions still open, read and take appends.
//!
//! `tests/fixtures/v1-store` was written by strata with format version 1 (before segments
//! could hold a preallocated zero tail): ten events over two segments (a 1 KiB segment size),
//! with creates, a custom verb, a two-event batch, a caller-supplied id, delete, restore, a
//! patch that removes a field, and a checkpoint at seq 6.
//!
//! `tests/fixtures/v2-store` holds the same events and checkpoint written by strata with
//! format version 2 (before frames recorded how much of their segment was durable), and its
//! active segment ends in 4 KiB of reserved zeros, as a crash leaves it.

use std::path::Path;

use serde_json::json;
use strata::{EventQuery, NewEvent, Options, Recovery, Store, Timestamp};

/// The fixtures of earlier format versions, oldest first.
const FIXTURES: [&str; 2] = ["tests/fixtures/v1-store", "tests/fixtures/v2-store"];
/// 2026-01-01T00:00:00Z; the fixture's events are one second apart from it.
const BASE_MICROS: i64 = 1_767_225_600_000_000;

/// A writable copy of a fixture (the fixture itself is never opened read-write).
fn copy_fixture(name: &str, with_checkpoint: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(Path::new(env!("CARGO_MANIFEST_DIR")).join(name)).unwrap() {
        let entry = entry.unwrap();
        let file_name = entry.file_name();
        if !with_checkpoint && file_name.to_string_lossy().ends_with(".ckpt") {
            continue;
        }
        std::fs::copy(entry.path(), dir.path().join(file_name)).unwrap();
    }
    dir
}

fn object(value: serde_json::Value) -> serde_json::Map<String, serde_json::Value> {
    value.as_object().cloned().unwrap()
}

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_micros(BASE_MICROS + seconds * 1_000_000)
}

/// Checks every event of a fixture and every entity as it stood at its last event, exactly
/// (later appends leave both as they were).
fn assert_fixture_content(store: &Store) {
    let events = store.events(&EventQuery::new()).unwrap();
    let seen: Vec<_> = events
        .iter()
        .map(|e| (e.seq, e.event_type.as_str(), e.entity.as_str(), e.actor.as_deref(), e.timestamp, e.version, e.data.clone(), e.batch))
        .collect();
    let expected = vec![
        (1, "Contact.Created", "contact_1", Some("agent_1"), at(1), 1, json!({"name": "Alice", "stage": "Lead"}), 1),
        (2, "Contact.Created", "contact_2", None, at(2), 1, json!({"name": "Bob", "stage": "Lead"}), 2),
        (3, "Contact.Qualified", "contact_1", Some("agent_1"), at(3), 2, json!({"stage": "Qualified"}), 3),
        (4, "Deal.Created", "deal_1", None, at(4), 1, json!({"contact": "contact_1", "amount": 5000}), 4),
        (5, "Contact.Updated", "contact_1", None, at(5), 3, json!({"stage": "Customer", "email": "alice@example.com"}), 4),
        (6, "Contact.Deleted", "contact_2", Some("agent_2"), at(6), 2, json!({}), 6),
        (7, "Deal.Updated", "deal_1", None, at(7), 2, json!({"amount": 7500}), 7),
        (8, "Contact.Restored", "contact_2", None, at(8), 3, json!({}), 8),
        (9, "Contact.Updated", "contact_2", None, at(9), 4, json!({"stage": null, "note": "back"}), 9),
        (10, "Deal.Deleted", "deal_1", None, at(10), 3, json!({}), 10),
    ];
    assert_eq!(seen[..expected.len().min(seen.len())], expected[..]);
    assert_eq!(events[6].id, "req-42");
    assert_eq!(store.event("req-42").unwrap().map(|e| e.seq), Some(7));
    assert_eq!(events[0].id, store.store_id().event_id(1));
    assert!(events.iter().all(|e| e.metadata == json!({})));

    let alice = store.get_as_of("contact_1", at(10)).unwrap().unwrap();
    assert_eq!((alice.kind.as_str(), alice.version, alice.deleted), ("Contact", 3, false));
    assert_eq!(*alice.state, object(json!({"name": "Alice", "stage": "Customer", "email": "alice@example.com"})));
    assert_eq!((alice.created_at, alice.updated_at), (at(1), at(5)));
    let bob = store.get_as_of("contact_2", at(10)).unwrap().unwrap();
    assert_eq!((bob.version, bob.deleted), (4, false));
    assert_eq!(*bob.state, object(json!({"name": "Bob", "note": "back"})));
    let deal = store.get_as_of("deal_1", at(10)).unwrap().unwrap();
    assert_eq!((deal.kind.as_str(), deal.version, deal.deleted), ("Deal", 3, true));
    assert_eq!(*deal.state, object(json!({"contact": "contact_1", "amount": 7500})));
    assert_eq!(store.get_as_of("contact_1", at(3)).unwrap().unwrap().state["stage"], "Qualified");
    assert!(store.get_as_of("contact_2", at(7)).unwrap().unwrap().deleted);
}

fn strict() -> Options {
    Options { recovery: Recovery::Strict, ..Options::default() }
}

#[test]
fn stores_of_earlier_versions_open_with_every_event_and_entity() {
    for (fixture, with_checkpoint) in FIXTURES.into_iter().flat_map(|f| [(f, true), (f, false)]) {
        let dir = copy_fixture(fixture, with_checkpoint);
        let store = Store::open(dir.path(), strict()).unwrap();
        assert_eq!(store.last_seq(), 10);
        assert_fixture_content(&store);
        for id in ["contact_1", "contact_2", "deal_1"] {
            assert_eq!(store.get(id).unwrap(), store.get_as_of(id, at(10)).unwrap());
        }
        // Open sealed the older-version active segment and started one of today's version,
        // so that every frame written from now on carries its durable mark.
        assert_eq!(store.stats().segments, 3, "{fixture}");
        let mut segments: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "seg"))
            .collect();
        segments.sort();
        let versions: Vec<u32> =
            segments.iter().map(|p| u32::from_le_bytes(std::fs::read(p).unwrap()[8..12].try_into().unwrap())).collect();
        let old = if fixture.contains("v1") { 1 } else { 2 };
        assert_eq!(versions, [old, old, 3], "{fixture}");
        let sealed = std::fs::read(&segments[1]).unwrap();
        assert_eq!(&sealed[sealed.len() - 64..sealed.len() - 56], b"STRATEND", "{fixture}: the second segment is sealed");
    }
}

#[test]
fn stores_of_earlier_versions_take_appends_and_reopen() {
    for fixture in FIXTURES {
        takes_appends_and_reopens(fixture);
    }
}

fn takes_appends_and_reopens(fixture: &str) {
    let dir = copy_fixture(fixture, true);
    {
        let store = Store::open(dir.path(), strict()).unwrap();
        let ev = store.append(NewEvent::create("Contact", "contact_3", json!({"name": "Carol"})).actor("agent_3")).unwrap();
        assert_eq!((ev.seq, ev.version), (11, 1));
        store.append(NewEvent::update("contact_1", json!({"stage": "Churned"})).verb("Churned").expect_version(3)).unwrap();
        store.append(NewEvent::restore("deal_1")).unwrap();
    }
    for with_checkpoint_written in [false, true] {
        let store = Store::open(dir.path(), strict()).unwrap();
        assert_eq!(store.last_seq(), 13);
        let history = store.history("contact_1").unwrap();
        let types: Vec<&str> = history.iter().map(|e| e.event_type.as_str()).collect();
        assert_eq!(types, ["Contact.Created", "Contact.Qualified", "Contact.Updated", "Contact.Churned"]);
        assert_eq!(store.get("contact_1").unwrap().unwrap().state["stage"], "Churned");
        assert_eq!(*store.get("contact_3").unwrap().unwrap().state, object(json!({"name": "Carol"})));
        assert!(!store.get("deal_1").unwrap().unwrap().deleted);
        let before: Vec<_> = store.events(&EventQuery::new().before(at(11)).unwrap()).unwrap();
        assert_eq!(before.len(), 10);
        if !with_checkpoint_written {
            assert_eq!(store.checkpoint().unwrap(), Some(13));
        }
    }
    let store = Store::open(dir.path(), strict()).unwrap();
    assert_fixture_content(&store);
}
