//! Checkpoints are a cache: a missing, torn, truncated or bit-flipped checkpoint is reported
//! and open falls back to an older one or a full replay, never failing and never losing data.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::json;
use strata::{Durability, NewEvent, Options, Store};

fn options() -> Options {
    Options { durability: Durability::Never, segment_size_bytes: 16 << 10, checkpoints_kept: 2, ..Options::default() }
}

/// Captures what strata logs through `tracing` while `f` runs.
fn logged<T>(f: impl FnOnce() -> T) -> (T, String) {
    #[derive(Clone, Default)]
    struct Buffer(Arc<Mutex<Vec<u8>>>);
    impl Write for Buffer {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = Buffer::default();
    let sink = buffer.clone();
    let subscriber = tracing_subscriber::fmt().with_writer(move || sink.clone()).with_ansi(false).finish();
    let out = tracing::subscriber::with_default(subscriber, f);
    let text = String::from_utf8_lossy(&buffer.0.lock().unwrap()).into_owned();
    (out, text)
}

fn checkpoints(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "ckpt")).collect();
    v.sort();
    v
}

/// Writes 3 rounds of 400 events with a checkpoint after each of the first two, and returns
/// the expected final balance of every account.
fn build(dir: &Path) -> Vec<i64> {
    let store = Store::open(dir, options()).unwrap();
    let mut balances = vec![0i64; 20];
    for (i, b) in balances.iter().enumerate() {
        store.append(NewEvent::create("Account", format!("acc_{i}"), json!({"balance": b}))).unwrap();
    }
    for round in 0..3 {
        for n in 0..400 {
            let i = (n * 7 + round) % balances.len();
            balances[i] += n as i64;
            store.append(NewEvent::update(format!("acc_{i}"), json!({"balance": balances[i]}))).unwrap();
        }
        if round < 2 {
            assert!(store.checkpoint().unwrap().is_some());
        }
    }
    assert_eq!(checkpoints(dir).len(), 2);
    balances
}

fn assert_state(store: &Store, balances: &[i64]) {
    assert_eq!(store.last_seq(), 20 + 1200);
    for (i, b) in balances.iter().enumerate() {
        let e = store.get(&format!("acc_{i}")).unwrap().unwrap();
        assert_eq!(e.state["balance"], *b, "acc_{i}");
        assert_eq!(store.history(&format!("acc_{i}")).unwrap().len() as u64, e.version);
    }
}

fn damage_newest_and_reopen(damage: impl Fn(&Path)) -> String {
    let dir = tempfile::tempdir().unwrap();
    let balances = build(dir.path());
    let newest = checkpoints(dir.path()).pop().unwrap();
    damage(&newest);
    let (store, log) = logged(|| Store::open(dir.path(), options()).unwrap());
    assert_state(&store, &balances);
    // Appends continue and survive another reopen.
    store.append(NewEvent::update("acc_0", json!({"balance": -1}))).unwrap();
    drop(store);
    let store = Store::open(dir.path(), options()).unwrap();
    assert_eq!(store.get("acc_0").unwrap().unwrap().state["balance"], -1);
    assert!(log.contains(&newest.file_name().unwrap().to_string_lossy().into_owned()), "the damaged checkpoint is named in: {log}");
    log
}

#[test]
fn bit_flipped_checkpoint_is_reported_and_skipped() {
    for at in [3usize, 20, 61, 70, 200] {
        let log = damage_newest_and_reopen(|p| {
            let mut b = std::fs::read(p).unwrap();
            let i = at.min(b.len() - 1);
            b[i] ^= 0x04;
            std::fs::write(p, b).unwrap();
        });
        assert!(log.contains("WARN"), "{log}");
    }
}

#[test]
fn truncated_checkpoint_is_reported_and_skipped() {
    for keep in [0u64, 10, 63, 64, 100] {
        damage_newest_and_reopen(|p| {
            let f = std::fs::OpenOptions::new().write(true).open(p).unwrap();
            f.set_len(keep).unwrap();
        });
    }
}

#[test]
fn torn_checkpoint_with_garbage_tail_is_reported_and_skipped() {
    damage_newest_and_reopen(|p| {
        let mut b = std::fs::read(p).unwrap();
        let n = b.len();
        for x in &mut b[n / 2..] {
            *x = 0xAB;
        }
        std::fs::write(p, b).unwrap();
    });
}

#[test]
fn all_checkpoints_damaged_falls_back_to_full_replay() {
    let dir = tempfile::tempdir().unwrap();
    let balances = build(dir.path());
    for p in checkpoints(dir.path()) {
        std::fs::write(&p, b"not a checkpoint").unwrap();
    }
    let (store, log) = logged(|| Store::open(dir.path(), options()).unwrap());
    assert_state(&store, &balances);
    assert_eq!(log.matches("ignoring a damaged or stale checkpoint").count(), 2, "{log}");
}

#[test]
fn missing_checkpoint_is_not_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let balances = build(dir.path());
    for p in checkpoints(dir.path()) {
        std::fs::remove_file(p).unwrap();
    }
    let store = Store::open(dir.path(), options()).unwrap();
    assert_state(&store, &balances);
}

#[test]
fn checkpoint_of_a_cut_log_is_stale_and_skipped() {
    // A checkpoint that covers more of the log than exists (the log was salvaged or cut
    // after it) must not be trusted.
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), options()).unwrap();
        store.append(NewEvent::create("Account", "a", json!({"balance": 1}))).unwrap();
        store.checkpoint().unwrap();
        store.append(NewEvent::update("a", json!({"balance": 2}))).unwrap();
        store.checkpoint().unwrap();
    }
    let seg =
        std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|x| x == "seg")).unwrap();
    // Cut the last frame off (as a torn tail would be): the newest checkpoint covers it.
    let frames_end = std::fs::metadata(&seg).unwrap().len();
    let f = std::fs::OpenOptions::new().write(true).open(&seg).unwrap();
    f.set_len(frames_end - 5).unwrap();
    let (store, log) = logged(|| Store::open(dir.path(), options()).unwrap());
    assert_eq!(store.last_seq(), 1);
    assert_eq!(store.get("a").unwrap().unwrap().state["balance"], 1);
    assert!(log.contains("stale"), "{log}");
}

#[test]
fn automatic_checkpoints_follow_the_event_count() {
    let dir = tempfile::tempdir().unwrap();
    let opts = Options { checkpoint_every_events: 100, ..options() };
    {
        let store = Store::open(dir.path(), opts.clone()).unwrap();
        store.append(NewEvent::create("Account", "a", json!({"balance": 0}))).unwrap();
        for i in 0..450 {
            store.append(NewEvent::update("a", json!({"balance": i}))).unwrap();
        }
    }
    let cps = checkpoints(dir.path());
    assert!(!cps.is_empty() && cps.len() <= 2, "{cps:?}");
    let store = Store::open(dir.path(), opts).unwrap();
    assert_eq!(store.get("a").unwrap().unwrap().state["balance"], 449);
}

/// A checkpoint written after an open with a checkpoint builds the states of the entities
/// created since (a create builds no state until the entity is read) from the log, starting
/// at the frame of the earliest such creation, in the middle of a batch here. The frame of
/// that batch is then damaged: `get` still returns every entity's state, as the checkpoint
/// recorded it (a state it lacked would be rebuilt from the damaged frame, an error), while
/// the history that needs the frame reports the damage.
#[test]
fn a_later_checkpoint_builds_the_states_of_entities_created_since() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), options()).unwrap();
        for n in 0..3 {
            store.append(NewEvent::create("Account", format!("a{n}"), json!({"balance": n, "owner": "x"}))).unwrap();
        }
        store.checkpoint().unwrap().unwrap();
    }
    let batch_seq = {
        let store = Store::open(dir.path(), options()).unwrap();
        store
            .append_batch(vec![
                NewEvent::update("a1", json!({"balance": 10})),
                NewEvent::create("Account", "b1", json!({"balance": 5, "owner": "y"})),
                NewEvent::update("b1", json!({"owner": null, "note": "moved"})),
            ])
            .unwrap();
        let batch_seq = store.last_seq();
        store.append(NewEvent::create("Account", "b2", json!({"balance": 7}))).unwrap();
        store.append(NewEvent::update("b1", json!({"balance": 6}))).unwrap();
        store.append(NewEvent::delete("a2")).unwrap();
        store.checkpoint().unwrap().unwrap();
        batch_seq
    };
    // Flip a byte in the last chunk payload of the batch's frame.
    let frame = strata::inspect::Inspector::open(dir.path()).unwrap().frame(&strata::inspect::FrameLocator::Seq(batch_seq)).unwrap();
    let mut bytes = std::fs::read(&frame.file).unwrap();
    let fields = frame.fields.as_ref().unwrap();
    let mark = if fields.durable_mark(&frame.bytes).is_some() { 8 } else { 0 };
    let at = (frame.offset + frame.bytes.len() as u64 - mark - 3) as usize;
    bytes[at] ^= 0x40;
    std::fs::write(&frame.file, bytes).unwrap();
    let expected = [
        ("a0", json!({"balance": 0, "owner": "x"}), 1, false),
        ("a1", json!({"balance": 10, "owner": "x"}), 2, false),
        ("a2", json!({"balance": 2, "owner": "x"}), 2, true),
        ("b1", json!({"balance": 6, "note": "moved"}), 3, false),
        ("b2", json!({"balance": 7}), 1, false),
    ];
    let (store, log) = logged(|| Store::open(dir.path(), options()).unwrap());
    assert!(!log.contains("checkpoint"), "the newest checkpoint is used without a warning:\n{log}");
    for (id, state, version, deleted) in expected {
        let e = store.get(id).unwrap().unwrap_or_else(|| panic!("{id} is missing"));
        assert_eq!((serde_json::Value::Object((*e.state).clone()), e.version, e.deleted), (state, version, deleted), "{id}");
    }
    let err = store.history("b1").unwrap_err();
    assert!(matches!(err, strata::Error::Corruption { .. }), "the damaged frame is reported: {err:?}");
}

/// A checkpoint that passes its CRCs but whose tail names segment `u64::MAX`, or whose seq
/// is `u64::MAX`, made `checkpoint_fits` overflow (a panic with overflow checks, as in debug
/// and fuzz builds) instead of being skipped as stale. A crash of the `checkpoint_open` fuzz
/// target with the raw-body input embedded below (mode byte 1, then these bytes).
#[test]
fn checkpoint_whose_tail_segment_or_seq_overflows_is_skipped() {
    let dir = tempfile::tempdir().unwrap();
    let (store_id, last_seq) = {
        let store = Store::open(dir.path(), options()).unwrap();
        for i in 0..3 {
            store.append(NewEvent::create("Item", format!("i{i}"), json!({"n": i}))).unwrap();
        }
        assert!(store.checkpoint().unwrap().is_some());
        (store.store_id().0, store.last_seq())
    };
    let own = checkpoints(dir.path()).pop().unwrap();
    let own_bytes = std::fs::read(&own).unwrap();
    std::fs::remove_file(&own).unwrap();
    // The fuzz input after its mode byte: a checkpoint body (last_ts 0, snapshot_every 16)
    // with one segment (base seq 1), one frame (seq 1, segment 0, offset 64), a tail in
    // segment u64::MAX (a 10-byte varint) ending at offset 100, and nothing else.
    #[rustfmt::skip]
    const TAIL_IN_SEGMENT_U64_MAX: [u8; 46] = [
        0, 0, 0, 0, 0, 0, 0, 0, 0x10, 1, 1, 1, 1, 0, 0x40,
        0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01, 0x64,
        0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let tail_overflows = strata::fuzzing::checkpoint_file(&TAIL_IN_SEGMENT_U64_MAX, last_seq, store_id);
    // The store's own checkpoint, claiming to cover seq u64::MAX, checksums rewritten.
    let mut seq_overflows = own_bytes;
    seq_overflows[16..24].copy_from_slice(&u64::MAX.to_le_bytes());
    strata::fuzzing::reseal_checkpoint(&mut seq_overflows);
    let cases =
        [(last_seq, tail_overflows, "its tail is not in its last segment"), (u64::MAX, seq_overflows, "its last frame is not in the log")];
    for (seq, file, reason) in cases {
        let path = dir.path().join(strata::fuzzing::checkpoint_file_name(seq));
        std::fs::write(&path, &file).unwrap();
        let (store, log) = logged(|| Store::open(dir.path(), options()).unwrap());
        assert_eq!(store.last_seq(), last_seq);
        for i in 0..3 {
            assert_eq!(store.get(&format!("i{i}")).unwrap().unwrap().state["n"], i);
        }
        assert!(log.contains("ignoring a damaged or stale checkpoint") && log.contains(reason), "seq {seq}: {log}");
        drop(store);
        std::fs::remove_file(&path).unwrap();
    }
}

/// A checkpoint written at every point of a log that rolls segments (right after a roll
/// too, when the newest segment may hold no frame yet) is used by the next open: no
/// warning that it was skipped, and the store reads the same as one replayed from the log.
#[test]
fn a_checkpoint_written_around_segment_rolls_is_used() {
    for n in 1..=40 {
        let dir = tempfile::tempdir().unwrap();
        let options = Options { segment_size_bytes: 1024, ..options() };
        {
            let store = Store::open(dir.path(), options.clone()).unwrap();
            for i in 0..n {
                store.append(NewEvent::create("Item", format!("i{i}"), json!({"n": i, "pad": "x".repeat(30)}))).unwrap();
            }
            assert_eq!(store.checkpoint().unwrap(), Some(n));
        }
        let (store, log) = logged(|| Store::open(dir.path(), options.clone()).unwrap());
        assert!(!log.contains("checkpoint"), "after {n} events: the checkpoint was skipped:\n{log}");
        assert_eq!(store.last_seq(), n);
        assert_eq!(store.get(&format!("i{}", n - 1)).unwrap().unwrap().state["n"], n - 1);
    }
}
