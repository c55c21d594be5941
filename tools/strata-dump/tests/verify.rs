//! `verify`: exit 0 on a clean store; on damage, exit 1 with one line per problem naming the
//! file, the offset and the reason, the same first damage `Store::open` reports.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::{Value, json};
use strata::{Error, Options, Store};

fn verify_json(dir: &Path) -> (i32, Value) {
    let o = dump_dir("verify", dir, &["--json"]);
    let code = o.status.code().unwrap_or(-1);
    (code, serde_json::from_str(stdout(&o).trim()).unwrap_or_else(|e| panic!("{e}: {}", stdout(&o))))
}

/// The file and offset `Store::open` (strict, so that a torn tail is an error too) fails with.
fn open_error(dir: &Path) -> (PathBuf, u64) {
    match Store::open(dir, Options { recovery: strata::Recovery::Strict, ..Options::default() }) {
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
    assert!(text.ends_with(&format!("1 problem found; checked 3 segments, 103 frames, 152 events (last seq {}), 51 entities, 0 dictionaries, 0 checkpoints\n", 84 + (offsets.len() / 2) as u64 - 1)), "{text}");
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
    type Damage = (&'static str, usize, Option<fn(&Path) -> u64>);
    let cases: [Damage; 4] = [
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
fn broken_checkpoint_is_reported_with_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    sample_store(dir.path());
    // A checkpoint that claims more of the log than there is, and an empty one.
    let beyond = dir.path().join("checkpoint-00000000000000000999.ckpt");
    std::fs::write(&beyond, b"not really a checkpoint").unwrap();
    let empty = dir.path().join("checkpoint-00000000000000000010.ckpt");
    std::fs::write(&empty, b"").unwrap();
    let (code, report) = verify_json(dir.path());
    assert_eq!(code, 1);
    let problems: Vec<(String, u64, String)> = report["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["file"].as_str().unwrap().to_string(), p["offset"].as_u64().unwrap(), p["reason"].as_str().unwrap().to_string()))
        .collect();
    assert_eq!(
        problems,
        [
            (empty.display().to_string(), 0, "checkpoint file is empty".to_string()),
            (beyond.display().to_string(), 0, "checkpoint covers the log up to seq 999, but the log ends at seq 153".to_string()),
        ]
    );
    assert_eq!(report["checkpoints"], 2);
    let stats: Value = serde_json::from_str(stdout(&dump_dir("stats", dir.path(), &["--json"])).trim()).unwrap();
    assert_eq!(stats["checkpoints"][1], json!({"file": beyond.display().to_string(), "covers_to_seq": 999, "bytes": 23}));
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
