//! Concurrency: readers racing a writer never see an entity's version go backwards or half
//! of a batch, through every read path (`get`, `events` paging, time ranges, `get_as_of` at
//! past times); and group commit acknowledges every append of concurrent appenders, with
//! dense seqs, each appender's events in its own order and fewer fsyncs than commits.
//!
//! The reader test runs for 30 s by default (the whole suite stays far under its 10-minute
//! budget with it) and 5 minutes with `STRATA_LONG=1` (`STRATA_CONCURRENCY_SECS=N` sets any
//! duration, `STRATA_SEED=S` fixes the seeds; thread interleaving still varies from run to
//! run).

#[path = "support/counting_storage.rs"]
mod counting_storage;
#[path = "support/rng.rs"]
mod rng;
use rng::{Rng, seed_from_env};

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use counting_storage::CountingStorage;
use serde_json::{Value, json};
use strata::{Durability, Event, EventQuery, NewEvent, Options, Store, Timestamp};

const ACCOUNTS: usize = 10;
const OPENING_BALANCE: i64 = 100;
const TOTAL: i64 = OPENING_BALANCE * ACCOUNTS as i64;
const READERS: usize = 8;

fn duration_from_env() -> Duration {
    if let Ok(s) = std::env::var("STRATA_CONCURRENCY_SECS") {
        return Duration::from_secs_f64(s.parse().expect("STRATA_CONCURRENCY_SECS must be a number"));
    }
    let long = std::env::var("STRATA_LONG").is_ok_and(|v| v == "1");
    Duration::from_secs(if long { 300 } else { 30 })
}

fn account(i: usize) -> String {
    format!("acct_{i}")
}

fn balance(state: &serde_json::Map<String, Value>) -> i64 {
    state["balance"].as_i64().expect("every account has a balance")
}

/// What the readers share with the writer: when the accounts were opened, and the newest
/// timestamp any reader has seen committed (every batch at or before it is committed).
struct Clock {
    opened_at: AtomicI64,
    newest_seen: AtomicI64,
}

impl Clock {
    fn saw(&self, ts: Timestamp) {
        self.newest_seen.fetch_max(ts.as_micros(), Ordering::Relaxed);
    }

    /// A random committed point in time after the accounts were opened.
    fn random_past(&self, rng: &mut Rng) -> Timestamp {
        let (from, to) = (self.opened_at.load(Ordering::Relaxed), self.newest_seen.load(Ordering::Relaxed));
        Timestamp::from_micros(from + rng.below((to - from).max(0) as u64 + 1) as i64)
    }
}

/// The writer: moves money between two accounts in one batch (each side records the
/// other's new version), and now and then touches one account alone.
fn write_transfers(store: &Store, stop: &AtomicBool, seed: u64) -> u64 {
    let mut rng = Rng(seed);
    let mut balances = [OPENING_BALANCE; ACCOUNTS];
    let mut versions = [1u64; ACCOUNTS];
    let mut batches = 0;
    while !stop.load(Ordering::Relaxed) {
        let a = rng.below(ACCOUNTS as u64) as usize;
        if rng.below(10) == 0 {
            store
                .append(NewEvent::update(account(a), json!({"touched": rng.next() >> 20})).verb("Touched").expect_version(versions[a]))
                .unwrap();
            versions[a] += 1;
        } else {
            let b = (a + 1 + rng.below(ACCOUNTS as u64 - 1) as usize) % ACCOUNTS;
            let amount = 1 + rng.below(50) as i64;
            let (va, vb) = (versions[a] + 1, versions[b] + 1);
            store
                .append_batch(vec![
                    NewEvent::update(
                        account(a),
                        json!({"balance": balances[a] - amount, "delta": -amount, "peer": account(b), "peer_version": vb}),
                    )
                    .verb("Transferred")
                    .expect_version(versions[a]),
                    NewEvent::update(
                        account(b),
                        json!({"balance": balances[b] + amount, "delta": amount, "peer": account(a), "peer_version": va}),
                    )
                    .verb("Transferred")
                    .expect_version(versions[b]),
                ])
                .unwrap();
            balances[a] -= amount;
            balances[b] += amount;
            versions[a] = va;
            versions[b] = vb;
        }
        batches += 1;
    }
    batches
}

/// What one reader checked, for the summary line.
#[derive(Default, Debug)]
struct ReaderCounts {
    gets: u64,
    pages: u64,
    as_of_snapshots: u64,
    ranges: u64,
}

/// A reader: loops over the read paths and checks each one's invariant.
fn read_and_check(store: &Store, stop: &AtomicBool, clock: &Clock, seed: u64) -> ReaderCounts {
    let mut rng = Rng(seed);
    let mut counts = ReaderCounts::default();
    let mut seen_version = [0u64; ACCOUNTS];
    let mut folded: HashMap<String, i64> = HashMap::new();
    let mut cursor = 0u64;
    while !stop.load(Ordering::Relaxed) {
        match rng.below(4) {
            0 => check_get(store, &mut rng, &mut seen_version, clock, &mut counts),
            1 => check_listing(store, &mut rng, &mut cursor, &mut folded, clock, &mut counts),
            2 => check_as_of(store, &mut rng, clock, &mut counts),
            _ => check_time_range(store, &mut rng, clock, &mut counts),
        }
    }
    counts
}

/// `get`: versions never go back, and the other side of the account's last transfer is at
/// least at the version that transfer gave it (else half of that batch would be visible).
fn check_get(store: &Store, rng: &mut Rng, seen_version: &mut [u64; ACCOUNTS], clock: &Clock, counts: &mut ReaderCounts) {
    let a = rng.below(ACCOUNTS as u64) as usize;
    let e = store.get(&account(a)).unwrap().expect("accounts exist");
    assert!(e.version >= seen_version[a], "{}: version went back from {} to {}", e.id, seen_version[a], e.version);
    seen_version[a] = e.version;
    clock.saw(e.updated_at);
    if let (Some(peer), Some(peer_version)) =
        (e.state.get("peer").and_then(Value::as_str), e.state.get("peer_version").and_then(Value::as_u64))
    {
        let p = store.get(peer).unwrap().expect("accounts exist");
        assert!(
            p.version >= peer_version,
            "{} at version {} shows a transfer that put {peer} at version {peer_version}, but {peer} reads at version {}: half a batch is visible",
            e.id,
            e.version,
            p.version
        );
    }
    counts.gets += 1;
}

/// `events` paging by cursor: each page continues the last one seq by seq, and a page that
/// reaches the end of the log ends on a batch boundary (the folded balances add up).
fn check_listing(
    store: &Store,
    rng: &mut Rng,
    cursor: &mut u64,
    folded: &mut HashMap<String, i64>,
    clock: &Clock,
    counts: &mut ReaderCounts,
) {
    let limit = if rng.below(3) == 0 { 1 + rng.below(7) as usize } else { usize::MAX };
    let page = store.events(&EventQuery::new().after_seq(*cursor).limit(limit)).unwrap();
    for ev in &page {
        assert_eq!(ev.seq, *cursor + 1, "a page skipped or repeated a seq");
        *cursor = ev.seq;
        if let Some(b) = ev.data.get("balance").and_then(Value::as_i64) {
            folded.insert(ev.entity.clone(), b);
        }
        clock.saw(ev.timestamp);
    }
    if page.len() < limit && folded.len() == ACCOUNTS {
        let sum: i64 = folded.values().sum();
        assert_eq!(sum, TOTAL, "the listing up to seq {cursor} ends inside a batch (balances add up to {sum})");
    }
    counts.pages += 1;
}

/// `get_as_of` at a random committed past time: the accounts add up as of that time, and
/// no account is newer there than it is now.
fn check_as_of(store: &Store, rng: &mut Rng, clock: &Clock, counts: &mut ReaderCounts) {
    let at = clock.random_past(rng);
    let mut sum = 0;
    for i in 0..ACCOUNTS {
        let then = store.get_as_of(&account(i), at).unwrap().expect("accounts existed");
        assert!(then.updated_at <= at, "{} as of {at} shows a change made at {}", then.id, then.updated_at);
        sum += balance(&then.state);
    }
    assert_eq!(sum, TOTAL, "as of {at} the balances add up to {sum}: half a batch is visible");
    counts.as_of_snapshots += 1;
}

/// `events` over a committed time range, by type: the transfers' deltas cancel out,
/// because a batch is in a range wholly or not at all.
fn check_time_range(store: &Store, rng: &mut Rng, clock: &Clock, counts: &mut ReaderCounts) {
    let (x, y) = (clock.random_past(rng), clock.random_past(rng));
    let (from, to) = (x.min(y), x.max(y));
    let query = EventQuery::new().event_type("*.Transferred").after(from).before(to).unwrap();
    let events = store.events(&query).unwrap();
    let net: i64 = events.iter().map(|e| e.data["delta"].as_i64().unwrap()).sum();
    assert_eq!(net, 0, "transfers in [{from}, {to}) do not cancel out ({} events): half a batch is in the range", events.len());
    for ev in &events {
        assert!(ev.timestamp >= from && ev.timestamp < to && ev.event_type == "Account.Transferred");
    }
    counts.ranges += 1;
}

#[test]
fn readers_never_see_versions_go_back_or_half_a_batch() {
    let seed = seed_from_env();
    let duration = duration_from_env();
    println!("concurrency: seed {seed} (STRATA_SEED={seed}), 1 writer and {READERS} readers for {duration:?}");
    let dir = tempfile::tempdir().unwrap();
    let options = Options { segment_size_bytes: 256 << 10, snapshot_every_versions: 8, ..Options::default() };
    let store = Store::open(dir.path(), options.clone()).unwrap();
    let opened = store
        .append_batch((0..ACCOUNTS).map(|i| NewEvent::create("Account", account(i), json!({"balance": OPENING_BALANCE}))).collect())
        .unwrap();
    let clock =
        Clock { opened_at: AtomicI64::new(opened[0].timestamp.as_micros()), newest_seen: AtomicI64::new(opened[0].timestamp.as_micros()) };
    let stop = AtomicBool::new(false);
    let (batches, counts) = thread::scope(|s| {
        let writer = s.spawn(|| write_transfers(&store, &stop, seed));
        let readers: Vec<_> = (0..READERS as u64)
            .map(|r| {
                let (store, stop, clock) = (&store, &stop, &clock);
                s.spawn(move || read_and_check(store, stop, clock, seed ^ (r + 1).wrapping_mul(0xA24B_AED4_963E_E407)))
            })
            .collect();
        thread::sleep(duration);
        stop.store(true, Ordering::Relaxed);
        let counts: Vec<ReaderCounts> = readers.into_iter().map(|r| r.join().unwrap()).collect();
        (writer.join().unwrap(), counts)
    });
    let total = |f: fn(&ReaderCounts) -> u64| counts.iter().map(f).sum::<u64>();
    println!(
        "concurrency: {batches} writer commits, {} gets, {} pages, {} as-of snapshots, {} time ranges checked",
        total(|c| c.gets),
        total(|c| c.pages),
        total(|c| c.as_of_snapshots),
        total(|c| c.ranges)
    );
    assert!(batches > 0 && counts.iter().all(|c| c.gets + c.pages + c.as_of_snapshots + c.ranges > 0), "every thread made progress");
    // And the end state survives a reopen.
    let sum_now: i64 = (0..ACCOUNTS).map(|i| balance(&store.get(&account(i)).unwrap().unwrap().state)).sum();
    assert_eq!(sum_now, TOTAL);
    let last = store.last_seq();
    drop(store);
    let store = Store::open(dir.path(), options).unwrap();
    assert_eq!(store.last_seq(), last);
    let sum_after: i64 = (0..ACCOUNTS).map(|i| balance(&store.get(&account(i)).unwrap().unwrap().state)).sum();
    assert_eq!(sum_after, TOTAL);
}

// ---------------------------------------------------------------------------------------
// Group commit.

#[test]
fn group_commit_acknowledges_every_concurrent_append() {
    const APPENDERS: usize = 8;
    const COMMITS_EACH: usize = 150;
    let seed = seed_from_env();
    println!("group commit: seed {seed} (STRATA_SEED={seed}), {APPENDERS} appenders x {COMMITS_EACH} commits");
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(CountingStorage::default());
    let syncs = fs.syncs.clone();
    let options = Options { durability: Durability::Always, train_dictionary: false, ..Options::default() };
    let store = Store::open_with_storage(dir.path(), options.clone(), fs).unwrap();
    let syncs_at_start = syncs.load(Ordering::Relaxed);
    let start = Barrier::new(APPENDERS);
    let started = Instant::now();
    // Each appender: its own entity, singles and batches of three, in order.
    let per_thread: Vec<Vec<Event>> = thread::scope(|s| {
        let handles: Vec<_> = (0..APPENDERS)
            .map(|t| {
                let (store, start) = (&store, &start);
                s.spawn(move || {
                    let mut rng = Rng(seed ^ (t as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                    let id = format!("writer_{t}");
                    let mut mine = vec![store.append(NewEvent::create("Counter", &id, json!({"n": 0}))).unwrap()];
                    start.wait();
                    for i in 1..COMMITS_EACH {
                        if rng.below(5) == 0 {
                            let batch = (0..3).map(|k| NewEvent::update(&id, json!({"n": i * 3 + k}))).collect();
                            mine.extend(store.append_batch(batch).unwrap());
                        } else {
                            mine.push(store.append(NewEvent::update(&id, json!({"n": i * 3}))).unwrap());
                        }
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let elapsed = started.elapsed();
    let commits = (APPENDERS * COMMITS_EACH) as u64;
    let group_syncs = syncs.load(Ordering::Relaxed) - syncs_at_start;
    // Seqs are dense over every acknowledged event; each appender's are in its order with
    // consecutive versions of its entity.
    let mut all: Vec<u64> = per_thread.iter().flatten().map(|e| e.seq).collect();
    all.sort_unstable();
    assert_eq!(all, (1..=all.len() as u64).collect::<Vec<_>>(), "acknowledged seqs are not dense");
    for (t, mine) in per_thread.iter().enumerate() {
        for pair in mine.windows(2) {
            assert!(pair[0].seq < pair[1].seq, "appender {t}: its events are out of order");
            assert_eq!(pair[0].version + 1, pair[1].version, "appender {t}: versions skip");
        }
        assert!(mine.iter().all(|e| e.entity == format!("writer_{t}")));
    }
    // The store agrees, before and after a reopen.
    let check = |store: &Store| {
        let stored = store.events(&EventQuery::new()).unwrap();
        assert_eq!(stored.len(), all.len());
        for mine in &per_thread {
            for ev in mine {
                assert_eq!(&stored[ev.seq as usize - 1], ev, "seq {} differs from what was acknowledged", ev.seq);
            }
        }
    };
    check(&store);
    drop(store);
    check(&Store::open(dir.path(), options).unwrap());
    println!(
        "group commit: {commits} commits ({} events) acknowledged with {group_syncs} fsyncs in {:.2} s ({:.0} commits/s)",
        all.len(),
        elapsed.as_secs_f64(),
        commits as f64 / elapsed.as_secs_f64()
    );
    assert!(group_syncs < commits - APPENDERS as u64, "no commits were grouped: {group_syncs} fsyncs for {commits} commits");
}

/// Batches that fail their checks inside a group (here: a stale expected version on their
/// second event, after their first event already touched a shared entity) leave no trace
/// for the batches committed with them: every shared entity's history has dense versions,
/// holds exactly the acknowledged events, and its state is the last of them.
#[test]
fn a_batch_failing_inside_a_group_leaves_no_trace_for_the_others() {
    const APPENDERS: usize = 8;
    const BATCHES_EACH: usize = 120;
    const SHARED: usize = 3;
    let seed = seed_from_env();
    println!("failing batches in groups: seed {seed} (STRATA_SEED={seed})");
    let dir = tempfile::tempdir().unwrap();
    let options = Options { durability: Durability::Always, train_dictionary: false, ..Options::default() };
    let store = Store::open(dir.path(), options.clone()).unwrap();
    for s in 0..SHARED {
        store.append(NewEvent::create("Board", format!("shared_{s}"), json!({"by": null}))).unwrap();
    }
    let start = Barrier::new(APPENDERS);
    let acknowledged: Vec<Vec<Event>> = thread::scope(|sc| {
        let handles: Vec<_> = (0..APPENDERS)
            .map(|t| {
                let (store, start) = (&store, &start);
                sc.spawn(move || {
                    let mut rng = Rng(seed ^ (t as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
                    let own = format!("own_{t}");
                    let mut own_version = store.append(NewEvent::create("Counter", &own, json!({"i": 0}))).unwrap().version;
                    let mut mine = Vec::new();
                    start.wait();
                    for i in 0..BATCHES_EACH {
                        let shared = format!("shared_{}", rng.below(SHARED as u64));
                        let fail = rng.chance(30);
                        let expected = if fail { own_version + 7 } else { own_version };
                        let batch = vec![
                            NewEvent::update(&shared, json!({"by": t, "i": i})),
                            NewEvent::update(&own, json!({"i": i})).expect_version(expected),
                        ];
                        match store.append_batch(batch) {
                            Ok(events) => {
                                assert!(!fail, "appender {t}: batch {i} with a stale version was accepted");
                                own_version = events[1].version;
                                mine.extend(events);
                            }
                            Err(strata::Error::VersionConflict { .. }) => assert!(fail, "appender {t}: batch {i} failed"),
                            Err(e) => panic!("appender {t}: batch {i}: {e}"),
                        }
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let check = |store: &Store| {
        for s in 0..SHARED {
            let id = format!("shared_{s}");
            let history = store.history(&id).unwrap();
            let versions: Vec<u64> = history.iter().map(|e| e.version).collect();
            assert_eq!(versions, (1..=history.len() as u64).collect::<Vec<_>>(), "{id}: versions are not dense");
            let mut expected: Vec<&Event> = acknowledged.iter().flatten().filter(|e| e.entity == id).collect();
            expected.sort_by_key(|e| e.seq);
            assert_eq!(history.len(), expected.len() + 1, "{id}: the history holds events nobody was acknowledged for");
            for (stored, acked) in history[1..].iter().zip(&expected) {
                assert_eq!(stored, *acked);
            }
            let entity = store.get(&id).unwrap().unwrap();
            assert_eq!(entity.version, history.len() as u64);
            if let Some(last) = expected.last() {
                assert_eq!(Value::Object((*entity.state).clone()), last.data, "{id}: the state is not its last event's");
            }
        }
    };
    check(&store);
    // The writer is not poisoned, and a reopen agrees.
    store.append(NewEvent::update("shared_0", json!({"by": "after"}))).unwrap();
    drop(store);
    let store = Store::open(dir.path(), options).unwrap();
    assert_eq!(store.get("shared_0").unwrap().unwrap().state["by"], "after");
}
