//! The inspector beside a live writer: a writer thread appends to a store with small
//! segments, so that it rolls (seals a segment, cutting its reserved space off with a
//! truncation, then creates the next) every few batches, and closes and reopens it now and
//! then (a close cuts the active segment's reserved space off too); meanwhile this thread
//! runs the read commands of `strata::inspect` against the directory again and again.
//!
//! What a user would observe: no command fails, none crashes (a read of a mapped file that
//! was cut short under its map raises SIGBUS and kills the test process), and every pass
//! sees a prefix of the log the writer wrote (seqs 1, 2, ... with the ids the writer got
//! back), at least as long as what the writer had acknowledged when the pass began.
//!
//! The batch sizes and the payloads come from a seed, which is printed (`STRATA_SEED=N`
//! replays the writer's choices; the interleaving with the reader is up to the scheduler).
//!
//! A read racing a write can also see the write's later pages and miss its earlier ones,
//! which looks like damage; the race is rare, so a second test stages it: the reads of the
//! newest segment first come back with a hole in a frame that a good frame follows.

#[path = "support/rng.rs"]
mod rng;

use std::io;
use std::ops::{ControlFlow, Range};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use rng::Rng;
use serde_json::json;
use strata::inspect::{Follower, Inspector};
use strata::{Durability, Error, EventQuery, FsStorage, NewEvent, Options, Storage, StorageFile, Store};

/// Small segments: a roll every few batches.
const SEGMENT_BYTES: u64 = 48 << 10;
/// Batches the writer appends in all.
const BATCHES: usize = 900;
/// The writer closes and reopens the store after every this many batches.
const REOPEN_EVERY: usize = 150;
/// Past this, the reader stops starting passes that read the whole log (they grow with it)
/// and only reads the newest segments; the writer is well past its first rolls by then.
const FULL_PASSES_FOR: Duration = Duration::from_secs(4);

fn options() -> Options {
    Options {
        segment_size_bytes: SEGMENT_BYTES,
        // The reader races the writer's page-cache writes; syncing adds nothing but time.
        durability: Durability::Never,
        checkpoint_every_events: 1_500,
        ..Options::default()
    }
}

/// What the writer has been answered: `(seq, event id)` of every acknowledged event, in
/// seq order.
type Acked = Arc<Mutex<Vec<(u64, String)>>>;

/// Random text that zstd cannot shrink much, so that frames are several KiB and a roll
/// cuts off whole pages of reserved space.
fn payload(rng: &mut Rng, len: usize) -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..len).map(|_| ALPHABET[rng.below(ALPHABET.len())] as char).collect()
}

fn write(dir: &Path, seed: u64, acked: Acked, done: Arc<AtomicBool>) -> (usize, usize) {
    let mut rng = Rng(seed);
    let mut store = Store::open(dir, options()).unwrap();
    let (mut entities, mut reopens) = (0usize, 0usize);
    for b in 0..BATCHES {
        if b > 0 && b.is_multiple_of(REOPEN_EVERY) {
            drop(store);
            store = Store::open(dir, options()).unwrap();
            reopens += 1;
        }
        let size = 1 + rng.below(12usize);
        let batch: Vec<NewEvent> = (0..size)
            .map(|_| {
                let len = 200 + rng.below(1_200usize);
                let data = json!({"note": payload(&mut rng, len)});
                if entities > 0 && rng.chance(40) {
                    NewEvent::update(format!("e{}", rng.below(entities)), data)
                } else {
                    entities += 1;
                    NewEvent::create("Item", format!("e{}", entities - 1), data)
                }
            })
            .collect();
        let events = store.append_batch(batch).unwrap();
        acked.lock().extend(events.into_iter().map(|e| (e.seq, e.id)));
    }
    drop(store);
    done.store(true, Ordering::Release);
    (reopens, entities)
}

/// Checks what one pass saw against what the writer acknowledged: `seen` must continue the
/// log from seq `first` with no gap, and the ids the writer got back. Events the writer
/// has written but not yet been answered for are kept in `pending` for a later look.
fn check_prefix(what: &str, first: u64, seen: &[(u64, String)], acked: &Acked, pending: &mut Vec<(u64, String)>) {
    let acked = acked.lock();
    for (i, (seq, id)) in seen.iter().enumerate() {
        assert_eq!(*seq, first + i as u64, "{what}: seqs are not consecutive from {first}");
        match acked.get(*seq as usize - 1) {
            Some((s, expected)) => assert_eq!((s, expected), (seq, id), "{what}: seq {seq} is not the acknowledged event"),
            None => pending.push((*seq, id.clone())),
        }
    }
}

/// Every committed event, in seq order.
fn all_events(inspector: &Inspector, query: &EventQuery) -> Vec<(u64, String)> {
    let mut seen = Vec::new();
    inspector
        .events(query, None, &mut |ev| {
            seen.push((ev.seq, ev.id));
            Ok(ControlFlow::Continue(()))
        })
        .unwrap_or_else(|e| panic!("events: {e}"));
    seen
}

#[derive(Debug, Default)]
struct Passes {
    full: u64,
    tail: u64,
    follower_polls: u64,
    torn_tails_reported: u64,
}

/// One pass of every read command over the whole log.
fn full_pass(dir: &Path, acked: &Acked, pending: &mut Vec<(u64, String)>, passes: &mut Passes) {
    let floor = acked.lock().len() as u64;
    let inspector = Inspector::open(dir).unwrap_or_else(|e| panic!("open: {e}"));
    let report = inspector.verify(None).unwrap_or_else(|e| panic!("verify: {e}"));
    // A torn tail is reported only when the bytes after it did not move for 4 looks 250 ms
    // apart: a writer stalled mid-frame. It is a write in flight, never other damage.
    for p in &report.problems {
        assert!(p.torn_tail && p.file == *inspector.files().segments.last().unwrap(), "verify: {p}");
        passes.torn_tails_reported += 1;
    }
    if report.is_clean() {
        assert!(report.last_seq >= floor, "verify saw up to seq {}, {floor} were acknowledged before", report.last_seq);
        assert_eq!(report.events, report.last_seq, "verify: events in good frames");
    }
    let seen = all_events(&inspector, &EventQuery::new());
    assert!(seen.len() as u64 >= floor, "events saw {} events, {floor} were acknowledged before", seen.len());
    check_prefix("events", 1, &seen, acked, pending);
    let stats = inspector.stats().unwrap_or_else(|e| panic!("stats: {e}"));
    assert!(stats.last_seq >= floor && stats.events == stats.last_seq, "stats: {} events, last seq {}", stats.events, stats.last_seq);
    passes.full += 1;
}

/// A cheap pass: the events after the last few acknowledged ones (only the newest segments
/// are read), again and again while the writer fills and seals them.
fn tail_pass(dir: &Path, acked: &Acked, pending: &mut Vec<(u64, String)>, passes: &mut Passes) {
    let floor = acked.lock().len() as u64;
    let after = floor.saturating_sub(20);
    let inspector = Inspector::open(dir).unwrap_or_else(|e| panic!("open: {e}"));
    let seen = all_events(&inspector, &EventQuery::new().after_seq(after));
    assert!(after + seen.len() as u64 >= floor, "events after seq {after}: {} events, {floor} acknowledged", seen.len());
    check_prefix("events (tail)", after + 1, &seen, acked, pending);
    passes.tail += 1;
}

#[test]
fn the_inspector_reads_a_store_that_a_writer_appends_to_rolls_and_closes() {
    let seed = rng::seed_from_env();
    println!("seed {seed} (STRATA_SEED={seed} replays the writer's choices)");
    let dir = tempfile::tempdir().unwrap();
    let acked: Acked = Arc::default();
    let done = Arc::new(AtomicBool::new(false));
    // The store exists before the reader starts: an empty directory is not a store.
    drop(Store::open(dir.path(), options()).unwrap());
    let mut follower = Follower::new(dir.path(), Some(1)).unwrap();
    let writer = {
        let (dir, acked, done) = (dir.path().to_path_buf(), acked.clone(), done.clone());
        std::thread::spawn(move || write(&dir, seed, acked, done))
    };

    let started = Instant::now();
    let mut passes = Passes::default();
    let mut pending = Vec::new();
    let mut followed = Vec::new();
    let poll = |follower: &mut Follower, followed: &mut Vec<(u64, String)>, passes: &mut Passes| {
        follower
            .poll(&mut |ev| {
                followed.push((ev.seq, ev.id));
                Ok(())
            })
            .unwrap_or_else(|e| panic!("follow: {e}"));
        passes.follower_polls += 1;
    };
    let mut round = 0u64;
    while !done.load(Ordering::Acquire) {
        if round.is_multiple_of(4) && started.elapsed() < FULL_PASSES_FOR {
            full_pass(dir.path(), &acked, &mut pending, &mut passes);
        } else {
            tail_pass(dir.path(), &acked, &mut pending, &mut passes);
        }
        poll(&mut follower, &mut followed, &mut passes);
        round += 1;
    }
    let (reopens, entities) = writer.join().expect("the writer failed");

    // The store is closed: every pass sees all of it, and the follower catches up.
    let acked_all = acked.lock().clone();
    full_pass(dir.path(), &acked, &mut pending, &mut passes);
    poll(&mut follower, &mut followed, &mut passes);
    let mut unused = Vec::new();
    check_prefix("follow", 1, &followed, &acked, &mut unused);
    assert!(unused.is_empty() && followed.len() == acked_all.len(), "the follower saw {} of {} events", followed.len(), acked_all.len());
    for (seq, id) in &pending {
        assert_eq!(acked_all.get(*seq as usize - 1), Some(&(*seq, id.clone())), "seq {seq} seen before it was acknowledged");
    }
    let inspector = Inspector::open(dir.path()).unwrap();
    let report = inspector.verify(None).unwrap();
    assert!(report.is_clean() && report.reserved_bytes == 0, "{report:?}");
    assert_eq!((report.last_seq, report.entities), (acked_all.len() as u64, entities as u64));
    assert_eq!(all_events(&inspector, &EventQuery::new()), acked_all);

    let segments = inspector.files().segments.len();
    println!(
        "{} events in {segments} segments, {reopens} reopens; {} full passes, {} tail passes, {} follower polls, \
         {} torn tails reported, {:.1} s",
        acked_all.len(),
        passes.full,
        passes.tail,
        passes.follower_polls,
        passes.torn_tails_reported,
        started.elapsed().as_secs_f64()
    );
    assert!(segments >= 40, "only {segments} segments: the writer should roll many times");
    assert!(passes.full >= 2 && passes.full + passes.tail >= 10, "too few passes ran beside the writer: {passes:?}");
}

/// The real file system, except that the first `holes` copies of `path` that cover `hole`
/// read zeros there, as a read overtaken by a write does.
#[derive(Debug)]
struct HoleStorage {
    path: PathBuf,
    hole: Range<u64>,
    holes: AtomicUsize,
}

impl Storage for HoleStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        FsStorage.create_dir_all(dir)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        FsStorage.list_dir(dir)
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        FsStorage.open(path)
    }
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        FsStorage.create_new(path)
    }
    fn read_all(&self, _path: &Path) -> io::Result<Bytes> {
        unreachable!("the inspector maps no file")
    }
    fn read_copy(&self, path: &Path) -> io::Result<Bytes> {
        self.read_copy_at(path, 0, u64::MAX)
    }
    fn read_copy_at(&self, path: &Path, offset: u64, len: u64) -> io::Result<Bytes> {
        let bytes = FsStorage.read_copy_at(path, offset, len)?;
        let end = offset + bytes.len() as u64;
        let covered = path == self.path && offset <= self.hole.start && self.hole.end <= end;
        if !covered || self.holes.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_err() {
            return Ok(bytes);
        }
        let mut bytes = bytes.to_vec();
        bytes[(self.hole.start - offset) as usize..(self.hole.end - offset) as usize].fill(0);
        Ok(Bytes::from(bytes))
    }
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        FsStorage.file_len(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        FsStorage.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        FsStorage.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        FsStorage.sync_dir(dir)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn std::any::Any + Send + Sync>>> {
        FsStorage.try_lock(path)
    }
}

#[test]
fn a_read_that_a_write_overtook_is_read_again_and_damage_that_stays_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store.append(NewEvent::create("Item", "a", json!({"n": 1}))).unwrap();
    let batch = (0..3).map(|i| NewEvent::create("Item", format!("b{i}"), json!({"n": i}))).collect();
    let written: Vec<u64> = store.append_batch(batch).unwrap().iter().map(|e| e.seq).collect();
    assert_eq!(written, [2, 3, 4]);
    // The store stays open: its only segment is the active one, with reserved space.
    let segment = dir.path().join("00000000000000000001.seg");
    // The first frame starts at 64; zeros over its length and CRC make it a bad frame that
    // the second frame, whole, follows.
    let inspector = |holes: usize| {
        let storage = HoleStorage { path: segment.clone(), hole: 64..72, holes: AtomicUsize::new(holes) };
        Inspector::open_with_storage(dir.path(), Arc::new(storage)).unwrap()
    };
    let seqs = |inspector: &Inspector| {
        let mut seqs = Vec::new();
        inspector.events(&EventQuery::new(), None, &mut |ev| {
            seqs.push(ev.seq);
            Ok(ControlFlow::Continue(()))
        })?;
        Ok::<_, Error>(seqs)
    };

    // One read with the hole: the next shows other bytes there, so it was a write in flight.
    assert_eq!(seqs(&inspector(1)).unwrap(), [1, 2, 3, 4]);
    let report = inspector(1).verify(None).unwrap();
    assert!(report.is_clean() && report.last_seq == 4, "{report:?}");
    assert_eq!(inspector(1).stats().unwrap().events, 4);

    // The hole in every read: damage, reported where it is, and not as a torn tail.
    match seqs(&inspector(usize::MAX)) {
        Err(Error::Corruption { path, offset, .. }) => assert_eq!((path, offset), (segment.clone(), 64)),
        other => panic!("expected corruption at offset 64, got {other:?}"),
    }
    let report = inspector(usize::MAX).verify(None).unwrap();
    assert_eq!(report.problems.len(), 1, "{report:?}");
    let problem = &report.problems[0];
    assert_eq!((&problem.file, problem.offset, problem.torn_tail), (&segment, 64, false));
    drop(store);
}

/// A frame lost by a crash that kept the frame after it (out-of-order writeback), in the
/// part of the newest segment the follower has not read yet: recovery calls it a torn tail
/// (the later frame's durable mark is at the lost frame), and so must the follower, whose
/// reads start past the segment's first frames. It waits, as for a write in flight.
#[test]
fn the_follower_takes_a_lost_unsynced_frame_for_a_torn_tail_as_recovery_does() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { durability: Durability::Never, ..Options::default() };
    let store = Store::open(dir.path(), options.clone()).unwrap();
    store.append(NewEvent::create("Item", "a", json!({"n": 1}))).unwrap();
    store.append(NewEvent::create("Item", "b", json!({"n": 2}))).unwrap();
    drop(store); // closed: the segment ends at its frames
    let segment = dir.path().join("00000000000000000001.seg");
    let lost_at = std::fs::metadata(&segment).unwrap().len();
    // Reopened: open synced the segment, so the next frames carry the mark `lost_at`.
    let store = Store::open(dir.path(), options.clone()).unwrap();
    let mut follower = Follower::new(dir.path(), None).unwrap();
    assert_eq!(follower.next_seq(), 3);
    for n in 3..=10 {
        store.append(NewEvent::create("Item", format!("i{n}"), json!({"n": n}))).unwrap();
    }
    drop(store);
    // The crash kept the later frames and lost the rest of the sector the third starts in
    // (written back as the zeros it held when it was synced up to `lost_at`).
    let mut bytes = std::fs::read(&segment).unwrap();
    let sector_end = (lost_at as usize / 512 + 1) * 512;
    assert!(bytes.len() > sector_end + 200, "frames after the lost sector");
    bytes[lost_at as usize..sector_end].fill(0);
    std::fs::write(&segment, &bytes).unwrap();

    let copy = tempfile::tempdir().unwrap();
    for name in ["00000000000000000001.seg", "LOCK"] {
        std::fs::copy(dir.path().join(name), copy.path().join(name)).unwrap();
    }
    let reopened = Store::open(copy.path(), options).expect("recovery: a torn tail");
    assert_eq!(reopened.events(&EventQuery::new()).unwrap().len(), 2);
    let report = Inspector::open(dir.path()).unwrap().verify(None).unwrap();
    assert!(report.problems.iter().all(|p| p.torn_tail), "{report:?}");
    assert_eq!(follower.poll(&mut |_| Ok(())).expect("the follower: a torn tail, not corruption"), 0);
}

/// A sealed segment whose trailer is damaged (its CRC, or its magic, so that it does not
/// even read as a trailer), with the log going on in later segments: the writer seals a
/// segment before it creates the next, so nothing in it is in flight, and the follower
/// reports the damage, as open does, instead of waiting for ever for a trailer.
#[test]
fn the_follower_reports_a_damaged_trailer_of_a_segment_the_writer_has_left() {
    let original = tempfile::tempdir().unwrap();
    let options = Options { durability: Durability::Never, segment_size_bytes: 4096, ..Options::default() };
    let store = Store::open(original.path(), options.clone()).unwrap();
    for n in 0..200 {
        store.append(NewEvent::create("Item", format!("i{n}"), json!({"n": n, "pad": "x".repeat(40)}))).unwrap();
    }
    drop(store);
    let first = "00000000000000000001.seg";
    for from_end in [4, 64] {
        let dir = tempfile::tempdir().unwrap();
        for entry in std::fs::read_dir(original.path()).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
        }
        let segment = dir.path().join(first);
        let mut bytes = std::fs::read(&segment).unwrap();
        let at = bytes.len() - from_end;
        bytes[at] ^= 0x01;
        std::fs::write(&segment, &bytes).unwrap();
        assert!(matches!(Store::open(dir.path(), options.clone()), Err(Error::Corruption { .. })), "open, {from_end} from the end");
        let mut follower = Follower::new(dir.path(), Some(1)).unwrap();
        match follower.poll(&mut |_| Ok(())) {
            Err(Error::Corruption { path, .. }) => assert_eq!(path, segment, "{from_end} from the end"),
            other => panic!("{from_end} from the end: expected Corruption of {}, got {other:?}", segment.display()),
        }
    }
}
