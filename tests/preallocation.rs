//! Reserved space in the active segment (format version 2): the writer reserves space ahead
//! (fallocate, then writes its zeros) and writes frames into it, so a store that is open,
//! copied while open, or left by a crash has zeros after its last frame. Those zeros are the
//! clean end of the log, not a torn tail; anything else after the frames is judged as before;
//! a clean close and a seal cut the reserved space off.

#[path = "support/counting_storage.rs"]
mod counting_storage;
mod layout;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use counting_storage::CountingStorage;
use parking_lot::Mutex;
use serde_json::json;
use std::sync::atomic::Ordering;
use strata::{Durability, Error, EventQuery, FaultOp, FaultStorage, NewEvent, Options, Recovery, Store};

fn options(recovery: Recovery) -> Options {
    Options { recovery, ..Options::default() }
}

fn event(i: usize) -> NewEvent {
    if i == 0 {
        NewEvent::create("Contact", "c0", json!({"name": "Alice", "n": 0}))
    } else {
        NewEvent::update("c0", json!({"n": i, "note": format!("update number {i}")}))
    }
}

/// A copy of `dir` taken while its store is open (so with the active segment's reserved
/// space), and the data end of its only segment (the end of its last frame).
fn copy_while_open(store_dir: &Path) -> (tempfile::TempDir, PathBuf, usize) {
    let copy = tempfile::tempdir().unwrap();
    layout::copy_dir(store_dir, copy.path());
    let segments = layout::segments(copy.path());
    assert_eq!(segments.len(), 1);
    let bytes = std::fs::read(&segments[0]).unwrap();
    let data_end = layout::frames_in(&bytes).last().map(|f| f.offset + f.len).unwrap();
    (copy, segments[0].clone(), data_end)
}

/// Writes `count` events durably and copies the store while it is open.
fn store_with_reserved_space(count: usize) -> (tempfile::TempDir, PathBuf, usize) {
    let original = tempfile::tempdir().unwrap();
    let store = Store::open(original.path(), options(Recovery::Strict)).unwrap();
    for i in 0..count {
        store.append(event(i)).unwrap();
    }
    let copied = copy_while_open(original.path());
    let file_len = std::fs::metadata(&copied.1).unwrap().len() as usize;
    assert!(file_len > copied.2, "no reserved space: file {file_len} bytes, data ends at {}", copied.2);
    assert!(std::fs::read(&copied.1).unwrap()[copied.2..].iter().all(|&b| b == 0), "the reserved space must read as zeros");
    copied
}

fn write_at(path: &Path, offset: usize, data: &[u8]) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[offset..offset + data.len()].copy_from_slice(data);
    std::fs::write(path, bytes).unwrap();
}

fn expect_corruption(dir: &Path, recovery: Recovery, path: &Path, offset: u64) -> String {
    match Store::open(dir, options(recovery)) {
        Ok(store) => panic!("{recovery:?} opened a damaged store at seq {}", store.last_seq()),
        Err(Error::Corruption { path: p, offset: o, reason }) => {
            assert_eq!((p.as_path(), o), (path, offset), "{reason}");
            reason
        }
        Err(other) => panic!("{recovery:?}: expected Corruption, got {other:?}"),
    }
}

#[test]
fn reserved_space_after_clean_frames_is_the_end_of_the_log_and_appends_continue_there() {
    let (dir, segment, data_end) = store_with_reserved_space(20);
    // Strict: reserved space is not damage of any kind.
    let store = Store::open(dir.path(), options(Recovery::Strict)).unwrap();
    assert_eq!(store.last_seq(), 20);
    assert_eq!(store.get("c0").unwrap().unwrap().state["n"], 19);
    assert_eq!(store.events(&EventQuery::new()).unwrap().len(), 20);
    store.append(event(20)).unwrap();
    let bytes = std::fs::read(&segment).unwrap();
    let frames = layout::frames_in(&bytes);
    assert_eq!(frames.len(), 21);
    assert_eq!(frames[20].offset, data_end, "the next frame must start where the data ended, not after the reserved space");
    drop(store);
    assert_eq!(std::fs::metadata(&segment).unwrap().len() as usize, frames[20].offset + frames[20].len);
    let store = Store::open(dir.path(), options(Recovery::Strict)).unwrap();
    assert_eq!(store.last_seq(), 21);
    assert_eq!(store.get("c0").unwrap().unwrap().version, 21);
}

#[test]
fn a_torn_frame_followed_by_reserved_zeros_is_a_torn_tail() {
    let (dir, segment, data_end) = store_with_reserved_space(10);
    let bytes = std::fs::read(&segment).unwrap();
    let last = layout::frames_in(&bytes).pop().unwrap();
    // Zero the second half of the last frame: what a crash leaves when only the first pages
    // of a write into reserved space reached the disk.
    let half = last.offset + last.len / 2;
    write_at(&segment, half, &vec![0u8; data_end - half]);
    let reason = expect_corruption(dir.path(), Recovery::Strict, &segment, last.offset as u64);
    assert!(reason.contains("torn tail"), "{reason}");
    let store = Store::open(dir.path(), options(Recovery::TolerateTornTail)).unwrap();
    assert_eq!(store.last_seq(), 9);
    store.append(event(10)).unwrap();
    drop(store);
    let frames = layout::frames(&segment);
    assert_eq!((frames.len(), frames[9].offset), (10, last.offset), "the new frame replaces the torn one");
    assert_eq!(Store::open(dir.path(), options(Recovery::Strict)).unwrap().last_seq(), 10);
}

#[test]
fn non_zero_bytes_after_the_zeros_are_judged_as_before() {
    // Garbage after the zeros: the zeros are not the end, so the first zero byte is a bad
    // frame with nothing valid after it, a torn tail (Strict refuses it, the default cuts it).
    let (dir, segment, data_end) = store_with_reserved_space(10);
    let len = std::fs::metadata(&segment).unwrap().len() as usize;
    write_at(&segment, len - 100, &[0xA5; 50]);
    expect_corruption(dir.path(), Recovery::Strict, &segment, data_end as u64);
    assert_eq!(Store::open(dir.path(), options(Recovery::TolerateTornTail)).unwrap().last_seq(), 10);
    assert_eq!(std::fs::metadata(&segment).unwrap().len() as usize, data_end);

    // Zeros followed by a valid frame that proves them durable (its durable mark is past
    // them: it was written after they were synced): corruption, whatever the recovery mode
    // short of salvage.
    let original = tempfile::tempdir().unwrap();
    let store = Store::open(original.path(), options(Recovery::Strict)).unwrap();
    for i in 0..12 {
        store.append(event(i)).unwrap();
    }
    let (dir, segment, _) = copy_while_open(original.path());
    let bytes = std::fs::read(&segment).unwrap();
    let frames = layout::frames_in(&bytes);
    let (eleventh, end10) = (frames[10].clone(), frames[9].offset + frames[9].len);
    assert_eq!(eleventh.offset, end10);
    drop(store);
    let mut damaged = bytes.clone();
    damaged[end10..end10 + eleventh.len].fill(0);
    std::fs::write(&segment, &damaged).unwrap();
    let reason = expect_corruption(dir.path(), Recovery::TolerateTornTail, &segment, end10 as u64);
    assert!(!reason.contains("torn tail"), "{reason}");

    // The same zeros followed by a valid frame written before they were synced (the 11th
    // frame moved 4 KiB further, its mark the end of the 10th): what a crash that wrote the
    // pages back out of order leaves, a torn tail the default recovery cuts.
    let frame_bytes = bytes[eleventh.offset..eleventh.offset + eleventh.len].to_vec();
    let mut moved = bytes[..frames[11].offset].to_vec();
    moved.resize(end10 + 4096 + frame_bytes.len() + 512, 0);
    moved[end10..end10 + frame_bytes.len()].fill(0);
    moved[end10 + 4096..end10 + 4096 + frame_bytes.len()].copy_from_slice(&frame_bytes);
    std::fs::write(&segment, &moved).unwrap();
    expect_corruption(dir.path(), Recovery::Strict, &segment, end10 as u64);
    assert_eq!(Store::open(dir.path(), options(Recovery::TolerateTornTail)).unwrap().last_seq(), 10);
}

/// Reserved space is written (zeros), not only allocated: frames then overwrite blocks the
/// file system holds as data, so an fdatasync has no unwritten extent to convert
/// (format-spec.md, section 3.4).
#[test]
fn reserving_space_writes_its_zeros_once() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(CountingStorage::default());
    let written = fs.written.clone();
    let store = Store::open_with_storage(dir.path(), options(Recovery::Strict), fs).unwrap();
    let before = written.load(Ordering::Relaxed);
    store.append(event(0)).unwrap();
    let first = written.load(Ordering::Relaxed) - before;
    let (copy, segment, data_end) = copy_while_open(dir.path());
    let file_len = std::fs::metadata(&segment).unwrap().len();
    let reserved = file_len - data_end as u64;
    assert!(reserved >= 512 << 10, "the first append reserves a step of space: {reserved} bytes");
    assert!(first >= reserved, "the reserved zeros must be written: {first} bytes written for {reserved} reserved");
    drop(copy);
    // The appends that fit in the reserved space write only their frames.
    let before = written.load(Ordering::Relaxed);
    for i in 1..50 {
        store.append(event(i)).unwrap();
    }
    let later = written.load(Ordering::Relaxed) - before;
    assert!(later < 64 << 10, "49 small appends inside reserved space wrote {later} bytes");
    drop(store);
    assert_eq!(Store::open(dir.path(), options(Recovery::Strict)).unwrap().last_seq(), 50);
}

#[test]
fn a_cleanly_closed_store_has_no_reserved_space() {
    let dir = tempfile::tempdir().unwrap();
    let options = Options { segment_size_bytes: 4 << 10, ..options(Recovery::Strict) };
    for round in 0..3 {
        let store = Store::open(dir.path(), options.clone()).unwrap();
        for i in 0..60 {
            store.append(event(round * 60 + i)).unwrap();
        }
        drop(store);
        // Every segment, sealed or active, ends at its data: no zero tail.
        for segment in layout::segments(dir.path()) {
            let bytes = std::fs::read(&segment).unwrap();
            let end = match layout::trailer_index_offset(&bytes) {
                Some(_) => bytes.len(),
                None => layout::frames_in(&bytes).last().map_or(layout::SEGMENT_HEADER_BYTES, |f| f.offset + f.len),
            };
            assert_eq!(bytes.len(), end, "round {round}: {} has a tail", segment.display());
        }
    }
    assert!(layout::segments(dir.path()).len() > 3, "the workload must roll segments");
    let store = Store::open(dir.path(), options).unwrap();
    assert_eq!(store.last_seq(), 180);
}

#[test]
fn the_inspector_reports_reserved_space_as_neither_damage_nor_data() {
    let (dir, _segment, data_end) = store_with_reserved_space(5);
    let inspector = strata::inspect::Inspector::open(dir.path()).unwrap();
    let report = inspector.verify(None).unwrap();
    assert!(report.is_clean(), "{:?}", report.problems);
    assert_eq!(report.last_seq, 5);
    let (segments, problems) = inspector.segments().unwrap();
    assert!(problems.is_empty());
    assert_eq!(segments[0].uncommitted_bytes, 0);
    assert_eq!(segments[0].reserved_bytes, segments[0].file_bytes - data_end as u64);
    assert_eq!(report.reserved_bytes, segments[0].reserved_bytes);
    assert!(report.reserved_bytes > 0);
    assert_eq!(inspector.stats().unwrap().reserved_bytes, report.reserved_bytes);
}

/// Runs `appends` single-event appends on `storage` (4 KiB segments, so several seals and
/// reservations); returns the seqs acknowledged before the first failure.
fn workload(storage: &FaultStorage, appends: usize) -> Vec<u64> {
    let options = Options { segment_size_bytes: 4 << 10, train_dictionary: false, ..options(Recovery::TolerateTornTail) };
    let Ok(store) = Store::open_with_storage("/db", options, Arc::new(storage.clone())) else { return Vec::new() };
    let mut acked = Vec::new();
    for i in 0..appends {
        match store.append(event(i)) {
            Ok(ev) => acked.push(ev.seq),
            Err(_) => break,
        }
    }
    acked
}

#[test]
fn a_crash_between_a_reservation_and_its_sync_loses_nothing_acknowledged() {
    let appends = 150;
    // Find the mutations that reserve space.
    let probe = FaultStorage::new(1);
    let reservations = Arc::new(Mutex::new(Vec::new()));
    {
        let (seen, probe2) = (reservations.clone(), probe.clone());
        probe.set_mutation_hook(Some(Arc::new(move |mutation| {
            if probe2.count(FaultOp::Allocate) > seen.lock().len() as u64 {
                seen.lock().push(mutation);
            }
        })));
    }
    assert_eq!(workload(&probe, appends).len(), appends);
    let reservations = reservations.lock().clone();
    assert!(reservations.len() >= 3, "only {} reservations", reservations.len());
    let mut cases = 0;
    for &at in &reservations {
        // Power lost right after the reservation, and after the write into it (both before
        // the sync that makes them durable).
        for cut in [at, at + 1] {
            for seed in 0..8 {
                let storage = FaultStorage::new(seed);
                storage.cut_power_after(cut);
                let acked = workload(&storage, appends);
                let outcome = storage.crash();
                let context = format!("power cut after mutation {cut} (a reservation at {at}), seed {seed}: {outcome}");
                let store = Store::open_with_storage("/db", options(Recovery::TolerateTornTail), Arc::new(storage.clone()))
                    .unwrap_or_else(|e| panic!("{context}: reopen failed: {e}"));
                let last = acked.last().copied().unwrap_or(0);
                assert!(store.last_seq() >= last, "{context}: lost acknowledged events (last {last}, now {})", store.last_seq());
                assert!(store.last_seq() <= last + 1, "{context}: more events than were written");
                let next = store.append(NewEvent::create("Marker", "after-crash", json!({}))).unwrap();
                drop(store);
                let store = Store::open_with_storage("/db", options(Recovery::Strict), Arc::new(storage.clone())).unwrap();
                assert_eq!(store.last_seq(), next.seq, "{context}");
                cases += 1;
            }
        }
    }
    assert!(cases >= 48, "only {cases} cases");
}

#[test]
fn durability_never_writes_into_reserved_space_and_a_crash_keeps_a_prefix() {
    // Unsynced writes into reserved space: a crash keeps some prefix of them (and the store
    // opens on the reserved zeros after it).
    let options = Options { durability: Durability::Never, train_dictionary: false, ..options(Recovery::TolerateTornTail) };
    for seed in 0..16 {
        let storage = FaultStorage::new(seed);
        {
            let store = Store::open_with_storage("/db", options.clone(), Arc::new(storage.clone())).unwrap();
            store.append(event(0)).unwrap();
            store.sync().unwrap();
            for i in 1..30 {
                store.append(event(i)).unwrap();
            }
            storage.crash();
        }
        let store = Store::open_with_storage("/db", options.clone(), Arc::new(storage.clone())).unwrap();
        let last = store.last_seq();
        assert!((1..=30).contains(&last), "seed {seed}: last seq {last}");
        let history = store.history("c0").unwrap();
        assert_eq!(history.len() as u64, last, "seed {seed}");
    }
}
