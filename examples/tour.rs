//! A tour of strata: a small CRM (contacts and deals) told step by step.
//!
//! ```text
//! cargo run --release --example tour [STORE_DIR]     # default: target/tour-store
//! ```
//! The store is rebuilt from scratch on every run; the directory is printed at the start so
//! you can look inside it with `cargo run -p strata-dump -- segments target/tour-store`.

use std::path::PathBuf;

use serde_json::json;
use strata::{Entity, Error, Event, EventQuery, NewEvent, Options, Query, Store, Timestamp};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let dir = std::env::args().nth(1).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("target/tour-store"));
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    println!("strata tour: the store lives in {}\n", dir.display());
    let store = Store::open(&dir, Options::default())?;

    chapter("1. Every change is an event");
    // We date the story in January 2026 by supplying timestamps; without one, strata uses
    // the clock (and keeps timestamps increasing even if the clock steps back).
    let day = |d: u32, h: u32| Timestamp::parse(&format!("2026-01-{d:02}T{h:02}:00:00Z"));
    let alice = store.append(
        NewEvent::create("Contact", "contact_1", json!({"name": "Alice", "email": "alice@startup.io", "stage": "Lead"}))
            .actor("agent_1")
            .timestamp(day(14, 9)?),
    )?;
    show_event("created", &alice);
    let bob = store.append(
        NewEvent::create("Contact", "contact_2", json!({"name": "Bob", "email": "bob@corp.example", "stage": "Lead"}))
            .timestamp(day(14, 10)?),
    )?;
    show_event("created", &bob);
    let deal = store.append_batch(vec![
        NewEvent::create("Deal", "deal_1", json!({"title": "Startup plan", "amount": 12000, "contact": "contact_1"}))
            .actor("agent_1")
            .timestamp(day(15, 11)?),
        NewEvent::update("contact_1", json!({"stage": "Qualified"})).verb("Qualified").actor("agent_1").timestamp(day(15, 11)?),
    ])?;
    println!("  one atomic batch (id {}), one fsync:", deal[0].batch);
    for ev in &deal {
        show_event("  ", ev);
    }
    let update =
        store.append(NewEvent::update("deal_1", json!({"amount": 15000, "notes": "upsell"})).expect_version(1).timestamp(day(16, 9)?))?;
    show_event("updated (merge patch, expected version 1)", &update);
    match store.append(NewEvent::update("deal_1", json!({"amount": 1})).expect_version(1)) {
        Err(e) => println!("  a stale write is refused: {e}"),
        Ok(_) => println!("  unexpected: a stale write went through"),
    }
    let removed = store.append(NewEvent::delete("contact_2").actor("agent_2").timestamp(day(17, 9)?))?;
    show_event("deleted (soft)", &removed);
    show_entity("  contact_2 after the delete", &store.get("contact_2")?);
    let restored = store.append(NewEvent::restore("contact_2").actor("agent_2").timestamp(day(17, 10)?))?;
    show_event("restored", &restored);
    show_entity("  contact_2 now", &store.get("contact_2")?);

    chapter("2. The log answers questions");
    println!("  history of contact_1:");
    for ev in store.history("contact_1")? {
        show_event("   ", &ev);
    }
    println!("  every Deal.* event:");
    for ev in store.events(&EventQuery::new().event_type("Deal.*"))? {
        show_event("   ", &ev);
    }
    println!("  every *.Qualified event in January:");
    for ev in store.events(&EventQuery::new().event_type("*.Qualified").after(day(1, 0)?).before("2026-02-01T00:00:00Z")?)? {
        show_event("   ", &ev);
    }
    println!("  everything agent_2 did:");
    for ev in store.events(&EventQuery::new().actor("agent_2"))? {
        show_event("   ", &ev);
    }
    println!("  paging through the whole log, 3 events a page:");
    let mut cursor = 0;
    loop {
        let page = store.events(&EventQuery::new().after_seq(cursor).limit(3))?;
        let Some(last) = page.last() else { break };
        println!("    page: seqs {:?}", page.iter().map(|e| e.seq).collect::<Vec<_>>());
        cursor = last.seq;
    }

    chapter("3. Time travel");
    show_entity("  contact_1 as it was on January 15th, 10:00", &store.get_as_of("contact_1", "2026-01-15T10:00:00Z")?);
    show_entity("  contact_1 now", &store.get("contact_1")?);
    show_entity("  deal_1 at version 1", &store.get_version("deal_1", 1)?);
    let leads_then = store.find(&Query::kind("Contact").eq("stage", "Lead").as_of("2026-01-15T10:00:00Z"))?;
    println!("  leads as of January 15th, 10:00: {:?}", leads_then.iter().map(|e| &e.id).collect::<Vec<_>>());
    let leads_now = store.find(&Query::kind("Contact").eq("stage", "Lead"))?;
    println!("  leads now: {:?}", leads_now.iter().map(|e| &e.id).collect::<Vec<_>>());
    let big = store.find(&Query::kind("Deal").gte("amount", 10000))?;
    println!("  deals of 10,000 or more: {:?}", big.iter().map(|e| (&e.id, &e.state["amount"])).collect::<Vec<_>>());
    println!("  the whole store on January 17th, 09:30 (streamed):");
    for entity in store.state_at("2026-01-17T09:30:00Z")? {
        let e = entity?;
        println!("    {} {} v{}{} {}", e.kind, e.id, e.version, if e.deleted { " (deleted)" } else { "" }, json!(*e.state));
    }
    let covered = store.checkpoint()?;
    println!("  checkpoint written, covering seqs up to {covered:?}: the next open replays only what follows");

    chapter("4. Reopen: nothing acknowledged is lost");
    let last = store.last_seq();
    drop(store);
    let store = Store::open(&dir, Options::default())?;
    println!("  reopened: {} events, last seq {} (was {last})", store.stats().events, store.last_seq());
    show_entity("  contact_1 after reopen", &store.get("contact_1")?);

    chapter("5. Rollback, undo and redo: new events, never a rewrite");
    rollback_and_undo(&store)?;
    println!("\nLook inside: cargo run -p strata-dump -- records {}", dir.display());
    Ok(())
}

/// Rollback, undo and redo append compensating events, linked to what they reverse
/// (`metadata.rollbackTo`, `undoOf`, `undoType`) and auditable like any other.
fn rollback_and_undo(store: &Store) -> Result<(), Box<dyn std::error::Error>> {
    let day = |d: u32, h: u32| Timestamp::parse(&format!("2026-01-{d:02}T{h:02}:00:00Z"));

    // An accidental update on January 19th, rolled back to yesterday.
    let oops =
        store.append(NewEvent::update("deal_1", json!({"amount": 0, "notes": "wrong deal"})).actor("agent_3").timestamp(day(19, 9)?))?;
    show_event("accidental update", &oops);
    // The rollback, like every event from here on, is dated by the clock.
    let rollback = store.rollback_by("deal_1", day(18, 0)?, "agent_1")?;
    match rollback.event() {
        Some(ev) => show_event(&format!("rolled back to {}", ev.metadata["rollbackTo"]), ev),
        None => println!("  nothing to roll back"),
    }
    show_entity("  deal_1 now (its version went up, the bad write stays in the history)", &store.get("deal_1")?);

    // A ledger: the validator runs inside the write path for every Account event (appends,
    // batches, rollback, undo) before anything is written. It must be fast and must not call
    // back into the store.
    store.add_validator("Account", |_before: Option<&Entity>, _event: &Event, after: &Entity| match after.state["balance"].as_i64() {
        Some(balance) if balance >= 0 => Ok(()),
        Some(balance) => Err(format!("balance of {} would be {balance}", after.id)),
        None => Err(format!("{} needs an integer balance", after.id)),
    });
    store.append_batch(vec![
        NewEvent::create("Account", "acc_startup", json!({"owner": "contact_1", "balance": 100})),
        NewEvent::create("Account", "acc_corp", json!({"owner": "contact_2", "balance": 0})),
    ])?;
    let transfer = |amount: i64, from_balance: i64, to_balance: i64| {
        vec![
            NewEvent::update("acc_startup", json!({"balance": from_balance})).verb("Debited").metadata(json!({"amount": amount})),
            NewEvent::update("acc_corp", json!({"balance": to_balance})).verb("Credited").metadata(json!({"amount": amount})),
        ]
    };
    match store.append_batch(transfer(150, -50, 150)) {
        Err(e) => println!("  an overdraft is refused, and nothing of its batch is written: {e}"),
        Ok(_) => println!("  unexpected: an overdraft went through"),
    }

    // A transfer, undone atomically on both accounts.
    let sent = store.append_batch(transfer(30, 70, 30))?;
    println!("  transfer of 30 (batch {}):", sent[0].batch);
    for ev in &sent {
        show_event("  ", ev);
    }
    let undone = store.undo_batch_by(sent[0].batch, "agent_1")?;
    println!("  undone in one new batch ({}), last event first:", undone[0].batch);
    for ev in &undone {
        show_event(&format!("  undoOf {}", ev.metadata["undoOf"]), ev);
    }
    show_entity("  acc_startup", &store.get("acc_startup")?);
    show_entity("  acc_corp", &store.get("acc_corp")?);

    // A double undo is refused, and the reason says why.
    let check = store.can_undo_batch(sent[0].batch)?;
    println!("  undo the transfer again? {}: {}", check.can_undo, check.reason.unwrap_or_default());
    if let Err(Error::CannotUndo { reason }) = store.undo(&sent[1].id) {
        println!("  undo of the credit alone: refused: {reason}");
    }

    // Redo is the undo of the undo, and can be undone in turn.
    let redone = store.undo_batch(undone[0].batch)?;
    println!("  redo (batch {}): the transfer again", redone[0].batch);
    show_entity("  acc_startup", &store.get("acc_startup")?);
    show_entity("  acc_corp", &store.get("acc_corp")?);
    println!("  and the redo can be undone: {}", store.can_undo_batch(redone[0].batch)?.can_undo);
    Ok(())
}

fn chapter(title: &str) {
    println!("\n== {title} ==");
}

fn show_event(label: &str, ev: &Event) {
    println!(
        "  {label} #{} {} {} v{} at {}{} data={}",
        ev.seq,
        ev.event_type,
        ev.entity,
        ev.version,
        ev.timestamp,
        ev.actor.as_deref().map(|a| format!(" by {a}")).unwrap_or_default(),
        ev.data
    );
}

fn show_entity(label: &str, entity: &Option<Entity>) {
    match entity {
        Some(e) => println!("{label}: v{}{} {}", e.version, if e.deleted { " (deleted)" } else { "" }, json!(*e.state)),
        None => println!("{label}: did not exist"),
    }
}
