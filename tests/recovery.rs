//! Torn tails versus corruption, on real files: write a store, cut or damage its bytes,
//! reopen. A torn tail (what a crash mid-write leaves) is cut off and appends continue;
//! anything else is `Error::Corruption` naming the file and offset, unless
//! `Recovery::SalvagePrefix` keeps the good prefix and moves the rest aside.

mod layout;

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};

use serde_json::json;
use strata::{Durability, Error, EventQuery, NewEvent, Options, Recovery, Store};

fn options(recovery: Recovery) -> Options {
    Options { recovery, durability: Durability::Never, ..Options::default() }
}

/// Writes a store of `count` single-event commits (one frame each) into `dir`, each synced
/// (`Durability::Always`), so that every frame's durable mark is the end of the frame before
/// it: damage to any frame but the last is proven durable by the frame after it
/// (format-spec.md, section 10).
fn write_store(dir: &Path, count: usize, segment_size_bytes: u64) {
    let options = Options { segment_size_bytes, durability: Durability::Always, ..options(Recovery::Strict) };
    let store = Store::open(dir, options).unwrap();
    store.append(NewEvent::create("Contact", "c0", json!({"name": "Alice", "n": 0}))).unwrap();
    for i in 1..count {
        if i % 5 == 0 {
            store.append(NewEvent::create("Contact", format!("c{i}"), json!({"name": format!("Person {i}"), "n": i}))).unwrap();
        } else {
            store.append(NewEvent::update("c0", json!({"n": i, "note": format!("update number {i}")}))).unwrap();
        }
    }
}

fn truncate(path: &Path, len: usize) {
    OpenOptions::new().write(true).open(path).unwrap().set_len(len as u64).unwrap();
}

fn flip(path: &Path, at: usize) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[at] ^= 0x20;
    std::fs::write(path, bytes).unwrap();
}

/// A fresh copy of `original` to damage.
fn copy_of(original: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    layout::copy_dir(original, dir.path());
    dir
}

/// Opens, checks the last seq, appends one event and reopens to check it stayed.
fn opens_and_continues(dir: &Path, recovery: Recovery, expected_last_seq: u64) {
    let store = Store::open(dir, options(recovery)).unwrap();
    assert_eq!(store.last_seq(), expected_last_seq);
    let all = store.events(&EventQuery::new()).unwrap();
    assert_eq!(all.len() as u64, expected_last_seq);
    let ev = store.append(NewEvent::create("Marker", "after-recovery", json!({}))).unwrap();
    assert_eq!(ev.seq, expected_last_seq + 1);
    drop(store);
    let store = Store::open(dir, options(Recovery::Strict)).unwrap();
    assert_eq!(store.last_seq(), expected_last_seq + 1);
    assert_eq!(store.get("after-recovery").unwrap().unwrap().version, 1);
}

fn expect_corruption(dir: &Path, recovery: Recovery, path: &Path, offset: Option<u64>) -> String {
    match Store::open(dir, options(recovery)) {
        Ok(store) => panic!("{recovery:?} opened a damaged store at seq {}", store.last_seq()),
        Err(Error::Corruption { path: p, offset: o, reason }) => {
            assert_eq!(p, path, "{reason}");
            if let Some(offset) = offset {
                assert_eq!(o, offset, "{reason}");
            }
            reason
        }
        Err(other) => panic!("{recovery:?}: expected Corruption, got {other:?}"),
    }
}

fn only_segment(dir: &Path) -> PathBuf {
    let segments = layout::segments(dir);
    assert_eq!(segments.len(), 1);
    segments[0].clone()
}

#[test]
fn torn_tail_is_truncated_at_every_cut_inside_the_last_frame() {
    let original = tempfile::tempdir().unwrap();
    write_store(original.path(), 20, 64 << 20);
    let seg = only_segment(original.path());
    let frames = layout::frames(&seg);
    assert_eq!(frames.len(), 20);
    let last = frames.last().unwrap().clone();
    let state_before_last = {
        let store = Store::open(original.path(), options(Recovery::Strict)).unwrap();
        store.get_version("c0", store.get("c0").unwrap().unwrap().version - 1).unwrap()
    };
    for cut in last.offset..last.offset + last.len {
        let dir = copy_of(original.path());
        let seg = only_segment(dir.path());
        truncate(&seg, cut);
        {
            let store = Store::open(dir.path(), options(Recovery::TolerateTornTail)).unwrap();
            assert_eq!(store.last_seq(), 19, "cut at {cut}");
            assert_eq!(store.get("c0").unwrap(), state_before_last, "cut at {cut}");
        }
        // The torn bytes are gone from the file.
        assert_eq!(std::fs::metadata(&seg).unwrap().len() as usize, last.offset, "cut at {cut}");
        opens_and_continues(dir.path(), Recovery::TolerateTornTail, 19);
    }
}

#[test]
fn torn_tail_is_corruption_under_strict_recovery_and_nothing_is_cut() {
    let original = tempfile::tempdir().unwrap();
    write_store(original.path(), 20, 64 << 20);
    let seg = only_segment(original.path());
    let last = layout::frames(&seg).last().unwrap().clone();
    for cut in last.offset + 1..last.offset + last.len {
        let dir = copy_of(original.path());
        let seg = only_segment(dir.path());
        truncate(&seg, cut);
        let reason = expect_corruption(dir.path(), Recovery::Strict, &seg, Some(last.offset as u64));
        assert!(reason.contains("torn"), "cut at {cut}: {reason}");
        assert_eq!(std::fs::metadata(&seg).unwrap().len() as usize, cut, "Strict changed the file");
    }
    // A cut exactly at a frame boundary leaves a clean log, which Strict opens.
    let dir = copy_of(original.path());
    truncate(&only_segment(dir.path()), last.offset);
    opens_and_continues(dir.path(), Recovery::Strict, 19);
}

#[test]
fn torn_tail_inside_a_large_batch_frame_drops_the_whole_batch() {
    let original = tempfile::tempdir().unwrap();
    {
        let store = Store::open(original.path(), options(Recovery::Strict)).unwrap();
        store.append(NewEvent::create("Contact", "c0", json!({}))).unwrap();
        let batch = (0..1000).map(|i| NewEvent::create("Deal", format!("d{i}"), json!({"amount": i, "stage": "Open"}))).collect();
        store.append_batch(batch).unwrap();
    }
    let seg = only_segment(original.path());
    let last = layout::frames(&seg).last().unwrap().clone();
    assert!(last.codecs.len() > 2, "the batch should span several chunks: {last:?}");
    for cut in (last.offset + 1..last.offset + last.len).step_by(97) {
        let dir = copy_of(original.path());
        truncate(&only_segment(dir.path()), cut);
        let store = Store::open(dir.path(), options(Recovery::TolerateTornTail)).unwrap();
        assert_eq!(store.last_seq(), 1, "cut at {cut}");
        assert_eq!(store.get("d0").unwrap(), None, "cut at {cut}: part of a torn batch is visible");
    }
}

#[test]
fn zeroed_bytes_after_the_last_frame_are_a_torn_tail() {
    let original = tempfile::tempdir().unwrap();
    write_store(original.path(), 10, 64 << 20);
    for zeros in [1usize, 47, 48, 4096] {
        let dir = copy_of(original.path());
        let seg = only_segment(dir.path());
        let len = std::fs::metadata(&seg).unwrap().len() as usize;
        truncate(&seg, len + zeros);
        opens_and_continues(dir.path(), Recovery::TolerateTornTail, 10);
        assert_eq!(layout::frames(&seg).len(), 11);
    }
}

#[test]
fn a_bad_crc_in_the_last_frame_is_a_torn_tail() {
    let original = tempfile::tempdir().unwrap();
    write_store(original.path(), 10, 64 << 20);
    let last = layout::frames(&only_segment(original.path())).last().unwrap().clone();
    let dir = copy_of(original.path());
    flip(&only_segment(dir.path()), last.offset + last.len - 1);
    expect_corruption(dir.path(), Recovery::Strict, &only_segment(dir.path()), Some(last.offset as u64));
    opens_and_continues(dir.path(), Recovery::TolerateTornTail, 9);
}

#[test]
fn bit_flip_in_a_middle_frame_of_the_last_segment_is_corruption_naming_file_and_offset() {
    let original = tempfile::tempdir().unwrap();
    write_store(original.path(), 20, 64 << 20);
    let seg = only_segment(original.path());
    let middle = layout::frames(&seg)[10].clone();
    for at in middle.offset..middle.offset + middle.len {
        let dir = copy_of(original.path());
        let seg = only_segment(dir.path());
        flip(&seg, at);
        let damaged = std::fs::read(&seg).unwrap();
        for recovery in [Recovery::TolerateTornTail, Recovery::Strict] {
            expect_corruption(dir.path(), recovery, &seg, Some(middle.offset as u64));
        }
        assert_eq!(std::fs::read(&seg).unwrap(), damaged, "a failed open changed the segment");
    }
}

/// `Durability::Never`: no frame's durable mark proves the frames before it durable (the
/// store synced only when closed), yet a flipped bit in a middle frame is damage to bytes
/// that were written, not the zeros a lost write leaves: corruption, as with marks. (Before
/// the zeros rule, open cut the log there and dropped every synced event after it.)
#[test]
fn bit_flip_in_a_middle_frame_no_mark_covers_is_corruption() {
    let original = tempfile::tempdir().unwrap();
    let store = Store::open(original.path(), options(Recovery::Strict)).unwrap();
    store.append(NewEvent::create("Contact", "c0", json!({"name": "Alice", "n": 0}))).unwrap();
    for i in 1..40 {
        store.append(NewEvent::update("c0", json!({"n": i, "note": format!("update number {i}")}))).unwrap();
    }
    store.sync().unwrap();
    drop(store);
    let seg = only_segment(original.path());
    let middle = layout::frames(&seg)[2].clone();
    for at in middle.offset..middle.offset + middle.len {
        let dir = copy_of(original.path());
        let seg = only_segment(dir.path());
        flip(&seg, at);
        for recovery in [Recovery::TolerateTornTail, Recovery::Strict] {
            expect_corruption(dir.path(), recovery, &seg, Some(middle.offset as u64));
        }
        let report = strata::inspect::Inspector::open(dir.path()).unwrap().verify(None).unwrap();
        assert!(report.problems.iter().any(|p| p.file == seg && !p.torn_tail), "flip at {at}: {report:?}");
    }
    // The zeros of a lost write there (the rest of the frame's first sector and everything
    // after it up to the next sector) are a torn tail: the frames after it were written
    // before it was synced, and a crash may keep them and lose it.
    let dir = copy_of(original.path());
    let seg = only_segment(dir.path());
    let mut bytes = std::fs::read(&seg).unwrap();
    let sector_end = (middle.offset / 512 + 1) * 512;
    let frames = layout::frames(&seg);
    assert!(frames.iter().any(|f| f.offset > sector_end), "frames past the zeroed sector");
    bytes[middle.offset..sector_end].fill(0);
    std::fs::write(&seg, &bytes).unwrap();
    expect_corruption(dir.path(), Recovery::Strict, &seg, Some(middle.offset as u64));
    opens_and_continues(dir.path(), Recovery::TolerateTornTail, 2);
}

#[test]
fn a_damaged_segment_header_is_corruption_at_offset_zero() {
    let original = tempfile::tempdir().unwrap();
    write_store(original.path(), 10, 64 << 20);
    // Every header byte except the magic, whose damage makes the directory not a store.
    for at in 8..layout::SEGMENT_HEADER_BYTES {
        let dir = copy_of(original.path());
        let seg = only_segment(dir.path());
        flip(&seg, at);
        expect_corruption(dir.path(), Recovery::TolerateTornTail, &seg, Some(0));
    }
}

/// A store of several segments of about 1 KiB; returns the segment paths.
fn write_segmented(dir: &Path) -> Vec<PathBuf> {
    write_store(dir, 60, 1024);
    let segments = layout::segments(dir);
    assert!(segments.len() >= 4, "only {} segments", segments.len());
    segments
}

#[test]
fn bit_flip_in_a_sealed_segment_is_reported_wherever_it_lands() {
    let original = tempfile::tempdir().unwrap();
    let segments = write_segmented(original.path());
    let first = std::fs::read(&segments[0]).unwrap();
    let frames = layout::frames_in(&first);
    let frames_end = layout::trailer_index_offset(&first).unwrap();
    assert_eq!(frames_end, frames.last().map(|f| f.offset + f.len).unwrap());
    for at in 0..first.len() {
        let dir = copy_of(original.path());
        let seg = layout::segments(dir.path())[0].clone();
        flip(&seg, at);
        let expected_offset = if at < layout::SEGMENT_HEADER_BYTES {
            Some(0)
        } else if at < frames_end {
            frames.iter().find(|f| f.offset <= at && at < f.offset + f.len).map(|f| f.offset as u64)
        } else {
            None // somewhere in the trailer
        };
        for recovery in [Recovery::TolerateTornTail, Recovery::Strict] {
            let reason = expect_corruption(dir.path(), recovery, &seg, expected_offset);
            assert!(!reason.is_empty());
        }
    }
}

#[test]
fn a_missing_middle_segment_is_a_seq_gap() {
    let original = tempfile::tempdir().unwrap();
    let segments = write_segmented(original.path());
    let dir = copy_of(original.path());
    let names: Vec<PathBuf> = layout::segments(dir.path());
    std::fs::remove_file(&names[1]).unwrap();
    for recovery in [Recovery::TolerateTornTail, Recovery::Strict] {
        let reason = expect_corruption(dir.path(), recovery, &names[2], None);
        assert!(reason.contains("seq"), "{reason}");
    }
    assert_eq!(layout::segments(dir.path()).len(), segments.len() - 1, "a failed open moved files");
}

#[test]
fn a_missing_first_segment_is_a_seq_gap() {
    let original = tempfile::tempdir().unwrap();
    write_segmented(original.path());
    let dir = copy_of(original.path());
    let names = layout::segments(dir.path());
    std::fs::remove_file(&names[0]).unwrap();
    let reason = expect_corruption(dir.path(), Recovery::TolerateTornTail, &names[1], None);
    assert!(reason.contains("seq"), "{reason}");
}

#[test]
fn a_sealed_segment_without_a_successor_opens_and_continues() {
    // What a crash between sealing a segment and creating the next one leaves.
    let original = tempfile::tempdir().unwrap();
    write_segmented(original.path());
    let dir = copy_of(original.path());
    let names = layout::segments(dir.path());
    let last = names.last().unwrap();
    let sealed = &names[names.len() - 2];
    let sealed_frames = layout::frames(sealed);
    let kept = sealed_frames.last().map(|f| f.base_seq + u64::from(f.record_count) - 1).unwrap();
    std::fs::remove_file(last).unwrap();
    // Nothing is damaged, so even Strict opens it.
    opens_and_continues(dir.path(), Recovery::Strict, kept);
    // The next segment is created under the name of the next seq.
    let after = layout::segments(dir.path());
    assert_eq!(after.len(), names.len());
    assert_eq!(after.last().unwrap(), last);
    assert_eq!(layout::frames(last)[0].base_seq, kept + 1);
}

#[test]
fn a_partially_written_new_segment_is_a_torn_creation() {
    let original = tempfile::tempdir().unwrap();
    write_segmented(original.path());
    let names = layout::segments(original.path());
    let last = names.last().unwrap();
    let header: Vec<u8> = std::fs::read(last).unwrap()[..layout::SEGMENT_HEADER_BYTES].to_vec();
    let kept = layout::frames(last)[0].base_seq - 1;
    let mut zero_tail = header.clone();
    zero_tail[50..].fill(0);
    let partials: Vec<Vec<u8>> =
        vec![Vec::new(), header[..1].to_vec(), header[..8].to_vec(), header[..30].to_vec(), header[..63].to_vec(), zero_tail];
    for partial in partials {
        let dir = copy_of(original.path());
        let last = layout::segments(dir.path()).pop().unwrap();
        std::fs::write(&last, &partial).unwrap();
        expect_corruption(dir.path(), Recovery::Strict, &last, Some(0));
        opens_and_continues(dir.path(), Recovery::TolerateTornTail, kept);
        assert_eq!(layout::frames(&last)[0].base_seq, kept + 1, "{} header bytes", partial.len());
    }
}

#[test]
fn salvage_prefix_keeps_frames_before_a_bad_one_and_moves_the_rest_aside() {
    let original = tempfile::tempdir().unwrap();
    write_store(original.path(), 20, 64 << 20);
    let seg = only_segment(original.path());
    let bytes = std::fs::read(&seg).unwrap();
    let middle = layout::frames(&seg)[10].clone();
    let dir = copy_of(original.path());
    let seg = only_segment(dir.path());
    flip(&seg, middle.offset + middle.len / 2);
    let expected_aside = {
        let mut b = bytes[middle.offset..].to_vec();
        b[middle.len / 2] ^= 0x20;
        b
    };
    {
        let store = Store::open(dir.path(), options(Recovery::SalvagePrefix)).unwrap();
        assert_eq!(store.last_seq(), middle.base_seq - 1);
    }
    let aside = dir.path().join(format!("{}.{}.salvaged", seg.file_name().unwrap().to_string_lossy(), middle.offset));
    assert_eq!(std::fs::read(&aside).unwrap(), expected_aside, "the salvaged file must hold exactly the bytes cut off");
    assert_eq!(std::fs::read(&seg).unwrap(), bytes[..middle.offset]);
    opens_and_continues(dir.path(), Recovery::SalvagePrefix, middle.base_seq - 1);
    // The salvage file is never read and never deleted.
    assert!(aside.exists());
}

#[test]
fn salvage_prefix_of_a_sealed_segment_moves_later_segments_aside() {
    let original = tempfile::tempdir().unwrap();
    let segments = write_segmented(original.path());
    let first = layout::frames(&segments[0]);
    let bad = first[first.len() / 2].clone();
    let dir = copy_of(original.path());
    let names = layout::segments(dir.path());
    flip(&names[0], bad.offset + layout::FRAME_HEADER_BYTES);
    Store::open(dir.path(), options(Recovery::SalvagePrefix)).unwrap();
    let aside = dir.path().join(format!("{}.{}.salvaged", names[0].file_name().unwrap().to_string_lossy(), bad.offset));
    assert!(aside.exists());
    for (name, original_path) in names.iter().zip(&segments).skip(1) {
        let moved = PathBuf::from(format!("{}.salvaged", name.display()));
        assert_eq!(std::fs::read(&moved).unwrap(), std::fs::read(original_path).unwrap());
        assert!(!name.exists(), "{} is still in the log", name.display());
    }
    opens_and_continues(dir.path(), Recovery::SalvagePrefix, bad.base_seq - 1);
}

#[test]
fn salvage_prefix_of_a_damaged_trailer_keeps_the_segment_s_frames() {
    let original = tempfile::tempdir().unwrap();
    let segments = write_segmented(original.path());
    let bytes = std::fs::read(&segments[0]).unwrap();
    let frames = layout::frames_in(&bytes);
    let kept = frames.last().map(|f| f.base_seq + u64::from(f.record_count) - 1).unwrap();
    // Once in the trailer's index entries, once in its footer.
    for at in [layout::trailer_index_offset(&bytes).unwrap() + 3, bytes.len() - 20] {
        let dir = copy_of(original.path());
        let seg = layout::segments(dir.path())[0].clone();
        flip(&seg, at);
        let damaged = std::fs::read(&seg).unwrap();
        let footer_at = damaged.len() - layout::FOOTER_BYTES;
        expect_corruption(dir.path(), Recovery::TolerateTornTail, &seg, Some(footer_at as u64));
        let store = Store::open(dir.path(), options(Recovery::SalvagePrefix)).unwrap();
        assert_eq!(store.last_seq(), kept, "flip at {at}");
        drop(store);
        // Nothing was dropped: the segment and the pieces moved aside add up to the file.
        let frames_end = layout::trailer_index_offset(&bytes).unwrap();
        let name = seg.file_name().unwrap().to_string_lossy().into_owned();
        let mut rebuilt = std::fs::read(&seg).unwrap();
        assert_eq!(rebuilt.len(), frames_end);
        rebuilt.extend(std::fs::read(dir.path().join(format!("{name}.{frames_end}.salvaged"))).unwrap());
        rebuilt.extend(std::fs::read(dir.path().join(format!("{name}.{footer_at}.salvaged"))).unwrap());
        assert_eq!(rebuilt, damaged);
        opens_and_continues(dir.path(), Recovery::SalvagePrefix, kept);
    }
}

#[test]
fn salvage_prefix_of_a_seq_gap_keeps_the_segments_before_it() {
    let original = tempfile::tempdir().unwrap();
    write_segmented(original.path());
    let dir = copy_of(original.path());
    let names = layout::segments(dir.path());
    let before_gap = layout::frames(&names[0]);
    let kept = before_gap.last().map(|f| f.base_seq + u64::from(f.record_count) - 1).unwrap();
    let after_gap = std::fs::read(&names[2]).unwrap();
    std::fs::remove_file(&names[1]).unwrap();
    Store::open(dir.path(), options(Recovery::SalvagePrefix)).unwrap();
    let moved = PathBuf::from(format!("{}.salvaged", names[2].display()));
    assert_eq!(std::fs::read(&moved).unwrap(), after_gap, "the segment after the gap must be moved aside whole");
    opens_and_continues(dir.path(), Recovery::SalvagePrefix, kept);
}

#[test]
fn a_torn_tail_in_a_store_with_a_dictionary_is_truncated() {
    let original = tempfile::tempdir().unwrap();
    {
        let store = Store::open(original.path(), options(Recovery::Strict)).unwrap();
        for i in 0..1000 {
            let data = json!({"name": format!("Person {i}"), "email": format!("p{i}@example.com"), "stage": "Lead", "owner": "agent_1"});
            store.append(NewEvent::create("Contact", format!("c{i}"), data)).unwrap();
        }
    }
    assert!(original.path().join("dict-0000000001.zdict").exists());
    let last = layout::frames(&only_segment(original.path())).last().unwrap().clone();
    assert_eq!(last.codecs, [2]);
    let dir = copy_of(original.path());
    truncate(&only_segment(dir.path()), last.offset + last.len - 3);
    opens_and_continues(dir.path(), Recovery::TolerateTornTail, 999);
}

#[test]
fn a_damaged_dictionary_is_corruption_naming_it() {
    let original = tempfile::tempdir().unwrap();
    {
        let store = Store::open(original.path(), options(Recovery::Strict)).unwrap();
        for i in 0..1000 {
            let data = json!({"name": format!("Person {i}"), "email": format!("p{i}@example.com"), "stage": "Lead", "owner": "agent_1"});
            store.append(NewEvent::create("Contact", format!("c{i}"), data)).unwrap();
        }
    }
    let dict = original.path().join("dict-0000000001.zdict");
    let len = std::fs::metadata(&dict).unwrap().len() as usize;
    for at in [0, 13, 30, len - 1] {
        let dir = copy_of(original.path());
        let dict = dir.path().join("dict-0000000001.zdict");
        flip(&dict, at);
        for recovery in [Recovery::TolerateTornTail, Recovery::SalvagePrefix] {
            match Store::open(dir.path(), options(recovery)) {
                Err(Error::Corruption { path, .. }) => assert_eq!(path, dict),
                other => panic!("flip at {at}: expected Corruption of the dictionary, got {other:?}"),
            }
        }
    }
    // A missing dictionary is just as fatal: frames need it.
    let dir = copy_of(original.path());
    std::fs::remove_file(dir.path().join("dict-0000000001.zdict")).unwrap();
    match Store::open(dir.path(), options(Recovery::TolerateTornTail)) {
        Err(Error::Corruption { reason, .. }) => assert!(reason.contains("dictionary"), "{reason}"),
        other => panic!("expected Corruption, got {other:?}"),
    }
}

/// A dictionary file grown far past any dictionary (here a sparse 1 TiB file) is damage
/// like any other: open reads no more of it than a dictionary can take, and reports it.
#[test]
fn a_dictionary_file_far_over_the_size_limit_is_corruption_not_an_allocation() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open(dir.path(), options(Recovery::Strict)).unwrap());
    let dict = dir.path().join("dict-0000000001.zdict");
    std::fs::File::create(&dict).unwrap().set_len(1 << 40).unwrap();
    for recovery in [Recovery::TolerateTornTail, Recovery::SalvagePrefix] {
        match Store::open(dir.path(), options(recovery)) {
            Err(Error::Corruption { path, .. }) => assert_eq!(path, dict),
            other => panic!("expected Corruption of the dictionary, got {other:?}"),
        }
    }
    let report = strata::inspect::Inspector::open(dir.path()).unwrap().verify(None).unwrap();
    assert!(report.problems.iter().any(|p| p.file == dict), "{report:?}");
}

#[test]
fn leftover_temporary_files_are_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path(), 5, 64 << 20);
    let tmp = dir.path().join("dict-0000000001.zdict.tmp");
    std::fs::write(&tmp, b"half a dictionary").unwrap();
    let foreign = dir.path().join("notes.tmp");
    std::fs::write(&foreign, b"not ours").unwrap();
    opens_and_continues(dir.path(), Recovery::Strict, 5);
    assert!(!tmp.exists());
    assert!(foreign.exists(), "a temporary file strata did not write was removed");
}

#[test]
fn salvage_prefix_keeps_even_a_torn_tail_aside() {
    let original = tempfile::tempdir().unwrap();
    write_store(original.path(), 10, 64 << 20);
    let last = layout::frames(&only_segment(original.path())).last().unwrap().clone();
    let dir = copy_of(original.path());
    let seg = only_segment(dir.path());
    let cut = last.offset + last.len - 5;
    truncate(&seg, cut);
    let torn = std::fs::read(&seg).unwrap()[last.offset..].to_vec();
    Store::open(dir.path(), options(Recovery::SalvagePrefix)).unwrap();
    let aside = dir.path().join(format!("{}.{}.salvaged", seg.file_name().unwrap().to_string_lossy(), last.offset));
    assert_eq!(std::fs::read(aside).unwrap(), torn);
    opens_and_continues(dir.path(), Recovery::SalvagePrefix, 9);
}

#[test]
fn a_second_salvage_at_the_same_offset_never_overwrites_the_first() {
    let dir = tempfile::tempdir().unwrap();
    write_store(dir.path(), 20, 64 << 20);
    let seg = only_segment(dir.path());
    let middle = layout::frames(&seg)[10].clone();
    let mut saved = Vec::new();
    for round in 0..2 {
        flip(&seg, middle.offset + middle.len / 2);
        let cut = std::fs::read(&seg).unwrap()[middle.offset..].to_vec();
        {
            let store = Store::open(dir.path(), options(Recovery::SalvagePrefix)).unwrap();
            assert_eq!(store.last_seq(), middle.base_seq - 1, "round {round}");
            // Write the same events again so that the next round damages the same offset.
            for i in 0..9 {
                store.append(NewEvent::update("c0", json!({"again": i, "round": round}))).unwrap();
            }
            store.append(NewEvent::create("Contact", format!("again{round}"), json!({}))).unwrap();
        }
        saved.push(cut);
    }
    let base = seg.file_name().unwrap().to_string_lossy().into_owned();
    let first = dir.path().join(format!("{base}.{}.salvaged", middle.offset));
    let second = dir.path().join(format!("{base}.{}.1.salvaged", middle.offset));
    assert_eq!(std::fs::read(first).unwrap(), saved[0]);
    assert_eq!(std::fs::read(second).unwrap(), saved[1]);
}
