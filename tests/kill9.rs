//! Kill -9: a child process appends with `Durability::Always` and prints every acknowledged
//! event; the parent kills it with SIGKILL at random moments, then opens the store itself
//! and checks what a user would: the store opens with no manual step, every acknowledged
//! event is there and identical, no part of an unacknowledged batch is visible, and appends
//! go on.
//!
//! The child is this test binary run again on the ignored test `kill9_child_writer`, told
//! what to do through environment variables. It writes single events and batches of up to
//! six, with small segments (so that kills land on segment rolls and seals), a dictionary
//! trained early in each store's life, and periodic checkpoints.
//!
//! 200 kill cycles by default, 10,000 with `STRATA_LONG=1`; `STRATA_KILL9_CYCLES=N` sets any
//! number and `STRATA_SEED=S` replays a run.

use std::collections::{BTreeMap, HashMap};
use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
#[path = "support/rng.rs"]
mod rng;
use rng::{Rng, seed_from_env};
use strata::{Durability, Event, EventQuery, NewEvent, Options, Store};

/// Set in the child's environment: the store directory it writes to.
const CHILD_DIR_ENV: &str = "STRATA_KILL9_CHILD_DIR";
/// Set in the child's environment: its random seed.
const CHILD_SEED_ENV: &str = "STRATA_KILL9_CHILD_SEED";
/// Set in the child's environment: the cycle number (makes its tags unique).
const CHILD_CYCLE_ENV: &str = "STRATA_KILL9_CHILD_CYCLE";
/// Cycles that share one store directory before a fresh one is started.
const CYCLES_PER_STORE: u64 = 25;
/// Entities the child writes to.
const ENTITIES: u64 = 12;

fn options() -> Options {
    Options {
        durability: Durability::Always,
        segment_size_bytes: 16 << 10,
        snapshot_every_versions: 4,
        checkpoint_every_events: 300,
        ..Options::default()
    }
}

/// FNV-1a over the canonical JSON text: enough to tell "identical" from "different".
fn hash_json(value: &Value) -> u64 {
    let text = serde_json::to_string(value).unwrap();
    text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

/// What the child prints for one event, and what the parent compares with the store.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fingerprint {
    tag: String,
    entity: String,
    event_type: String,
    version: u64,
    id: String,
    data_hash: u64,
}

impl Fingerprint {
    fn of(ev: &Event) -> Fingerprint {
        Fingerprint {
            tag: tag_of(ev).to_string(),
            entity: ev.entity.clone(),
            event_type: ev.event_type.clone(),
            version: ev.version,
            id: ev.id.clone(),
            data_hash: hash_json(&ev.data),
        }
    }

    fn to_line(&self, seq: u64) -> String {
        format!("{seq},{},{},{},{},{},{:x}", self.tag, self.entity, self.event_type, self.version, self.id, self.data_hash)
    }

    fn parse(field: &str) -> (u64, Fingerprint) {
        let p: Vec<&str> = field.split(',').collect();
        assert_eq!(p.len(), 7, "malformed ACK field {field:?}");
        let fp = Fingerprint {
            tag: p[1].into(),
            entity: p[2].into(),
            event_type: p[3].into(),
            version: p[4].parse().unwrap(),
            id: p[5].into(),
            data_hash: u64::from_str_radix(p[6], 16).unwrap(),
        };
        (p[0].parse().unwrap(), fp)
    }
}

fn tag_of(ev: &Event) -> &str {
    ev.metadata["tag"].as_str().unwrap_or("")
}

// ---------------------------------------------------------------------------------------
// The child.

/// The child writer. Ignored in a normal run: `acknowledged_events_survive_kill_9` runs this
/// binary again with `--ignored --exact kill9_child_writer` and the child environment set.
#[test]
#[ignore = "the child process of acknowledged_events_survive_kill_9, which runs it"]
fn kill9_child_writer() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else { return };
    let seed: u64 = std::env::var(CHILD_SEED_ENV).unwrap().parse().unwrap();
    let cycle: u64 = std::env::var(CHILD_CYCLE_ENV).unwrap().parse().unwrap();
    let mut rng = Rng(seed);
    let store = Store::open(&dir, options()).unwrap_or_else(|e| panic!("child: open failed: {e}"));
    let mut out = std::io::stdout().lock();
    writeln!(out, "OPEN {}", store.last_seq()).unwrap();
    out.flush().unwrap();
    // Which entities exist and are deleted, as the child's own appends leave them.
    let mut known: HashMap<String, bool> = HashMap::new();
    for k in 0..ENTITIES {
        let id = format!("item_{k}");
        if let Some(e) = store.get(&id).unwrap() {
            known.insert(id, e.deleted);
        }
    }
    for op in 0u64.. {
        if rng.chance(2) {
            store.checkpoint().unwrap_or_else(|e| panic!("child: checkpoint failed: {e}"));
        }
        let size = if rng.chance(60) { 1 } else { 2 + rng.below(5) as usize };
        let with_ids = rng.chance(25);
        let mut batch = Vec::with_capacity(size);
        let mut planned = known.clone();
        let mut tags = Vec::new();
        for i in 0..size {
            let tag = format!("{cycle}.{op}.{i}");
            let id = format!("item_{}", rng.below(ENTITIES));
            let pad: String = (0..rng.below(300)).map(|_| char::from(b'a' + rng.below(26) as u8)).collect();
            let data = json!({"n": rng.next() >> 12, "pad": pad, "cycle": cycle});
            let ev = match planned.get(&id).copied() {
                None => {
                    planned.insert(id.clone(), false);
                    NewEvent::create("Item", &id, data)
                }
                Some(false) if rng.chance(5) => {
                    planned.insert(id.clone(), true);
                    NewEvent::delete(&id)
                }
                Some(true) if rng.chance(50) => {
                    planned.insert(id.clone(), false);
                    NewEvent::restore(&id)
                }
                Some(_) if rng.chance(30) => NewEvent::update(&id, data).verb("Touched"),
                Some(_) => NewEvent::update(&id, data),
            };
            let ev = ev.metadata(json!({"tag": tag, "size": size}));
            let ev = if with_ids { ev.id(format!("req-{tag}")) } else { ev };
            tags.push(tag);
            batch.push(ev);
        }
        writeln!(out, "TRY {}", tags.join(" ")).unwrap();
        out.flush().unwrap();
        let events = if size == 1 {
            vec![store.append(batch.pop().unwrap()).unwrap_or_else(|e| panic!("child: append failed: {e}"))]
        } else {
            store.append_batch(batch).unwrap_or_else(|e| panic!("child: append_batch failed: {e}"))
        };
        known = planned;
        let fields: Vec<String> = events.iter().map(|ev| Fingerprint::of(ev).to_line(ev.seq)).collect();
        writeln!(out, "ACK {}", fields.join(" ")).unwrap();
        out.flush().unwrap();
    }
}

// ---------------------------------------------------------------------------------------
// The parent.

/// What the kills hit, for the summary line.
#[derive(Default, Debug)]
struct Stats {
    /// Kills that left the last segment sealed or without a frame: they landed in a roll.
    mid_roll: u64,
    /// Kills after which a checkpoint was there to open from.
    with_checkpoint: u64,
    /// Kills that left a checkpoint half written (its temporary file).
    mid_checkpoint: u64,
    /// Opens that cut a torn tail (the segments got shorter).
    torn_tails_cut: u64,
    /// Batches in flight at the kill that turned out wholly written.
    in_flight_present: u64,
    /// Batches in flight at the kill that left nothing visible.
    in_flight_absent: u64,
}

/// Total bytes of the segment files in `dir`.
fn segment_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap())
        .filter(|e| e.file_name().to_string_lossy().ends_with(".seg"))
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// Whether the newest segment is sealed (ends in a trailer) or holds no frame yet.
fn last_segment_mid_roll(dir: &Path) -> bool {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".seg"))
        .collect();
    names.sort();
    let Some(last) = names.last() else { return false };
    let bytes = std::fs::read(dir.join(last)).unwrap();
    bytes.len() <= 64 || bytes.len() >= 128 && &bytes[bytes.len() - 64..bytes.len() - 56] == b"STRATEND"
}

/// What the parent knows about one store across its cycles.
#[derive(Default)]
struct Ledger {
    /// Every event acknowledged (by a child, or by the parent's own appends), by seq.
    acknowledged: BTreeMap<u64, Fingerprint>,
    /// Batches tried but not acknowledged, as their tags, not yet seen in the store.
    in_flight: Vec<Vec<String>>,
}

/// The lines a child printed before it died.
struct ChildOutput {
    lines: mpsc::Receiver<String>,
    reader: thread::JoinHandle<()>,
    stderr: thread::JoinHandle<String>,
}

fn spawn_child(dir: &Path, seed: u64, cycle: u64) -> (Child, ChildOutput) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["kill9_child_writer", "--exact", "--ignored", "--nocapture", "--test-threads=1", "-q"])
        .env(CHILD_DIR_ENV, dir)
        .env(CHILD_SEED_ENV, seed.to_string())
        .env(CHILD_CYCLE_ENV, cycle.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        let mut line = String::new();
        // Only whole lines count: a kill can cut the last one short.
        while r.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if line.ends_with('\n') && tx.send(line.trim_end().to_string()).is_err() {
                break;
            }
            line.clear();
        }
    });
    let stderr = thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    (child, ChildOutput { lines: rx, reader, stderr })
}

/// Lets the child run until a random moment and kills it; returns every whole line it
/// printed. Some kills land while it opens (and recovers) the store, most after a random
/// number of acknowledged appends.
fn run_and_kill(mut child: Child, output: ChildOutput, rng: &mut Rng, seed: u64, cycle: u64) -> Vec<String> {
    let mut lines = Vec::new();
    if rng.chance(15) {
        thread::sleep(Duration::from_micros(rng.below(8000)));
    } else {
        let acks_wanted = 1 + rng.below(40);
        let mut acks = 0;
        let deadline = Instant::now() + Duration::from_secs(30);
        while acks < acks_wanted {
            match output.lines.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    acks += u64::from(line.starts_with("ACK "));
                    lines.push(line);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    assert!(Instant::now() < deadline, "seed {seed} cycle {cycle}: the child made no progress for 30 s");
                    if let Some(status) = child.try_wait().unwrap() {
                        let _ = output.reader.join();
                        let err = output.stderr.join().unwrap_or_default();
                        panic!("seed {seed} cycle {cycle}: the child exited on its own ({status}):\n{err}");
                    }
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
        }
        thread::sleep(Duration::from_micros(rng.below(1500)));
    }
    if let Some(status) = child.try_wait().unwrap() {
        let err = output.stderr.join().unwrap_or_default();
        panic!("seed {seed} cycle {cycle}: the child exited on its own ({status}):\n{err}");
    }
    child.kill().unwrap(); // SIGKILL
    let status = child.wait().unwrap();
    assert!(!status.success(), "seed {seed} cycle {cycle}: the child was not killed");
    output.reader.join().unwrap();
    let _ = output.stderr.join();
    lines.extend(output.lines.try_iter());
    lines
}

/// Records the child's TRY and ACK lines in the ledger.
fn record(ledger: &mut Ledger, lines: &[String], seed: u64, cycle: u64) {
    let mut tried: Option<Vec<String>> = None;
    for line in lines {
        if let Some(rest) = line.strip_prefix("TRY ") {
            assert!(tried.is_none(), "seed {seed} cycle {cycle}: TRY without ACK before {line:?}");
            tried = Some(rest.split(' ').map(str::to_string).collect());
        } else if let Some(rest) = line.strip_prefix("ACK ") {
            let tags = tried.take().unwrap_or_else(|| panic!("seed {seed} cycle {cycle}: ACK without TRY: {line:?}"));
            let acked: Vec<(u64, Fingerprint)> = rest.split(' ').map(Fingerprint::parse).collect();
            assert_eq!(acked.iter().map(|(_, f)| f.tag.clone()).collect::<Vec<_>>(), tags, "seed {seed} cycle {cycle}");
            for (seq, fp) in acked {
                assert!(ledger.acknowledged.insert(seq, fp).is_none(), "seed {seed} cycle {cycle}: seq {seq} acknowledged twice");
            }
        }
    }
    ledger.in_flight.extend(tried);
}

/// Opens the store after a kill and checks everything the ledger promises; then appends
/// once to show that appends go on.
fn check_after_kill(dir: &Path, ledger: &mut Ledger, stats: &mut Stats, seed: u64, cycle: u64) {
    let ctx = format!("seed {seed} cycle {cycle}");
    let before = segment_bytes(dir);
    stats.mid_roll += u64::from(last_segment_mid_roll(dir));
    let names: Vec<String> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    stats.with_checkpoint += u64::from(names.iter().any(|n| n.ends_with(".ckpt")));
    stats.mid_checkpoint += u64::from(names.iter().any(|n| n.ends_with(".ckpt.tmp")));
    let store = Store::open(dir, options()).unwrap_or_else(|e| panic!("{ctx}: the store does not open after kill -9: {e}"));
    stats.torn_tails_cut += u64::from(segment_bytes(dir) < before);
    let events = store.events(&EventQuery::new()).unwrap();
    let last_seq = store.last_seq();
    assert_eq!(events.len() as u64, last_seq, "{ctx}: the log is not dense");
    for (i, ev) in events.iter().enumerate() {
        assert_eq!(ev.seq, i as u64 + 1, "{ctx}: seqs are not dense");
    }
    // Every acknowledged event is present and identical.
    for (&seq, fp) in &ledger.acknowledged {
        let ev = events.get(seq as usize - 1).unwrap_or_else(|| panic!("{ctx}: acknowledged seq {seq} ({}) is lost", fp.tag));
        assert_eq!(&Fingerprint::of(ev), fp, "{ctx}: acknowledged seq {seq} came back different");
    }
    // Batches are all-or-nothing: every batch in the store holds as many events as it was
    // built with, and a batch that was in flight at the kill is wholly there or wholly not.
    let mut by_batch: BTreeMap<u64, Vec<&Event>> = BTreeMap::new();
    for ev in &events {
        by_batch.entry(ev.batch).or_default().push(ev);
    }
    for (batch, evs) in &by_batch {
        let size = evs[0].metadata["size"].as_u64().unwrap_or(1) as usize;
        assert_eq!(evs.len(), size, "{ctx}: batch {batch} is partly visible");
    }
    let seq_of_tag: HashMap<&str, u64> = events.iter().map(|ev| (tag_of(ev), ev.seq)).collect();
    let in_flight = std::mem::take(&mut ledger.in_flight);
    for tags in in_flight {
        let present: Vec<u64> = tags.iter().filter_map(|t| seq_of_tag.get(t.as_str()).copied()).collect();
        if present.is_empty() {
            stats.in_flight_absent += 1;
            continue;
        }
        stats.in_flight_present += 1;
        assert_eq!(present.len(), tags.len(), "{ctx}: part of the unacknowledged batch {tags:?} is visible");
        // It made it to disk whole: from now on it must stay, like an acknowledged one.
        for seq in present {
            ledger.acknowledged.insert(seq, Fingerprint::of(&events[seq as usize - 1]));
        }
    }
    // Nothing appears that no one wrote.
    for ev in &events {
        assert!(ledger.acknowledged.contains_key(&ev.seq), "{ctx}: seq {} ({}) was never written", ev.seq, tag_of(ev));
    }
    // Reads agree with the log (for two entities a cycle: reading every history each time
    // would cost more than the rest of the check).
    for k in [cycle % ENTITIES, (cycle * 7 + 3) % ENTITIES] {
        let id = format!("item_{k}");
        let history = store.history(&id).unwrap();
        let listed: Vec<&Event> = events.iter().filter(|e| e.entity == id).collect();
        assert_eq!(history.iter().collect::<Vec<_>>(), listed, "{ctx}: history of {id} disagrees with the log");
        let current = store.get(&id).unwrap();
        assert_eq!(current.map(|e| e.version), history.last().map(|e| e.version), "{ctx}: get({id}) disagrees with its history");
    }
    // Appends go on.
    let tag = format!("parent.{cycle}");
    let ev = store
        .append(NewEvent::create("Marker", format!("marker_{cycle}"), json!({"cycle": cycle})).metadata(json!({"tag": tag})))
        .unwrap_or_else(|e| panic!("{ctx}: append after recovery failed: {e}"));
    assert_eq!(ev.seq, last_seq + 1, "{ctx}: the append after recovery got the wrong seq");
    ledger.acknowledged.insert(ev.seq, Fingerprint::of(&ev));
}

fn cycles_from_env() -> u64 {
    if let Ok(n) = std::env::var("STRATA_KILL9_CYCLES") {
        return n.parse().expect("STRATA_KILL9_CYCLES must be a number");
    }
    if std::env::var("STRATA_LONG").is_ok_and(|v| v == "1") { 10_000 } else { 200 }
}

#[test]
fn acknowledged_events_survive_kill_9() {
    let seed = seed_from_env();
    let cycles = cycles_from_env();
    println!("kill9: seed {seed} (replay with STRATA_SEED={seed}), {cycles} cycles");
    let mut rng = Rng(seed);
    let started = Instant::now();
    let mut dir = tempfile::tempdir().unwrap();
    let mut ledger = Ledger::default();
    let mut acks_total = 0usize;
    let mut stats = Stats::default();
    for cycle in 0..cycles {
        if cycle > 0 && cycle % CYCLES_PER_STORE == 0 {
            dir = tempfile::tempdir().unwrap();
            ledger = Ledger::default();
        }
        let (child, output) = spawn_child(dir.path(), rng.next(), cycle);
        let lines = run_and_kill(child, output, &mut rng, seed, cycle);
        let before = ledger.acknowledged.len();
        record(&mut ledger, &lines, seed, cycle);
        acks_total += ledger.acknowledged.len() - before;
        check_after_kill(dir.path(), &mut ledger, &mut stats, seed, cycle);
    }
    println!(
        "kill9: {cycles} kills, {acks_total} acknowledged events checked after every kill; in-flight batches whole {} / absent {}; \
         {} kills inside a segment roll, {} with a checkpoint to open from, {} inside a checkpoint write, {} torn tails cut; {:.1} s",
        stats.in_flight_present,
        stats.in_flight_absent,
        stats.mid_roll,
        stats.with_checkpoint,
        stats.mid_checkpoint,
        stats.torn_tails_cut,
        started.elapsed().as_secs_f64()
    );
}
