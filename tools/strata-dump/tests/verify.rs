//! `verify`: exit 0 on a clean store; on damage, exit 1 with one line per problem naming the
//! file, the offset and the reason, the same first damage `Store::open` reports.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{Value, json};
use strata::{Error, Options};

fn verify_json(dir: &Path) -> (i32, Value) {
    let o = dump_dir("verify", dir, &["--json"]);
    let code = o.status.code().unwrap_or(-1);
    (code, serde_json::from_str(stdout(&o).trim()).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o))))
}

/// The file and offset `Store::open` (strict, so that a torn tail is an error too) fails with.
fn open_error(dir: &Path) -> (PathBuf, u64) {
    match open_store(dir, Options { recovery: strata::Recovery::Strict, ..Options::default() }) {
        Err(Error::Corruption { path, offset, .. }) => (path, offset),
        other => panic!("open of {} should fail with corruption, got {other:?}", dir.display()),
    }
}

fn first_problem(report: &Value) -> (PathBuf, u64) {
    let p = &report["problems"][0];
    (PathBuf::from(p["file"].as_str().unwrap()), p["offset"].as_u64().unwrap())
}

#[test]
fn clean_store_verifies_with_exit_0() {
    let dir = tempfile::tempdir().unwrap();
    sample_store(dir.path());
    let o = dump_dir("verify", dir.path(), &[]);
    assert_exit(&o, 0);
    let segments = segment_files(dir.path()).len();
    assert_eq!(
        stdout(&o),
        format!("ok: {segments} segments, 104 frames, 153 events (last seq 153), 51 entities, 0 dictionaries, 0 checkpoints\n")
    );
    let (code, report) = verify_json(dir.path());
    assert_eq!(code, 0);
    assert_eq!(report["clean"], true);
    assert_eq!((report["events"].clone(), report["last_seq"].clone(), report["problems"].clone()), (json!(153), json!(153), json!([])));
}

#[test]
fn bit_flip_mid_sealed_segment_is_reported_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    sample_store(dir.path());
    let sealed = &segment_files(dir.path())[1];
    let offsets = frame_offsets(sealed);
    let bad = offsets[offsets.len() / 2];
    flip_bit(sealed, bad + 50);
    let o = dump_dir("verify", dir.path(), &[]);
    assert_exit(&o, 1);
    let text = stdout(&o);
    assert!(text.starts_with(&format!("{}: offset {bad}: frame CRC mismatch\n", sealed.display())), "{text}");
    // Frames after the first are one event each: the intact prefix ends just before the bad one.
    let segments = segment_files(dir.path()).len();
    let last = base_of(sealed) + (offsets.len() / 2) as u64 - 1;
    assert!(
        text.ends_with(&format!(
            "1 problem found; checked {segments} segments, 103 frames, 152 events (last seq {last}), 51 entities, 0 dictionaries, 0 checkpoints\n"
        )),
        "{text}"
    );
    let (code, report) = verify_json(dir.path());
    assert_eq!(code, 1);
    assert_eq!(report["problems"].as_array().unwrap().len(), 1, "{report}");
    assert_eq!(report["problems"][0]["torn_tail"], false);
    assert_eq!(first_problem(&report), (sealed.clone(), bad));
    assert_eq!(open_error(dir.path()), (sealed.clone(), bad));
}

#[test]
fn torn_tail_is_reported_with_file_and_offset_and_not_shown_as_data() {
    let dir = tempfile::tempdir().unwrap();
    let events = sample_store(dir.path());
    let active = segment_files(dir.path()).pop().unwrap();
    let last = *frame_offsets(&active).last().unwrap();
    // A crash mid-write: the last frame is only half on disk.
    let len = std::fs::metadata(&active).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(&active).unwrap().set_len(last + (len - last) / 2).unwrap();
    let o = dump_dir("verify", dir.path(), &[]);
    assert_exit(&o, 1);
    assert!(stdout(&o).starts_with(&format!("{}: offset {last}: torn tail: ", active.display())), "{}", stdout(&o));
    let (_, report) = verify_json(dir.path());
    assert_eq!(report["problems"][0]["torn_tail"], true);
    assert_eq!(first_problem(&report), (active.clone(), last));
    assert_eq!(open_error(dir.path()), (active.clone(), last));
    // The read commands treat it as not committed: everything before it, and no error.
    let o = dump_dir("records", dir.path(), &["--json"]);
    assert_exit(&o, 0);
    assert_eq!(json_lines(&o).len(), events.len() - 1);
    let segs = json_lines(&dump_dir("segments", dir.path(), &["--json"]));
    let tail = segs.last().unwrap();
    assert_eq!((tail["state"].clone(), tail["uncommitted_bytes"].as_u64().unwrap()), (json!("active"), (len - last) / 2));
}

#[test]
fn damage_anywhere_is_the_damage_open_reports() {
    // (description, which segment, offset to flip or None to delete the segment)
    let cases: [(&str, usize, Option<OffsetIn>); 4] = [
        ("segment header", 1, Some(|_| 20)),
        ("first frame of a sealed segment", 0, Some(|p| frame_offsets(p)[0] + 30)),
        ("trailer footer", 0, Some(|p| std::fs::metadata(p).unwrap().len() - 30)),
        ("a missing segment", 1, None),
    ];
    for (what, segment, flip) in cases {
        let dir = tempfile::tempdir().unwrap();
        sample_store(dir.path());
        let file = &segment_files(dir.path())[segment];
        match flip {
            Some(at) => flip_bit(file, at(file)),
            None => std::fs::remove_file(file).unwrap(),
        }
        let (code, report) = verify_json(dir.path());
        assert_eq!(code, 1, "{what}: {report}");
        assert_eq!(first_problem(&report), open_error(dir.path()), "{what}: {report}");
    }
}

#[test]
fn broken_dictionary_is_reported_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    store_with_dictionary(dir.path());
    let dict = dir.path().join("dict-0000000001.zdict");
    flip_bit(&dict, 100);
    let (code, report) = verify_json(dir.path());
    assert_eq!(code, 1);
    let p = &report["problems"][0];
    assert_eq!((p["file"].as_str().unwrap(), p["offset"].as_u64().unwrap()), (dict.to_str().unwrap(), 20));
    assert_eq!(p["reason"], "dictionary CRC mismatch");
    // Frames compressed with it cannot be read either.
    assert!(report["problems"].as_array().unwrap().len() > 1, "{report}");
    let o = dump_dir("stats", dir.path(), &[]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("dict-0000000001.zdict at offset 20"), "{}", stderr(&o));
}

#[test]
fn checkpoints_are_verified_against_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = store_with_checkpoint(dir.path());
    let (code, report) = verify_json(dir.path());
    assert_eq!(code, 0, "{report}");
    assert_eq!(report["checkpoints"], 1);
    let stats: Value = serde_json::from_str(stdout(&dump_dir("stats", dir.path(), &["--json"])).trim()).unwrap();
    let c = &stats["checkpoints"][0];
    assert_eq!((c["file"].as_str().unwrap(), c["covers_to_seq"].clone()), (ckpt.to_str().unwrap(), json!(100)));
    assert_eq!((c["entities"].clone(), c["problem"].clone()), (json!(1), Value::Null));
    assert_eq!(c["bytes"], std::fs::metadata(&ckpt).unwrap().len());
}

/// Damage done to a file.
type Damage = Box<dyn Fn(&Path)>;
/// Where in a file to flip a bit.
type OffsetIn = fn(&Path) -> u64;

#[test]
fn broken_checkpoint_is_reported_with_file_and_offset() {
    let original = tempfile::tempdir().unwrap();
    let ckpt = store_with_checkpoint(original.path());
    let len = std::fs::metadata(&ckpt).unwrap().len();
    // (what, damage to the file, offset reported, reason)
    let cases: [(&str, Damage, u64, &str); 4] = [
        ("flipped bit in the body", Box::new(|p| flip_bit(p, 70)), 64, "checkpoint body CRC mismatch"),
        ("flipped bit in the header", Box::new(|p| flip_bit(p, 20)), 60, "checkpoint header CRC mismatch"),
        (
            "truncated body",
            Box::new(move |p| std::fs::OpenOptions::new().write(true).open(p).unwrap().set_len(len - 5).unwrap()),
            32,
            "checkpoint announces",
        ),
        ("empty file", Box::new(|p| std::fs::write(p, b"").unwrap()), 0, "checkpoint is shorter than its header"),
    ];
    for (what, damage, offset, reason) in cases {
        let dir = tempfile::tempdir().unwrap();
        for f in std::fs::read_dir(original.path()).unwrap() {
            let f = f.unwrap().path();
            std::fs::copy(&f, dir.path().join(f.file_name().unwrap())).unwrap();
        }
        let ckpt = dir.path().join(ckpt.file_name().unwrap());
        damage(&ckpt);
        let (code, report) = verify_json(dir.path());
        assert_eq!(code, 1, "{what}: {report}");
        assert_eq!(report["problems"].as_array().unwrap().len(), 1, "{what}: {report}");
        assert_eq!(first_problem(&report), (ckpt.clone(), offset), "{what}: {report}");
        assert!(report["problems"][0]["reason"].as_str().unwrap().contains(reason), "{what}: {report}");
        // A checkpoint is a cache: the store still opens, from the log.
        assert_eq!(open_store(dir.path(), Options::default()).unwrap().last_seq(), 120, "{what}");
    }
}

#[test]
fn checkpoint_of_another_log_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    store_with_checkpoint(dir.path());
    // A checkpoint that claims more of the log than there is, under its own name.
    let other = tempfile::tempdir().unwrap();
    let store = open_store(other.path(), Options::default()).unwrap();
    for i in 0..130 {
        store.append(strata::NewEvent::create("K", format!("e{i}"), json!({}))).unwrap();
    }
    store.checkpoint().unwrap();
    drop(store);
    let foreign = dir.path().join("checkpoint-00000000000000000130.ckpt");
    std::fs::copy(other.path().join("checkpoint-00000000000000000130.ckpt"), &foreign).unwrap();
    let (code, report) = verify_json(dir.path());
    assert_eq!(code, 1);
    assert_eq!(first_problem(&report), (foreign.clone(), 16));
    assert_eq!(report["problems"][0]["reason"], "checkpoint covers the log up to seq 130, but the log ends at seq 120");
    // Renamed to a seq the log has, it is still not this log's.
    let renamed = dir.path().join("checkpoint-00000000000000000110.ckpt");
    std::fs::rename(&foreign, &renamed).unwrap();
    let (_, report) = verify_json(dir.path());
    assert_eq!(first_problem(&report), (renamed, 16));
    assert_eq!(report["problems"][0]["reason"], "checkpoint covers seq 130 but its file name says 110");
}

#[test]
fn leftover_and_foreign_files_are_notes_not_problems() {
    let dir = tempfile::tempdir().unwrap();
    sample_store(dir.path());
    std::fs::write(dir.path().join("dict-0000000009.zdict.tmp"), b"half").unwrap();
    std::fs::write(dir.path().join("README.txt"), b"hello").unwrap();
    let o = dump_dir("verify", dir.path(), &[]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("dict-0000000009.zdict.tmp: a file left half-written by a crash"), "{}", stdout(&o));
    assert!(stdout(&o).contains("README.txt: not a strata file; ignored"), "{}", stdout(&o));
}
