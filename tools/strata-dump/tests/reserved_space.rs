//! Reserved space: the zeros after the last frame of an open store's active segment (format
//! version 2), seen here in a copy of a store taken while it was open. The tool reports them
//! as reserved space, never as a torn tail or damage, and `repair` leaves them out of what it
//! keeps aside.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::json;
use strata::{NewEvent, Options, Recovery};

/// Writes `count` events durably and copies the store while it is still open. Returns the
/// copy, its active segment and where that segment's frames end.
fn copied_while_open(count: usize) -> (tempfile::TempDir, PathBuf, u64) {
    let original = tempfile::tempdir().unwrap();
    let store = open_store(original.path(), Options::default()).unwrap();
    store.append(NewEvent::create("Contact", "c1", json!({"name": "Alice", "n": 0}))).unwrap();
    for i in 1..count {
        store.append(NewEvent::update("c1", json!({"n": i}))).unwrap();
    }
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(original.path()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }
    drop(store);
    let active = segment_files(copy.path()).pop().unwrap();
    let data_end = frame_end(&active);
    (copy, active, data_end)
}

/// The end of the last frame of a segment without a trailer.
fn frame_end(segment: &Path) -> u64 {
    let bytes = std::fs::read(segment).unwrap();
    let last = *frame_offsets(segment).last().unwrap() as usize;
    (last + u32::from_le_bytes(bytes[last..last + 4].try_into().unwrap()) as usize) as u64
}

#[test]
fn reserved_space_is_reported_as_such_and_never_as_damage() {
    let (dir, active, data_end) = copied_while_open(30);
    let file_bytes = std::fs::metadata(&active).unwrap().len();
    let reserved = file_bytes - data_end;
    assert!(reserved > 0, "the copy of an open store must hold reserved space");

    let o = dump_dir("verify", dir.path(), &["--json"]);
    assert_exit(&o, 0);
    let report: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!((report["clean"].clone(), report["last_seq"].clone()), (json!(true), json!(30)));
    assert_eq!(report["reserved_bytes"], json!(reserved));
    let o = dump_dir("verify", dir.path(), &[]);
    assert_exit(&o, 0);
    assert!(stdout(&o).starts_with("ok: ") && stdout(&o).contains("of reserved space after the last frame (not data)"), "{}", stdout(&o));

    let segments = json_lines(&dump_dir("segments", dir.path(), &["--json"]));
    let tail = segments.last().unwrap();
    assert_eq!(
        (tail["state"].clone(), tail["uncommitted_bytes"].clone(), tail["reserved_bytes"].clone(), tail["problems"].clone()),
        (json!("active"), json!(0), json!(reserved), json!([]))
    );
    let stats: serde_json::Value = serde_json::from_str(stdout(&dump_dir("stats", dir.path(), &["--json"])).trim()).unwrap();
    assert_eq!(
        (stats["events"].clone(), stats["reserved_bytes"].clone(), stats["uncommitted_bytes"].clone()),
        (json!(30), json!(reserved), json!(0))
    );
    assert_eq!(json_lines(&dump_dir("records", dir.path(), &["--json"])).len(), 30);
    assert_eq!(
        stdout(&dump_dir("repair", dir.path(), &[])),
        "nothing to repair: the log is intact (last seq 30)\n",
        "reserved space is not damage"
    );
    // And the library agrees: even a strict open takes it as the end of the log.
    let store = open_store(dir.path(), Options { recovery: Recovery::Strict, ..Options::default() }).unwrap();
    assert_eq!(store.last_seq(), 30);
    drop(store);
    assert_eq!(std::fs::metadata(&active).unwrap().len(), data_end, "a clean close cuts the reserved space off");
}

#[test]
fn repair_of_a_torn_frame_before_reserved_space_keeps_the_frame_not_the_zeros() {
    let (dir, active, data_end) = copied_while_open(30);
    let last = *frame_offsets(&active).last().unwrap();
    let original = std::fs::read(&active).unwrap();
    // Only the first half of the last frame reached the disk: the rest reads as zeros.
    let half = last + (data_end - last) / 2;
    let mut torn = original.clone();
    torn[half as usize..data_end as usize].fill(0);
    std::fs::write(&active, &torn).unwrap();

    let o = dump_dir("verify", dir.path(), &["--json"]);
    assert_exit(&o, 1);
    let report: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!((report["problems"][0]["offset"].clone(), report["problems"][0]["torn_tail"].clone()), (json!(last), json!(true)));
    let segments = json_lines(&dump_dir("segments", dir.path(), &["--json"]));
    let tail = segments.last().unwrap();
    let (uncommitted, reserved) = (tail["uncommitted_bytes"].as_u64().unwrap(), tail["reserved_bytes"].as_u64().unwrap());
    assert!(uncommitted > 0 && uncommitted <= half - last, "{tail}");
    assert_eq!(last + uncommitted + reserved, original.len() as u64, "{tail}");

    let o = dump_dir("repair", dir.path(), &[]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("torn tail"), "{}", stdout(&o));
    let name = active.file_name().unwrap().to_str().unwrap();
    let salvaged = std::fs::read(dir.path().join(format!("{name}.{last}.salvaged"))).unwrap();
    assert_eq!(salvaged.len() as u64, uncommitted, "the salvage holds the torn frame's bytes, not the reserved zeros");
    assert_eq!(salvaged[..], original[last as usize..(last + uncommitted) as usize]);
    assert_eq!(std::fs::metadata(&active).unwrap().len(), last);
    assert_eq!(open_store(dir.path(), Options { recovery: Recovery::Strict, ..Options::default() }).unwrap().last_seq(), 29);
}
