//! Undo and redo of one event and of atomic batches: one test per rule of the compensation
//! mapping and of the checks, with the exact wording of every refusal.

use std::sync::{Arc, Barrier};

use serde_json::{Value, json};
use strata::{Error, Event, NewEvent, Options, Store, UndoCheck};

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, Options::default()).unwrap()
}

fn state(store: &Store, id: &str) -> Value {
    Value::Object(Arc::unwrap_or_clone(store.get(id).unwrap().unwrap().state))
}

fn refusal(store: &Store, event_id: &str) -> String {
    let check = store.can_undo(event_id).unwrap();
    assert!(!check.can_undo, "expected a refusal for {event_id}");
    let reason = check.reason.expect("a refusal has a reason");
    match store.undo(event_id) {
        Err(Error::CannotUndo { reason: undo_reason }) => assert_eq!(undo_reason, reason),
        other => panic!("undo of {event_id} should be refused with {reason:?}, got {other:?}"),
    }
    reason
}

fn describe(e: &Event) -> String {
    format!("{:?} ({}, version {})", e.id, e.event_type, e.version)
}

#[test]
fn undo_of_create_soft_deletes_and_keeps_the_fields() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let created = store.append(NewEvent::create("Transaction", "tx_1", json!({"amount": 42, "account": "acc_1"}))).unwrap();
    let undo = store.undo(&created.id).unwrap();
    assert_eq!((undo.event_type.as_str(), undo.version, undo.data.clone()), ("Transaction.Deleted", 2, json!({})));
    let tx = store.get("tx_1").unwrap().unwrap();
    assert!(tx.deleted);
    assert_eq!(Value::Object(Arc::unwrap_or_clone(tx.state)), json!({"amount": 42, "account": "acc_1"}));
}

#[test]
fn undo_of_update_restores_exactly_the_fields_it_changed() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(NewEvent::create("Contact", "c1", json!({"name": "Alice", "stage": "Lead", "tmp": 1}))).unwrap();
    let update = store.append(NewEvent::update("c1", json!({"stage": "Won", "tmp": null, "added": true, "name": "Alice"}))).unwrap();
    // A later change to a field the update did not touch stays.
    store.append(NewEvent::update("c1", json!({"email": "a@x.io"}))).unwrap();
    let undo = store.undo(&update.id).unwrap();
    assert_eq!(undo.event_type, "Contact.Updated");
    assert_eq!(undo.data, json!({"stage": "Lead", "tmp": 1, "added": null}));
    assert_eq!(state(&store, "c1"), json!({"name": "Alice", "stage": "Lead", "tmp": 1, "email": "a@x.io"}));
}

#[test]
fn undo_of_a_custom_verb_is_an_update() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(NewEvent::create("Contact", "c1", json!({"stage": "Lead"}))).unwrap();
    let qualified = store.append(NewEvent::update("c1", json!({"stage": "Qualified"})).verb("Qualified")).unwrap();
    let undo = store.undo(&qualified.id).unwrap();
    assert_eq!(undo.event_type, "Contact.Updated");
    assert_eq!(undo.metadata, json!({"undoOf": qualified.id, "undoType": "Contact.Qualified"}));
    assert_eq!(state(&store, "c1"), json!({"stage": "Lead"}));
}

#[test]
fn undo_of_delete_restores_and_undo_of_restore_deletes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(NewEvent::create("Contact", "c1", json!({"name": "Alice"}))).unwrap();
    let deleted = store.append(NewEvent::delete("c1")).unwrap();
    let undo = store.undo(&deleted.id).unwrap();
    assert_eq!(undo.event_type, "Contact.Restored");
    assert!(!store.get("c1").unwrap().unwrap().deleted);

    store.append(NewEvent::delete("c1")).unwrap();
    let restored = store.append(NewEvent::restore("c1")).unwrap();
    let undo = store.undo(&restored.id).unwrap();
    assert_eq!(undo.event_type, "Contact.Deleted");
    let c1 = store.get("c1").unwrap().unwrap();
    assert!(c1.deleted);
    assert_eq!(Value::Object(Arc::unwrap_or_clone(c1.state)), json!({"name": "Alice"}));
}

#[test]
fn undo_of_a_rollback_returns_to_the_state_before_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let created = store.append(NewEvent::create("Contact", "c1", json!({"stage": "Lead"}))).unwrap();
    store.append(NewEvent::update("c1", json!({"stage": "Won", "amount": 10}))).unwrap();
    store.append(NewEvent::delete("c1")).unwrap();
    let before = store.get("c1").unwrap().unwrap();
    let rollback = store.rollback("c1", created.timestamp).unwrap();
    let rollback = rollback.event().unwrap().clone();
    assert_eq!(rollback.event_type, "Contact.Restored");
    let undo = store.undo(&rollback.id).unwrap();
    assert_eq!(undo.event_type, "Contact.Deleted");
    assert_eq!(undo.metadata, json!({"undoOf": rollback.id, "undoType": "Contact.Restored"}));
    let after = store.get("c1").unwrap().unwrap();
    assert_eq!((after.state, after.deleted), (before.state, before.deleted));
}

#[test]
fn redo_chain_undo_redo_undo_again() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(NewEvent::create("Contact", "c1", json!({"stage": "Lead"}))).unwrap();
    let won = store.append(NewEvent::update("c1", json!({"stage": "Won", "amount": 5})).verb("Won")).unwrap();

    let undo = store.undo(&won.id).unwrap();
    assert_eq!(state(&store, "c1"), json!({"stage": "Lead"}));
    let redo = store.undo(&undo.id).unwrap();
    assert_eq!(redo.metadata, json!({"undoOf": undo.id, "undoType": "Contact.Updated"}));
    assert_eq!(state(&store, "c1"), json!({"stage": "Won", "amount": 5}));
    let undo_again = store.undo(&redo.id).unwrap();
    assert_eq!(undo_again.metadata["undoOf"], redo.id.as_str());
    assert_eq!(state(&store, "c1"), json!({"stage": "Lead"}));
    // And once more: the chain can go on.
    store.undo(&undo_again.id).unwrap();
    assert_eq!(state(&store, "c1"), json!({"stage": "Won", "amount": 5}));
    assert_eq!(store.get("c1").unwrap().unwrap().version, 6);
}

#[test]
fn redo_of_an_undone_create_restores_the_entity() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let created = store.append(NewEvent::create("Contact", "c1", json!({"name": "Alice"}))).unwrap();
    let undo = store.undo(&created.id).unwrap();
    let redo = store.undo(&undo.id).unwrap();
    assert_eq!(redo.event_type, "Contact.Restored");
    let c1 = store.get("c1").unwrap().unwrap();
    assert!(!c1.deleted);
    assert_eq!(Value::Object(Arc::unwrap_or_clone(c1.state)), json!({"name": "Alice"}));
}

#[test]
fn every_compensating_event_links_to_what_it_reverses() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let created = store.append(NewEvent::create("Deal", "d1", json!({"amount": 1})).id("req-1")).unwrap();
    let undo = store.undo_by("req-1", "agent_9").unwrap();
    assert_eq!(undo.metadata, json!({"undoOf": "req-1", "undoType": "Deal.Created"}));
    assert_eq!(undo.actor.as_deref(), Some("agent_9"));
    assert_eq!(undo.store, store.store_id());
    assert_eq!(store.event(&undo.id).unwrap(), Some(undo.clone()));
    assert_eq!(created.entity, undo.entity);
}

#[test]
fn refusal_when_the_event_does_not_exist() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(NewEvent::create("Contact", "c1", json!({}))).unwrap();
    assert_eq!(refusal(&store, "evt_missing"), "event \"evt_missing\" does not exist");
    let future = store.store_id().event_id(99);
    assert_eq!(refusal(&store, &future), format!("event {future:?} does not exist"));
}

#[test]
fn no_event_is_undone_twice_and_the_reason_names_the_undoing_event() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(NewEvent::create("Contact", "c1", json!({"stage": "Lead"}))).unwrap();
    let update = store.append(NewEvent::update("c1", json!({"stage": "Won"}))).unwrap();
    let undo = store.undo(&update.id).unwrap();
    let want = format!("event {:?} was already undone by event {:?} (Contact.Updated, version 3)", update.id, undo.id);
    assert_eq!(refusal(&store, &update.id), want);
    // Even after a redo put the effect back, the original stays undone: undo the redo instead.
    let redo = store.undo(&undo.id).unwrap();
    assert_eq!(refusal(&store, &update.id), want);
    assert_eq!(refusal(&store, &undo.id), format!("event {:?} was already undone by event {}", undo.id, describe(&redo)));
    assert_eq!(store.history("c1").unwrap().len(), 4);
}

#[test]
fn refusal_when_the_entity_was_deleted_since() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(NewEvent::create("Contact", "c1", json!({"stage": "Lead"}))).unwrap();
    let update = store.append(NewEvent::update("c1", json!({"stage": "Won"}))).unwrap();
    let deleted = store.append(NewEvent::delete("c1")).unwrap();
    let want = format!("entity \"c1\" has been deleted since event {:?}: later event {} deleted it", update.id, describe(&deleted));
    assert_eq!(refusal(&store, &update.id), want);
}

#[test]
fn refusal_when_a_field_changed_since_names_the_field_and_the_latest_event_that_changed_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(NewEvent::create("Contact", "c1", json!({"stage": "Lead"}))).unwrap();
    let qualified = store.append(NewEvent::update("c1", json!({"stage": "Qualified"})).verb("Qualified")).unwrap();
    store.append(NewEvent::update("c1", json!({"stage": "Won"})).verb("Won")).unwrap();
    store.append(NewEvent::update("c1", json!({"other": 1}))).unwrap();
    let lost = store.append(NewEvent::update("c1", json!({"stage": "Lost"})).verb("Lost")).unwrap();
    assert_eq!(
        refusal(&store, &qualified.id),
        format!("field \"stage\" of \"c1\" has changed since event {:?}: later event {} changed it", qualified.id, describe(&lost))
    );
}

#[test]
fn refusal_of_a_create_whose_fields_were_changed_since() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let created = store.append(NewEvent::create("Contact", "c1", json!({"name": "Alice"}))).unwrap();
    let renamed = store.append(NewEvent::update("c1", json!({"name": "Alicia"}))).unwrap();
    assert_eq!(
        refusal(&store, &created.id),
        format!("field \"name\" of \"c1\" has changed since event {:?}: later event {} changed it", created.id, describe(&renamed))
    );
    // Undo the later change first, then the create goes through.
    store.undo(&renamed.id).unwrap();
    assert!(store.undo(&created.id).is_ok());
}

#[test]
fn refusal_when_a_deleted_entity_was_restored_since() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(NewEvent::create("Contact", "c1", json!({}))).unwrap();
    let deleted = store.append(NewEvent::delete("c1")).unwrap();
    let restored = store.append(NewEvent::restore("c1")).unwrap();
    assert_eq!(
        refusal(&store, &deleted.id),
        format!("entity \"c1\" has been restored since event {:?}: later event {} restored it", deleted.id, describe(&restored))
    );
}

#[test]
fn refusal_when_a_null_created_value_cannot_be_written_back() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(NewEvent::create("Contact", "c1", json!({"email": null}))).unwrap();
    let update = store.append(NewEvent::update("c1", json!({"email": "a@x.io"}))).unwrap();
    assert_eq!(
        refusal(&store, &update.id),
        format!("field \"email\" of \"c1\" held null before event {:?}, which a merge patch cannot write back", update.id)
    );
}

#[test]
fn checks_run_in_order_already_undone_before_entity_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(NewEvent::create("Contact", "c1", json!({"stage": "Lead"}))).unwrap();
    let update = store.append(NewEvent::update("c1", json!({"stage": "Won"}))).unwrap();
    let undo = store.undo(&update.id).unwrap();
    store.append(NewEvent::update("c1", json!({"stage": "Lost"}))).unwrap();
    store.append(NewEvent::delete("c1")).unwrap();
    // Already undone (check 3) wins over deleted (check 4) and changed fields (check 5).
    assert!(refusal(&store, &update.id).starts_with(&format!("event {:?} was already undone by event {:?}", update.id, undo.id)));
    // Deleted (check 4) wins over changed fields (check 5).
    assert!(refusal(&store, &undo.id).starts_with("entity \"c1\" has been deleted since event"));
}

#[test]
fn nested_fields_are_compared_leaf_by_leaf() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(NewEvent::create("Contact", "c1", json!({"address": {"city": "Paris", "zip": "75001"}}))).unwrap();
    let zip = store.append(NewEvent::update("c1", json!({"address": {"zip": "75002", "floor": 3}}))).unwrap();
    let city = store.append(NewEvent::update("c1", json!({"address": {"city": "Lyon"}}))).unwrap();
    // The zip change did not touch address.city, so the later city change does not block it.
    let undo = store.undo(&zip.id).unwrap();
    assert_eq!(undo.data, json!({"address": {"zip": "75001", "floor": null}}));
    assert_eq!(state(&store, "c1"), json!({"address": {"city": "Lyon", "zip": "75001"}}));
    // A patch that created a whole object changed that field as a whole.
    let add = store.append(NewEvent::update("c1", json!({"billing": {"vat": "FR1"}}))).unwrap();
    let more = store.append(NewEvent::update("c1", json!({"billing": {"iban": "FR76"}}))).unwrap();
    assert_eq!(
        refusal(&store, &add.id),
        format!("field \"billing\" of \"c1\" has changed since event {:?}: later event {} changed it", add.id, describe(&more))
    );
    let _ = city;
}

#[test]
fn a_no_op_update_can_be_undone_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(NewEvent::create("Contact", "c1", json!({"stage": "Lead"}))).unwrap();
    let same = store.append(NewEvent::update("c1", json!({"stage": "Lead"}))).unwrap();
    store.append(NewEvent::update("c1", json!({"stage": "Won"}))).unwrap();
    let undo = store.undo(&same.id).unwrap();
    assert_eq!(undo.data, json!({}));
    assert_eq!(state(&store, "c1"), json!({"stage": "Won"}));
}

#[test]
fn undo_state_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let (update, undo) = {
        let store = open(dir.path());
        store.append(NewEvent::create("Contact", "c1", json!({"stage": "Lead"}))).unwrap();
        let update = store.append(NewEvent::update("c1", json!({"stage": "Won"}))).unwrap();
        let undo = store.undo(&update.id).unwrap();
        (update, undo)
    };
    let store = open(dir.path());
    assert_eq!(
        refusal(&store, &update.id),
        format!("event {:?} was already undone by event {:?} (Contact.Updated, version 3)", update.id, undo.id)
    );
    let redo = store.undo(&undo.id).unwrap();
    assert_eq!(state(&store, "c1"), json!({"stage": "Won"}));
    drop(store);
    let store = open(dir.path());
    assert_eq!(refusal(&store, &undo.id), format!("event {:?} was already undone by event {}", undo.id, describe(&redo)));
    store.undo(&redo.id).unwrap();
    assert_eq!(state(&store, "c1"), json!({"stage": "Lead"}));
}

#[test]
fn concurrent_undos_of_one_event_write_exactly_one_compensation() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    store.append(NewEvent::create("Contact", "c1", json!({"n": 0}))).unwrap();
    let update = store.append(NewEvent::update("c1", json!({"n": 1}))).unwrap();
    let threads = 4;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (store, barrier, id) = (store.clone(), barrier.clone(), update.id.clone());
            std::thread::spawn(move || {
                barrier.wait();
                store.undo(&id)
            })
        })
        .collect();
    let outcomes: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    let done: Vec<&Event> = outcomes.iter().filter_map(|o| o.as_ref().ok()).collect();
    assert_eq!(done.len(), 1, "{outcomes:?}");
    for outcome in &outcomes {
        if let Err(e) = outcome {
            let Error::CannotUndo { reason } = e else { panic!("unexpected error {e:?}") };
            assert_eq!(reason, &format!("event {:?} was already undone by event {}", update.id, describe(done[0])));
        }
    }
    assert_eq!(store.history("c1").unwrap().len(), 3);
}

#[test]
fn a_transfer_is_undone_atomically_on_both_accounts() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(NewEvent::create("Account", "acc_a", json!({"balance": 100}))).unwrap();
    store.append(NewEvent::create("Account", "acc_b", json!({"balance": 0}))).unwrap();
    let transfer = store
        .append_batch(vec![
            NewEvent::create("Transfer", "tr_1", json!({"from": "acc_a", "to": "acc_b", "amount": 30})),
            NewEvent::update("acc_a", json!({"balance": 70})).verb("Debited"),
            NewEvent::update("acc_b", json!({"balance": 30})).verb("Credited"),
        ])
        .unwrap();
    let batch = transfer[0].batch;
    assert_eq!(store.can_undo_batch(batch).unwrap(), UndoCheck { can_undo: true, reason: None });
    let undone = store.undo_batch(batch).unwrap();
    // Last event first, all in one new batch.
    let entities: Vec<&str> = undone.iter().map(|e| e.entity.as_str()).collect();
    assert_eq!(entities, ["acc_b", "acc_a", "tr_1"]);
    assert!(undone.iter().all(|e| e.batch == undone[0].batch && e.batch != batch));
    assert_eq!(undone[2].metadata, json!({"undoOf": transfer[0].id, "undoType": "Transfer.Created"}));
    assert_eq!(state(&store, "acc_a")["balance"], 100);
    assert_eq!(state(&store, "acc_b")["balance"], 0);
    assert!(store.get("tr_1").unwrap().unwrap().deleted);

    // The batch cannot be undone twice, and undoing the undo batch redoes the transfer.
    let reason = store.can_undo_batch(batch).unwrap().reason.unwrap();
    assert_eq!(reason, format!("event {:?} was already undone by event {}", transfer[0].id, describe(&undone[2])));
    assert!(matches!(store.undo_batch(batch), Err(Error::CannotUndo { reason: r }) if r == reason));
    store.undo_batch(undone[0].batch).unwrap();
    assert_eq!(state(&store, "acc_a")["balance"], 70);
    assert_eq!(state(&store, "acc_b")["balance"], 30);
    assert!(!store.get("tr_1").unwrap().unwrap().deleted);
}

#[test]
fn a_batch_that_changes_one_entity_twice_is_undone_in_reverse_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let batch = store
        .append_batch(vec![
            NewEvent::create("Counter", "k", json!({"n": 0})),
            NewEvent::update("k", json!({"n": 1, "a": true})),
            NewEvent::update("k", json!({"n": 2, "a": null, "b": true})),
        ])
        .unwrap();
    store.append(NewEvent::create("Counter", "other", json!({}))).unwrap();
    let undone = store.undo_batch(batch[0].batch).unwrap();
    let versions: Vec<u64> = undone.iter().map(|e| e.version).collect();
    assert_eq!(versions, [4, 5, 6]);
    let k = store.get("k").unwrap().unwrap();
    assert!(k.deleted);
    assert_eq!(Value::Object(Arc::unwrap_or_clone(k.state)), json!({"n": 0}));
}

#[test]
fn a_refused_batch_undo_writes_nothing_and_names_the_first_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(NewEvent::create("Account", "acc_a", json!({"balance": 100}))).unwrap();
    store.append(NewEvent::create("Account", "acc_b", json!({"balance": 0}))).unwrap();
    let transfer = store
        .append_batch(vec![NewEvent::update("acc_a", json!({"balance": 70})), NewEvent::update("acc_b", json!({"balance": 30}))])
        .unwrap();
    let spend = store.append(NewEvent::update("acc_b", json!({"balance": 10}))).unwrap();
    let last_seq = store.last_seq();
    let want =
        format!("field \"balance\" of \"acc_b\" has changed since event {:?}: later event {} changed it", transfer[1].id, describe(&spend));
    assert_eq!(store.can_undo_batch(transfer[0].batch).unwrap().reason.as_deref(), Some(want.as_str()));
    assert!(matches!(store.undo_batch(transfer[0].batch), Err(Error::CannotUndo { reason }) if reason == want));
    assert_eq!(store.last_seq(), last_seq);
    assert_eq!(state(&store, "acc_a")["balance"], 70);

    // One side undone on its own: the batch can no longer be undone as a whole.
    store.undo(&spend.id).unwrap();
    let single = store.undo(&transfer[0].id).unwrap();
    assert_eq!(
        store.can_undo_batch(transfer[0].batch).unwrap().reason,
        Some(format!("event {:?} was already undone by event {}", transfer[0].id, describe(&single)))
    );
}

#[test]
fn unknown_batches_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let batch = store.append_batch(vec![NewEvent::create("C", "a", json!({})), NewEvent::create("C", "b", json!({}))]).unwrap();
    assert_eq!(store.can_undo_batch(0).unwrap().reason.as_deref(), Some("batch 0 does not exist"));
    assert_eq!(store.can_undo_batch(99).unwrap().reason.as_deref(), Some("batch 99 does not exist"));
    // The second event's seq is inside the batch, not the start of one.
    assert_eq!(store.can_undo_batch(batch[1].seq).unwrap().reason, Some(format!("batch {} does not exist", batch[1].seq)));
    assert!(matches!(store.undo_batch(99), Err(Error::CannotUndo { reason }) if reason == "batch 99 does not exist"));
    let single = store.append(NewEvent::update("a", json!({"x": 1}))).unwrap();
    assert!(store.can_undo_batch(single.batch).unwrap().can_undo);
}

#[test]
fn undo_batch_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let batch = {
        let store = open(dir.path());
        let evs = store.append_batch(vec![NewEvent::create("C", "a", json!({"v": 1})), NewEvent::create("C", "b", json!({}))]).unwrap();
        store.undo_batch(evs[0].batch).unwrap();
        evs[0].batch
    };
    let store = open(dir.path());
    assert!(store.can_undo_batch(batch).unwrap().reason.unwrap().contains("was already undone by event"));
    assert!(store.get("a").unwrap().unwrap().deleted && store.get("b").unwrap().unwrap().deleted);
}

#[test]
fn undo_links_survive_a_checkpoint_and_the_log_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let (update, undo, redo) = {
        let store = open(dir.path());
        store.append(NewEvent::create("Contact", "c1", json!({"stage": "Lead"}))).unwrap();
        let update = store.append(NewEvent::update("c1", json!({"stage": "Won"}))).unwrap();
        let undo = store.undo(&update.id).unwrap();
        // The first link is in the checkpoint, the second only in the log after it.
        assert_eq!(store.checkpoint().unwrap(), Some(undo.seq));
        let redo = store.undo(&undo.id).unwrap();
        (update, undo, redo)
    };
    let has_checkpoint = std::fs::read_dir(dir.path()).unwrap().any(|e| e.unwrap().path().extension().is_some_and(|x| x == "ckpt"));
    assert!(has_checkpoint);
    let store = open(dir.path());
    assert_eq!(
        refusal(&store, &update.id),
        format!("event {:?} was already undone by event {:?} (Contact.Updated, version 3)", update.id, undo.id)
    );
    assert_eq!(refusal(&store, &undo.id), format!("event {:?} was already undone by event {}", undo.id, describe(&redo)));
    store.undo(&redo.id).unwrap();
    assert_eq!(state(&store, "c1"), json!({"stage": "Lead"}));
    // A checkpoint that covers everything: the next open replays nothing.
    store.checkpoint().unwrap();
    drop(store);
    let store = open(dir.path());
    assert!(refusal(&store, &redo.id).starts_with(&format!("event {:?} was already undone by event", redo.id)));
}
