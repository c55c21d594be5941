//! Before-append validators: they run inside the write path for every event of their kind
//! (appends, batches, rollback, undo), see the entity before and after, and a rejection
//! writes nothing of its batch.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Barrier, Mutex};

use serde_json::{Value, json};
use strata::{Entity, Error, NewEvent, Options, Store};

/// A field's value before an event (none for a create) and after it.
type Transition = (Option<Value>, Value);

fn open(dir: &std::path::Path) -> Store {
    Store::open(dir, Options::default()).unwrap()
}

/// The ledger rule of the tour: an account's balance never goes below zero.
fn non_negative_balance(_before: Option<&Entity>, _event: &strata::Event, after: &Entity) -> Result<(), String> {
    match after.state.get("balance").and_then(Value::as_i64) {
        Some(balance) if balance >= 0 => Ok(()),
        Some(balance) => Err(format!("balance of {} would be {balance}", after.id)),
        None => Err(format!("{} has no integer balance", after.id)),
    }
}

fn ledger(dir: &std::path::Path) -> Store {
    let store = open(dir);
    store.add_validator("Account", non_negative_balance);
    store.append(NewEvent::create("Account", "acc_a", json!({"balance": 100}))).unwrap();
    store.append(NewEvent::create("Account", "acc_b", json!({"balance": 0}))).unwrap();
    store
}

fn balance(store: &Store, id: &str) -> i64 {
    store.get(id).unwrap().unwrap().state["balance"].as_i64().unwrap()
}

fn transfer(from: (&str, i64), to: (&str, i64)) -> Vec<NewEvent> {
    vec![
        NewEvent::update(from.0, json!({"balance": from.1})).verb("Debited"),
        NewEvent::update(to.0, json!({"balance": to.1})).verb("Credited"),
    ]
}

#[test]
fn a_rejected_append_names_the_entity_event_type_and_reason_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = ledger(dir.path());
    let err = store.append(NewEvent::update("acc_a", json!({"balance": -1})).verb("Debited")).unwrap_err();
    match &err {
        Error::Rejected { entity, event_type, reason } => {
            assert_eq!(
                (entity.as_str(), event_type.as_str(), reason.as_str()),
                ("acc_a", "Account.Debited", "balance of acc_a would be -1")
            );
        }
        other => panic!("expected Rejected, got {other:?}"),
    }
    assert_eq!(err.to_string(), "rejected Account.Debited on acc_a: balance of acc_a would be -1");
    assert_eq!(store.last_seq(), 2);
    assert_eq!(balance(&store, "acc_a"), 100);
    // Creates are checked too.
    assert!(matches!(store.append(NewEvent::create("Account", "acc_c", json!({"balance": -5}))), Err(Error::Rejected { .. })));
    assert_eq!(store.get("acc_c").unwrap(), None);
}

#[test]
fn a_rejection_in_a_batch_writes_nothing_of_the_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = ledger(dir.path());
    // The second event is the bad one: the first, valid on its own, is not written either.
    let err = store.append_batch(transfer(("acc_b", -30), ("acc_a", 130)).into_iter().rev().collect()).unwrap_err();
    assert!(matches!(err, Error::Rejected { ref entity, .. } if entity == "acc_b"), "{err:?}");
    assert_eq!((balance(&store, "acc_a"), balance(&store, "acc_b")), (100, 0));
    assert_eq!(store.last_seq(), 2);
    assert_eq!(store.history("acc_a").unwrap().len(), 1);
    // And the store keeps working, also after reopening.
    store.append_batch(transfer(("acc_a", 70), ("acc_b", 30))).unwrap();
    drop(store);
    let store = open(dir.path());
    assert_eq!((balance(&store, "acc_a"), balance(&store, "acc_b")), (70, 30));
    assert_eq!(store.last_seq(), 4);
}

#[test]
fn validators_see_the_earlier_events_of_their_batch() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    // (n before, n after) for every call.
    let seen: Arc<Mutex<Vec<Transition>>> = Arc::default();
    let log = seen.clone();
    store.add_validator("Counter", move |before, _event, after| {
        log.lock().unwrap().push((before.map(|b| b.state["n"].clone()), after.state["n"].clone()));
        Ok(())
    });
    store
        .append_batch(vec![
            NewEvent::create("Counter", "k", json!({"n": 0})),
            NewEvent::update("k", json!({"n": 1})),
            NewEvent::update("k", json!({"n": 2})),
        ])
        .unwrap();
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen, [(None, json!(0)), (Some(json!(0)), json!(1)), (Some(json!(1)), json!(2))]);
}

#[test]
fn validators_run_only_for_their_kind() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let calls = Arc::new(AtomicUsize::new(0));
    let counter = calls.clone();
    store.add_validator("Account", move |_, _, _| {
        counter.fetch_add(1, Ordering::SeqCst);
        Err("no accounts".into())
    });
    store.append(NewEvent::create("Contact", "c1", json!({}))).unwrap();
    store.append(NewEvent::update("c1", json!({"x": 1}))).unwrap();
    assert_eq!(calls.load(Ordering::SeqCst), 0);
    assert!(store.append(NewEvent::create("Account", "a1", json!({}))).is_err());
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[test]
fn every_validator_of_a_kind_runs_and_the_first_rejection_wins() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.add_validator("Deal", |_, _, after| if after.state.contains_key("amount") { Ok(()) } else { Err("amount is required".into()) });
    store.add_validator("Deal", |_, event, _| if event.actor.is_some() { Ok(()) } else { Err("an actor is required".into()) });
    let no_amount = store.append(NewEvent::create("Deal", "d1", json!({}))).unwrap_err();
    assert!(matches!(no_amount, Error::Rejected { reason, .. } if reason == "amount is required"));
    let no_actor = store.append(NewEvent::create("Deal", "d1", json!({"amount": 1}))).unwrap_err();
    assert!(matches!(no_actor, Error::Rejected { reason, .. } if reason == "an actor is required"));
    store.append(NewEvent::create("Deal", "d1", json!({"amount": 1})).actor("agent_1")).unwrap();
}

#[test]
fn validators_run_for_rollback() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    let created = store.append(NewEvent::create("Account", "acc_a", json!({"balance": 100, "frozen": false}))).unwrap();
    store.append(NewEvent::update("acc_a", json!({"frozen": true}))).unwrap();
    // Once frozen, an account's fields may not change except to unfreeze it explicitly.
    store.add_validator("Account", |before, event, _after| match before {
        Some(b) if b.state["frozen"] == true && event.metadata.get("rollbackTo").is_some() => {
            Err("frozen accounts cannot be rolled back".into())
        }
        _ => Ok(()),
    });
    let err = store.rollback("acc_a", created.timestamp).unwrap_err();
    assert_eq!(err.to_string(), "rejected Account.Updated on acc_a: frozen accounts cannot be rolled back");
    assert_eq!(store.last_seq(), 2);
}

#[test]
fn validators_run_for_undo_and_can_undo_reports_their_reason() {
    let dir = tempfile::tempdir().unwrap();
    let store = ledger(dir.path());
    let deposit = store.append(NewEvent::update("acc_b", json!({"balance": 50})).verb("Deposited")).unwrap();
    let withdrawal = store.append(NewEvent::update("acc_b", json!({"balance": 20})).verb("Withdrew")).unwrap();
    // Undo the withdrawal (back to 50); from now on, debits over 40 need approval, so the
    // undo of the deposit (50 -> 0) is rejected by the validator, not by the state checks.
    store.undo(&withdrawal.id).unwrap();
    store.add_validator("Account", |before, _event, after| {
        let was = before.and_then(|b| b.state["balance"].as_i64()).unwrap_or(0);
        let now = after.state["balance"].as_i64().unwrap_or(0);
        if was - now > 40 { Err(format!("a debit of {} needs approval", was - now)) } else { Ok(()) }
    });
    let check = store.can_undo(&deposit.id).unwrap();
    let want = "rejected Account.Updated on acc_b: a debit of 50 needs approval";
    assert_eq!(check.reason.as_deref(), Some(want));
    let last_seq = store.last_seq();
    let err = store.undo(&deposit.id).unwrap_err();
    assert!(matches!(err, Error::Rejected { .. }));
    assert_eq!(err.to_string(), want);
    assert_eq!(store.last_seq(), last_seq);
}

#[test]
fn validators_run_for_undo_batch_and_a_rejection_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    store.append(NewEvent::create("Account", "acc_a", json!({"balance": 100}))).unwrap();
    store.append(NewEvent::create("Account", "acc_b", json!({"balance": 0}))).unwrap();
    let tr = store.append_batch(transfer(("acc_a", 70), ("acc_b", 30))).unwrap();
    // From now on, acc_a may only go down: undoing the transfer would credit it back.
    store.add_validator("Account", |before, _event, after| {
        let (was, now) = (before.map_or(0, |b| b.state["balance"].as_i64().unwrap_or(0)), after.state["balance"].as_i64().unwrap_or(0));
        if after.id == "acc_a" && now > was { Err("acc_a is closing".into()) } else { Ok(()) }
    });
    let want = "rejected Account.Updated on acc_a: acc_a is closing";
    assert_eq!(store.can_undo_batch(tr[0].batch).unwrap().reason.as_deref(), Some(want));
    let err = store.undo_batch(tr[0].batch).unwrap_err();
    assert_eq!(err.to_string(), want);
    // acc_b's compensation came first in the undo batch and was valid: it was not written.
    assert_eq!((balance(&store, "acc_a"), balance(&store, "acc_b")), (70, 30));
    assert_eq!(store.last_seq(), 4);
}

#[test]
fn the_ledger_keeps_balances_non_negative_through_transfers_and_undo() {
    let dir = tempfile::tempdir().unwrap();
    let store = ledger(dir.path());
    let first = store.append_batch(transfer(("acc_a", 40), ("acc_b", 60))).unwrap();
    // An overdraft is rejected as a whole.
    assert!(matches!(store.append_batch(transfer(("acc_a", -20), ("acc_b", 120))), Err(Error::Rejected { .. })));
    // acc_b spends the money; undoing the deposit into acc_b is refused by the state check,
    // and a rollback of acc_b to before the transfer is fine (0 is allowed).
    store.append(NewEvent::update("acc_b", json!({"balance": 10})).verb("Spent")).unwrap();
    assert!(!store.can_undo_batch(first[0].batch).unwrap().can_undo);
    store.rollback("acc_b", strata::Timestamp::from_micros(first[0].timestamp.as_micros() - 1)).unwrap();
    assert_eq!(balance(&store, "acc_b"), 0);
    for id in ["acc_a", "acc_b"] {
        for ev in store.history(id).unwrap() {
            let b = store.get_version(id, ev.version).unwrap().unwrap().state["balance"].as_i64().unwrap();
            assert!(b >= 0, "{id} v{}: {b}", ev.version);
        }
    }
}

#[test]
fn a_rejected_batch_does_not_affect_batches_committed_with_it() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open(dir.path()));
    store.add_validator("Item", |_, _, after| if after.state["ok"] == true { Ok(()) } else { Err("not ok".into()) });
    let threads = 8;
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let (store, barrier) = (store.clone(), barrier.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let ok = i % 2 == 0;
                store.append_batch(vec![
                    NewEvent::create("Item", format!("good_{i}"), json!({"ok": true})),
                    NewEvent::create("Item", format!("item_{i}"), json!({"ok": ok})),
                ])
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let outcome = h.join().unwrap();
        assert_eq!(outcome.is_ok(), i % 2 == 0, "thread {i}: {outcome:?}");
        assert_eq!(store.get(&format!("good_{i}")).unwrap().is_some(), i % 2 == 0);
    }
    assert_eq!(store.last_seq(), threads as u64);
}
