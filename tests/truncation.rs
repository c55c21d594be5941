//! Torn tails on real files: the last segment of a store is cut at every byte offset of its
//! last two frames. Every cut opens, with the default `Recovery::TolerateTornTail`, to a
//! consistent prefix: exactly the batches whose frames end at or before the cut, then
//! appends continue. With `Recovery::Strict` a cut inside a frame is an
//! `Error::Corruption` naming the segment and the offset where the cut frame starts; a cut
//! exactly between two frames is no damage at all.

mod faults;
mod layout;

use std::fs;
use std::path::{Path, PathBuf};

use faults::{assert_appends_continue, assert_holds, workload};
use strata::{Error, Event, Options, Recovery, Store};

/// The newest segment file of a store directory.
fn last_segment(dir: &Path) -> PathBuf {
    let mut segments: Vec<PathBuf> =
        fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "seg")).collect();
    segments.sort();
    segments.pop().expect("a store has a segment")
}

/// Copies a store directory (without its lock file) into a fresh temporary directory.
fn copy_store(from: &Path) -> tempfile::TempDir {
    let to = tempfile::tempdir().unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_name() != "LOCK" {
            fs::copy(entry.path(), to.path().join(entry.file_name())).unwrap();
        }
    }
    to
}

struct Fixture {
    dir: tempfile::TempDir,
    /// Every batch as stored.
    batches: Vec<Vec<Event>>,
    /// After each batch: how many batches, the last segment, and its length (the end of the
    /// batch's frame).
    frame_ends: Vec<(usize, PathBuf, u64)>,
    segment: PathBuf,
}

/// A store whose last segment holds several frames; the last two are a multi-event batch
/// and a single event (or the other way round, by `seed`).
fn fixture(seed: u64, options: &Options) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), options.clone()).unwrap();
    let mut batches = Vec::new();
    let mut frame_ends = Vec::new();
    let mut plan = workload(seed, 40, 200, 30);
    // End with one batch and one single event, in an order chosen by the seed.
    let mut tail = workload(seed ^ 1, 60, 200, 100).pop().into_iter().collect::<Vec<_>>();
    tail.push(vec![strata::NewEvent::create("Tail", "tail-single", serde_json::json!({"last": true}))]);
    if seed % 2 == 1 {
        tail.reverse();
    }
    // The batch names entities of its own workload: rename them into fresh ones.
    plan.extend(tail.into_iter().map(|b| {
        b.into_iter()
            .enumerate()
            .map(|(i, e)| {
                if e.entity().starts_with('e') {
                    strata::NewEvent::create("Tail", format!("tail-{i}"), serde_json::json!({"i": i}))
                } else {
                    e
                }
            })
            .collect()
    }));
    for batch in plan {
        batches.push(store.append_batch(batch).unwrap());
        let segment = last_segment(dir.path());
        // The end of the frames, not of the file: while the store is open, the active
        // segment ends in reserved space.
        let len = layout::frames(&segment).last().map_or(layout::SEGMENT_HEADER_BYTES, |f| f.offset + f.len) as u64;
        frame_ends.push((batches.len(), segment, len));
    }
    drop(store);
    let segment = last_segment(dir.path());
    Fixture { dir, batches, frame_ends, segment }
}

fn check_every_cut(seed: u64, options: &Options) -> usize {
    let f = fixture(seed, options);
    let n = f.frame_ends.len();
    let (before_last_two, start) = (f.frame_ends[n - 3].0, f.frame_ends[n - 3].2);
    let middle = f.frame_ends[n - 2].2;
    let end = f.frame_ends[n - 1].2;
    assert!(f.frame_ends[n - 3..].iter().all(|(_, s, _)| *s == f.segment), "seed {seed}: the last three frames must share a segment");
    assert!(start > 64 && start < middle && middle < end, "the last two frames must be in the last segment");
    let name = f.segment.file_name().unwrap().to_owned();
    let mut cases = 0;
    for cut in start..end {
        let copy = copy_store(f.dir.path());
        let segment = copy.path().join(&name);
        fs::OpenOptions::new().write(true).open(&segment).unwrap().set_len(cut).unwrap();
        let (kept_batches, frame_start) = if cut < middle { (before_last_two, start) } else { (before_last_two + 1, middle) };
        let torn = cut != frame_start;
        let context = format!("seed {seed}: cut at byte {cut} of {} (frames at {start}, {middle}, end {end})", segment.display());

        let strict = Store::open(copy.path(), Options { recovery: Recovery::Strict, ..options.clone() });
        match (torn, strict) {
            (false, Ok(_)) => {}
            (true, Err(Error::Corruption { path, offset, reason })) => {
                assert_eq!(path, segment, "{context}: Strict names the file ({reason})");
                assert_eq!(offset, frame_start, "{context}: Strict names the offset of the torn frame ({reason})");
            }
            (torn, other) => panic!("{context}: torn={torn}, Strict open gave {other:?}"),
        }

        let store = Store::open(copy.path(), options.clone()).unwrap_or_else(|e| panic!("{context}: open failed: {e}"));
        let expected: Vec<Event> = f.batches[..kept_batches].iter().flatten().cloned().collect();
        assert_holds(&store, &expected, None, &context);
        assert_eq!(fs::metadata(&segment).unwrap().len(), frame_start, "{context}: the torn tail is cut off");
        assert_appends_continue(&store, &context);
        cases += 1;
    }
    cases
}

#[test]
fn truncating_the_last_segment_at_every_offset_of_its_last_two_frames_opens_to_a_prefix() {
    let seed = faults::seed("truncating_the_last_segment_at_every_offset_of_its_last_two_frames_opens_to_a_prefix", 0x7a11);
    let options = Options { train_dictionary: false, ..Options::default() };
    let mut cases = 0;
    for s in [seed, seed + 1] {
        cases += check_every_cut(s, &options);
    }
    println!("{cases} cuts checked");
    assert!(cases > 400, "only {cases} cuts");
}

/// The same after segment rolls: the last segment follows sealed ones.
#[test]
fn truncating_the_last_segment_after_rolls_opens_to_a_prefix() {
    let seed = faults::seed("truncating_the_last_segment_after_rolls_opens_to_a_prefix", 0x7a12);
    let options = Options { segment_size_bytes: 4096, train_dictionary: false, ..Options::default() };
    let f = fixture(seed, &options);
    assert!(f.segment.file_name().unwrap() != "00000000000000000001.seg", "the fixture must roll");
    drop(f);
    let cases = check_every_cut(seed, &options);
    println!("{cases} cuts checked");
}
