//! Rollback of an entity to a point in time: one compensating event, or nothing.

use serde_json::{Value, json};
use std::sync::Arc;
use strata::{Error, NewEvent, Options, RollbackOutcome, Store, Timestamp};

const DAY_MICROS: i64 = 86_400_000_000;

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, Options::default()).unwrap()
}

fn state(store: &Store, id: &str) -> Value {
    Value::Object(Arc::unwrap_or_clone(store.get(id).unwrap().unwrap().state))
}

fn days_ago(now: Timestamp, days: i64) -> Timestamp {
    Timestamp::from_micros(now.as_micros() - days * DAY_MICROS)
}

#[test]
fn an_accidental_update_is_rolled_back_to_yesterday() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let now = Timestamp::now();
    store.append(NewEvent::create("Contact", "c1", json!({"name": "Alice", "stage": "Lead"})).timestamp(days_ago(now, 3))).unwrap();
    store.append(NewEvent::update("c1", json!({"stage": "Qualified"})).timestamp(days_ago(now, 2))).unwrap();
    // Today, an agent overwrites the contact by mistake.
    store.append(NewEvent::update("c1", json!({"name": "Bob", "stage": "Lost", "note": "oops"}))).unwrap();

    let yesterday = days_ago(now, 1);
    let outcome = store.rollback_by("c1", yesterday, "admin").unwrap();
    let RollbackOutcome::Appended(event) = outcome else { panic!("the rollback changed the state") };
    assert_eq!(event.event_type, "Contact.Updated");
    assert_eq!(event.version, 4);
    assert_eq!(event.actor.as_deref(), Some("admin"));
    assert_eq!(event.metadata, json!({"rollbackTo": yesterday.to_rfc3339()}));
    assert_eq!(event.data, json!({"name": "Alice", "stage": "Qualified", "note": null}));
    assert_eq!(state(&store, "c1"), json!({"name": "Alice", "stage": "Qualified"}));
    // The bad write is still in the history; the rollback is one more event.
    assert_eq!(store.history("c1").unwrap().len(), 4);
}

#[test]
fn rollback_takes_an_rfc3339_string() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(NewEvent::create("Contact", "c1", json!({"v": 1})).timestamp(Timestamp::parse("2026-01-15T12:00:00Z").unwrap())).unwrap();
    store.append(NewEvent::update("c1", json!({"v": 2})).timestamp(Timestamp::parse("2026-01-16T09:30:00Z").unwrap())).unwrap();
    let outcome = store.rollback("c1", "2026-01-15T15:00:00+00:00").unwrap();
    assert_eq!(outcome.event().unwrap().metadata["rollbackTo"], "2026-01-15T15:00:00Z");
    assert_eq!(state(&store, "c1"), json!({"v": 1}));
    assert!(matches!(store.rollback("c1", "yesterday"), Err(Error::InvalidInput { what: "timestamp", .. })));
}

#[test]
fn rollback_to_a_deleted_state_is_a_deleted_event_and_back_is_a_restored_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(NewEvent::create("Contact", "c1", json!({"stage": "Lead"}))).unwrap();
    let deleted = store.append(NewEvent::delete("c1")).unwrap();
    let restored = store.append(NewEvent::restore("c1")).unwrap();
    store.append(NewEvent::update("c1", json!({"stage": "Won"}))).unwrap();

    let outcome = store.rollback("c1", deleted.timestamp).unwrap();
    let event = outcome.event().unwrap();
    // The flag changes and a field too: one Deleted event carrying the patch.
    assert_eq!((event.event_type.as_str(), event.data.clone()), ("Contact.Deleted", json!({"stage": "Lead"})));
    let c1 = store.get("c1").unwrap().unwrap();
    assert!(c1.deleted);
    assert_eq!(Value::Object(Arc::unwrap_or_clone(c1.state)), json!({"stage": "Lead"}));

    let outcome = store.rollback("c1", restored.timestamp).unwrap();
    assert_eq!(outcome.event().unwrap().event_type, "Contact.Restored");
    assert!(!store.get("c1").unwrap().unwrap().deleted);
}

#[test]
fn rollback_to_before_creation_soft_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let created = store.append(NewEvent::create("Contact", "c1", json!({"name": "Alice"}))).unwrap();
    let before = Timestamp::from_micros(created.timestamp.as_micros() - 1);
    let outcome = store.rollback("c1", before).unwrap();
    let event = outcome.event().unwrap();
    assert_eq!((event.event_type.as_str(), event.version, event.data.clone()), ("Contact.Deleted", 2, json!({})));
    let c1 = store.get("c1").unwrap().unwrap();
    assert!(c1.deleted);
    assert_eq!(Value::Object(Arc::unwrap_or_clone(c1.state)), json!({"name": "Alice"}));
    // Again: already soft-deleted, nothing to do.
    assert_eq!(store.rollback("c1", before).unwrap(), RollbackOutcome::Unchanged);
}

#[test]
fn a_rollback_that_changes_nothing_appends_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let created = store.append(NewEvent::create("Contact", "c1", json!({"stage": "Lead"}))).unwrap();
    store.append(NewEvent::update("c1", json!({"stage": "Won"}))).unwrap();
    store.append(NewEvent::update("c1", json!({"stage": "Lead"}))).unwrap();
    let last_seq = store.last_seq();
    assert_eq!(store.rollback("c1", created.timestamp).unwrap(), RollbackOutcome::Unchanged);
    assert_eq!(store.rollback("c1", Timestamp::MAX).unwrap(), RollbackOutcome::Unchanged);
    assert_eq!(store.last_seq(), last_seq);
}

#[test]
fn rollback_of_an_unknown_entity_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    match store.rollback("nobody", Timestamp::now()) {
        Err(Error::NotFound { entity }) => assert_eq!(entity, "nobody"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(store.last_seq(), 0);
}

#[test]
fn rollback_of_nested_objects_reaches_the_past_state_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let created =
        store.append(NewEvent::create("Contact", "c1", json!({"address": {"city": "Paris", "zip": "75001"}, "tags": [1]}))).unwrap();
    store.append(NewEvent::update("c1", json!({"address": {"zip": null, "floor": 2}, "tags": [1, 2], "x": {"y": 1}}))).unwrap();
    store.append(NewEvent::update("c1", json!({"address": "moved"}))).unwrap();
    store.rollback("c1", created.timestamp).unwrap();
    assert_eq!(state(&store, "c1"), json!({"address": {"city": "Paris", "zip": "75001"}, "tags": [1]}));
    assert_eq!(store.get("c1").unwrap().unwrap().version, 4);
}

#[test]
fn rollback_to_a_state_holding_null_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let created = store.append(NewEvent::create("Contact", "c1", json!({"email": null}))).unwrap();
    store.append(NewEvent::update("c1", json!({"email": "a@x.io"}))).unwrap();
    match store.rollback("c1", created.timestamp) {
        Err(Error::InvalidInput { what: "rollback", reason }) => assert_eq!(
            reason,
            format!("the state of \"c1\" at {} holds null in field \"email\", which a merge patch cannot write back", created.timestamp)
        ),
        other => panic!("expected a refusal, got {other:?}"),
    }
    assert_eq!(store.last_seq(), 2);
}

#[test]
fn a_rollback_is_an_ordinary_event_that_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (created, rollback) = {
        let store = open(dir.path());
        let created = store.append(NewEvent::create("Contact", "c1", json!({"v": 1}))).unwrap();
        store.append(NewEvent::update("c1", json!({"v": 2}))).unwrap();
        let rollback = store.rollback("c1", created.timestamp).unwrap().event().unwrap().clone();
        (created, rollback)
    };
    let store = open(dir.path());
    assert_eq!(store.event(&rollback.id).unwrap(), Some(rollback.clone()));
    assert_eq!(rollback.store, store.store_id());
    assert_eq!(state(&store, "c1"), json!({"v": 1}));
    let rollbacks = store.events(&strata::EventQuery::new().entity("c1")).unwrap();
    assert_eq!(rollbacks.last().unwrap().metadata["rollbackTo"], created.timestamp.to_rfc3339());
}

#[test]
fn callers_cannot_forge_rollback_metadata() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(NewEvent::create("Contact", "c1", json!({}))).unwrap();
    for key in ["rollbackTo", "undoOf", "undoType"] {
        let forged = NewEvent::update("c1", json!({})).metadata(json!({key: "x"}));
        assert!(matches!(store.append(forged), Err(Error::InvalidInput { what: "metadata", .. })), "{key}");
    }
}
