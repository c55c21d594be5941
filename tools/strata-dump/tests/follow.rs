//! `follow`: prints new committed events as another process appends them, across segment
//! rolls, with the same filters as `records`.
//!
//! The writer is this test binary run again as a child process (`writer_process`, ignored
//! unless asked for by name), so that the events really come from another process.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use serde_json::{Value, json};
use strata::NewEvent;

const WRITER_DIR: &str = "STRATA_DUMP_TEST_WRITER_DIR";
const WRITER_COUNT: &str = "STRATA_DUMP_TEST_WRITER_COUNT";

/// The writer side: appends COUNT events to the store in DIR, one commit at a time.
#[test]
#[ignore = "the writer process of the follow tests; they run it by name"]
fn writer_process() {
    let dir = std::env::var(WRITER_DIR).expect("run by the follow tests");
    let count: u64 = std::env::var(WRITER_COUNT).unwrap().parse().unwrap();
    let store = open_store(Path::new(&dir), small_segments()).unwrap();
    for i in 0..count {
        store.append(NewEvent::create("Ticket", format!("ticket_{i}"), json!({"n": i, "text": "y".repeat(40)})).actor("writer")).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn spawn_writer(dir: &Path, count: u64) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "writer_process", "--nocapture", "--test-threads", "1"])
        .env(WRITER_DIR, dir)
        .env(WRITER_COUNT, count.to_string())
        .stdout(Stdio::null())
        .spawn()
        .unwrap()
}

fn spawn_follow(dir: &Path, rest: &[&str]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_strata-dump"))
        .arg("follow")
        .arg(dir)
        .args(["--interval-ms", "20"])
        .args(rest)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Waits for `child` to exit, killing it and failing after `limit`.
fn wait(child: &mut Child, limit: Duration, what: &str) {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            panic!("{what} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn lines(child: Child) -> (Vec<Value>, String) {
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0), "follow failed: {}", String::from_utf8_lossy(&out.stderr));
    let parsed = String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    (parsed, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn follow_sees_events_appended_by_another_process_across_segment_rolls() {
    let dir = tempfile::tempdir().unwrap();
    sample_store(dir.path());
    let segments_before = segment_files(dir.path()).len();
    let mut follow = spawn_follow(dir.path(), &["--json", "--limit", "120"]);
    // Start writing only once follow says where it starts: from the end of the log.
    let mut stderr = BufReader::new(follow.stderr.take().unwrap());
    let mut first = String::new();
    stderr.read_line(&mut first).unwrap();
    assert_eq!(first, format!("strata-dump: following {} from seq 154\n", dir.path().display()));
    let mut writer = spawn_writer(dir.path(), 120);
    wait(&mut writer, Duration::from_secs(60), "the writer");
    assert!(writer.wait().unwrap().success());
    wait(&mut follow, Duration::from_secs(30), "follow");
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    assert_eq!(rest, "", "follow complained");
    let (events, _) = lines(follow);
    assert_eq!(events.iter().map(|e| e["seq"].as_u64().unwrap()).collect::<Vec<_>>(), (154..274).collect::<Vec<_>>());
    assert!(events.iter().enumerate().all(|(i, e)| e["entity"] == format!("ticket_{i}") && e["actor"] == "writer"));
    assert!(segment_files(dir.path()).len() > segments_before + 1, "the writer should have rolled segments");
    // And they are exactly the events `records` shows afterwards.
    let recorded = json_lines(&dump_dir("records", dir.path(), &["--json", "--from-seq", "154"]));
    assert_eq!(events, recorded);
}

#[test]
fn follow_applies_the_record_filters() {
    let dir = tempfile::tempdir().unwrap();
    sample_store(dir.path());
    // From seq 1 with a type filter: the events already committed come first.
    let mut follow = spawn_follow(dir.path(), &["--json", "--from-seq", "1", "--type", "Contact.*", "--limit", "3"]);
    wait(&mut follow, Duration::from_secs(30), "follow");
    let (events, stderr) = lines(follow);
    assert_eq!(events.iter().map(|e| e["seq"].as_u64().unwrap()).collect::<Vec<_>>(), [1, 2, 153]);
    assert_eq!(stderr, format!("strata-dump: following {} from seq 1\n", dir.path().display()));
    // --to-seq ends following once the log has passed it.
    let mut follow = spawn_follow(dir.path(), &["--json", "--from-seq", "50", "--to-seq", "60", "--entity", "deal_48"]);
    wait(&mut follow, Duration::from_secs(30), "follow");
    let (events, _) = lines(follow);
    assert_eq!(events.iter().map(|e| e["seq"].as_u64().unwrap()).collect::<Vec<_>>(), [51]);
}

#[test]
fn follow_stops_with_an_error_on_corruption_rather_than_waiting() {
    let dir = tempfile::tempdir().unwrap();
    sample_store(dir.path());
    let first = &segment_files(dir.path())[0];
    flip_bit(first, frame_offsets(first)[3] + 50);
    let mut follow = spawn_follow(dir.path(), &["--from-seq", "1"]);
    wait(&mut follow, Duration::from_secs(30), "follow");
    let out = follow.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("corruption in {} at offset {}", first.display(), frame_offsets(first)[3])), "{err}");
    // What came before the damage was printed.
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 52);
}

#[test]
fn read_commands_beside_a_writer_in_another_process_see_only_committed_events() {
    let dir = tempfile::tempdir().unwrap();
    sample_store(dir.path());
    let mut writer = spawn_writer(dir.path(), 300);
    let start = Instant::now();
    let mut rounds = 0;
    while writer.try_wait().unwrap().is_none() {
        assert!(start.elapsed() < Duration::from_secs(60), "the writer did not finish");
        let o = dump_dir("verify", dir.path(), &["--json"]);
        assert_exit(&o, 0);
        let o = dump_dir("records", dir.path(), &["--json"]);
        assert_exit(&o, 0);
        let seqs: Vec<u64> = json_lines(&o).iter().map(|e| e["seq"].as_u64().unwrap()).collect();
        assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "records must be a gap-free prefix of the log");
        assert_exit(&dump_dir("segments", dir.path(), &[]), 0);
        rounds += 1;
    }
    assert!(writer.wait().unwrap().success());
    assert!(rounds > 0);
    assert_eq!(json_lines(&dump_dir("records", dir.path(), &["--json"])).len(), 453);
}
