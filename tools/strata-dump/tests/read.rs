//! The read-only subcommands on stores written by the library: segments, records and every
//! filter, entity, stats, hexdump, and their --json forms parsed back.

mod common;

use std::collections::BTreeSet;

use common::*;
use serde_json::{Value, json};
use strata::{Event, NewEvent, Options};

fn records(dir: &std::path::Path, rest: &[&str]) -> Vec<Value> {
    let mut args = vec!["--json"];
    args.extend_from_slice(rest);
    let o = dump_dir("records", dir, &args);
    assert_exit(&o, 0);
    json_lines(&o)
}

fn seqs(lines: &[Value]) -> Vec<u64> {
    lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect()
}

fn expected(events: &[Event], keep: impl Fn(&Event) -> bool) -> Vec<u64> {
    events.iter().filter(|e| keep(e)).map(|e| e.seq).collect()
}

#[test]
fn help_explains_every_subcommand() {
    let o = dump(&["--help"]);
    assert_exit(&o, 0);
    for sub in ["segments", "records", "entity", "verify", "stats", "follow", "hexdump", "repair"] {
        assert!(stdout(&o).contains(sub), "--help does not mention {sub}:\n{}", stdout(&o));
    }
    assert!(stdout(&o).contains("Exit codes: 0 success, 1 problems found (verify), 2 usage or unreadable input"));
    let o = dump(&["records", "--help"]);
    for flag in ["--from-seq", "--to-seq", "--entity", "--type", "--actor", "--after", "--before", "--limit", "--json"] {
        assert!(stdout(&o).contains(flag), "records --help does not mention {flag}");
    }
}

#[test]
fn unknown_subcommand_or_flag_is_a_usage_error() {
    assert_exit(&dump(&["frobnicate"]), 2);
    assert_exit(&dump(&["records", "/tmp", "--bogus"]), 2);
    assert_exit(&dump(&["records", "/tmp", "--after", "yesterday"]), 2);
    assert_exit(&dump(&["hexdump", "/tmp"]), 2);
    assert_exit(&dump(&["hexdump", "/tmp", "--at", "no-offset"]), 2);
    assert_exit(&dump(&["entity", "/tmp", "x", "--version", "1", "--as-of", "2026-01-01T00:00:00Z"]), 2);
}

#[test]
fn segments_lists_every_segment_with_contiguous_seqs() {
    let dir = tempfile::tempdir().unwrap();
    sample_store(dir.path());
    let files = segment_files(dir.path());
    assert!(files.len() >= 3, "the sample store should span several segments");
    let o = dump_dir("segments", dir.path(), &["--json"]);
    assert_exit(&o, 0);
    let rows = json_lines(&o);
    assert_eq!(rows.len(), files.len());
    let mut next = 1;
    for (i, (row, file)) in rows.iter().zip(&files).enumerate() {
        assert_eq!(row["file"], file.display().to_string());
        assert_eq!(row["base_seq"], next);
        assert_eq!(row["file_bytes"], std::fs::metadata(file).unwrap().len());
        let state = if i + 1 == files.len() { "active" } else { "sealed" };
        assert_eq!(row["state"], state, "{row}");
        assert_eq!(row["problems"], json!([]));
        assert!(row["raw_bytes"].as_u64().unwrap() > 0 && row["compression_ratio"].as_f64().unwrap() > 0.0);
        assert!(row["min_timestamp"].as_str().unwrap() <= row["max_timestamp"].as_str().unwrap());
        next = row["last_seq"].as_u64().unwrap() + 1;
    }
    assert_eq!(next, 154);
    let text = dump_dir("segments", dir.path(), &[]);
    assert_exit(&text, 0);
    let lines: Vec<String> = stdout(&text).lines().map(str::to_string).collect();
    assert!(lines[0].starts_with("FILE") && lines[0].contains("STATE"));
    assert_eq!(lines.len(), files.len() + 1);
    assert!(lines[1].starts_with("00000000000000000001.seg") && lines[1].ends_with("sealed"));
}

#[test]
fn records_json_is_exactly_what_the_api_returns() {
    let dir = tempfile::tempdir().unwrap();
    let events = sample_store(dir.path());
    let lines = records(dir.path(), &[]);
    assert_eq!(lines.len(), events.len());
    for (line, ev) in lines.iter().zip(&events) {
        assert_eq!(line, &ev.to_json());
        let keys: BTreeSet<&str> = line.as_object().unwrap().keys().map(String::as_str).collect();
        let want: BTreeSet<&str> =
            ["seq", "id", "type", "entity", "version", "timestamp", "actor", "data", "metadata", "batch"].into_iter().collect();
        assert_eq!(keys, want);
    }
    assert_eq!(lines[152]["metadata"], json!({"reason": "test"}));
    assert_eq!(lines[10]["batch"], 3, "the deals were created in one batch starting at seq 3");
}

#[test]
fn records_filters_select_what_the_query_would() {
    let dir = tempfile::tempdir().unwrap();
    let ev = sample_store(dir.path());
    let ts = |seq: usize| ev[seq - 1].timestamp.to_rfc3339();
    assert_eq!(seqs(&records(dir.path(), &["--from-seq", "100"])), (100..=153).collect::<Vec<_>>());
    assert_eq!(seqs(&records(dir.path(), &["--to-seq", "7"])), (1..=7).collect::<Vec<_>>());
    // A range that starts in a later segment.
    let second = base_of(&segment_files(dir.path())[1]);
    assert_eq!(
        seqs(&records(dir.path(), &["--from-seq", &second.to_string(), "--to-seq", &(second + 6).to_string()])),
        (second..=second + 6).collect::<Vec<_>>()
    );
    assert_eq!(seqs(&records(dir.path(), &["--entity", "contact_1"])), [1, 2, 153]);
    assert_eq!(seqs(&records(dir.path(), &["--entity", "deal_7"])), expected(&ev, |e| e.entity == "deal_7"));
    assert_eq!(seqs(&records(dir.path(), &["--type", "Deal.*"])), expected(&ev, |e| e.event_type.starts_with("Deal.")));
    assert_eq!(seqs(&records(dir.path(), &["--type", "*.Qualified"])), [2]);
    assert_eq!(seqs(&records(dir.path(), &["--type", "Contact.Deleted"])), [153]);
    assert_eq!(seqs(&records(dir.path(), &["--actor", "agent_2"])), [2]);
    assert_eq!(seqs(&records(dir.path(), &["--actor", "agent_1"])), expected(&ev, |e| e.actor.as_deref() == Some("agent_1")));
    // --after is inclusive, --before exclusive.
    assert_eq!(seqs(&records(dir.path(), &["--after", &ts(120)])), expected(&ev, |e| e.timestamp >= ev[119].timestamp));
    assert_eq!(seqs(&records(dir.path(), &["--before", &ts(2)])), [1]);
    assert_eq!(seqs(&records(dir.path(), &["--after", &ts(2), "--before", &ts(3)])), [2]);
    assert_eq!(seqs(&records(dir.path(), &["--limit", "4"])), [1, 2, 3, 4]);
    assert_eq!(seqs(&records(dir.path(), &["--type", "Deal.Updated", "--entity", "deal_3", "--limit", "1"])), [56]);
    assert!(records(dir.path(), &["--entity", "nobody"]).is_empty());
    assert!(records(dir.path(), &["--limit", "0"]).is_empty());
}

#[test]
fn records_text_is_one_readable_line_per_event() {
    let dir = tempfile::tempdir().unwrap();
    let ev = sample_store(dir.path());
    let o = dump_dir("records", dir.path(), &["--to-seq", "2"]);
    assert_exit(&o, 0);
    let text = stdout(&o);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(
        lines[0],
        format!("1  {}  Contact.Created  contact_1  v1  actor=agent_1  {{\"name\":\"Alice\",\"stage\":\"Lead\"}}", ev[0].timestamp)
    );
    let last = stdout(&dump_dir("records", dir.path(), &["--from-seq", "153"]));
    assert!(last.contains("Contact.Deleted  contact_1  v3") && last.contains("metadata={\"reason\":\"test\"}"), "{last}");
}

#[test]
fn entity_state_as_of_a_version_or_a_time_and_its_history() {
    let dir = tempfile::tempdir().unwrap();
    let ev = sample_store(dir.path());
    let entity = |rest: &[&str]| {
        let mut args = vec!["contact_1", "--json"];
        args.extend_from_slice(rest);
        let o = dump_dir("entity", dir.path(), &args);
        assert_exit(&o, 0);
        serde_json::from_str::<Value>(stdout(&o).trim()).unwrap()
    };
    let store = open_store(dir.path(), Options::default()).unwrap();
    let now = entity(&[]);
    assert_eq!(now, store.get("contact_1").unwrap().unwrap().to_json());
    assert_eq!((now["$version"].clone(), now["$deleted"].clone(), now["stage"].clone()), (json!(3), json!(true), json!("Qualified")));
    assert_eq!(entity(&["--version", "1"]), store.get_version("contact_1", 1).unwrap().unwrap().to_json());
    assert_eq!(entity(&["--version", "4"]), Value::Null);
    let at = ev[1].timestamp.to_rfc3339();
    assert_eq!(entity(&["--as-of", &at]), store.get_as_of("contact_1", ev[1].timestamp).unwrap().unwrap().to_json());
    assert_eq!(entity(&["--as-of", "2000-01-01T00:00:00Z"]), Value::Null);
    drop(store);

    let history = dump_dir("entity", dir.path(), &["contact_1", "--history", "--json"]);
    assert_exit(&history, 0);
    assert_eq!(seqs(&json_lines(&history)), [1, 2, 153]);
    let upto = dump_dir("entity", dir.path(), &["contact_1", "--history", "--json", "--version", "2"]);
    assert_eq!(seqs(&json_lines(&upto)), [1, 2]);

    let text = stdout(&dump_dir("entity", dir.path(), &["contact_1", "--version", "2"]));
    assert!(text.starts_with("entity contact_1 (Contact) version 2\n"), "{text}");
    let then = stdout(&dump_dir("entity", dir.path(), &["contact_1", "--as-of", &at]));
    assert!(then.starts_with(&format!("entity contact_1 (Contact) version 2 as of {at}\n")), "{then}");
    assert!(text.contains("\"stage\": \"Qualified\""), "{text}");
    let missing = dump_dir("entity", dir.path(), &["nobody"]);
    assert_exit(&missing, 0);
    assert_eq!(stdout(&missing), "entity nobody does not exist\n");
}

#[test]
fn stats_counts_types_kinds_entities_and_bytes() {
    let dir = tempfile::tempdir().unwrap();
    sample_store(dir.path());
    let o = dump_dir("stats", dir.path(), &["--json"]);
    assert_exit(&o, 0);
    let s: Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(s["events"], 153);
    assert_eq!(s["last_seq"], 153);
    assert_eq!(s["frames"], 2 + 1 + 100 + 1);
    assert_eq!(
        s["events_by_type"],
        json!({"Contact.Created": 1, "Contact.Qualified": 1, "Contact.Deleted": 1, "Deal.Created": 50, "Deal.Updated": 100})
    );
    assert_eq!(s["events_by_kind"], json!({"Contact": 3, "Deal": 150}));
    assert_eq!((s["entities"].clone(), s["deleted_entities"].clone()), (json!(51), json!(1)));
    assert_eq!(s["deepest"][0], json!({"id": "contact_1", "kind": "Contact", "versions": 3, "deleted": true}));
    assert_eq!(s["deepest"].as_array().unwrap().len(), 10);
    let files = segment_files(dir.path());
    assert_eq!(s["segments"], files.len());
    assert_eq!(s["sealed_segments"], files.len() - 1);
    assert_eq!(s["file_bytes"], files.iter().map(|f| std::fs::metadata(f).unwrap().len()).sum::<u64>());
    assert!(s["stored_bytes"].as_u64().unwrap() < s["file_bytes"].as_u64().unwrap());
    assert!(s["compression_ratio"].as_f64().unwrap() > 0.0);
    assert_eq!((s["dictionaries"].clone(), s["checkpoints"].clone()), (json!([]), json!([])));
    let text = stdout(&dump_dir("stats", dir.path(), &[]));
    assert!(text.starts_with("events       153 in 104 frames (last seq 153)\n"), "{text}");
    assert!(text.contains("       150  Deal\n") && text.contains("         3  contact_1 (Contact), deleted\n"), "{text}");
}

#[test]
fn a_store_with_a_trained_dictionary_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let events = store_with_dictionary(dir.path());
    let lines = records(dir.path(), &[]);
    assert_eq!(lines, events.iter().map(Event::to_json).collect::<Vec<_>>());
    let s: Value = serde_json::from_str(stdout(&dump_dir("stats", dir.path(), &["--json"])).trim()).unwrap();
    assert_eq!(s["dictionaries"][0]["id"], 1);
    let o = dump_dir("verify", dir.path(), &[]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("1 dictionaries"), "{}", stdout(&o));
}

#[test]
fn hexdump_by_seq_and_by_offset_show_the_same_annotated_frame() {
    let dir = tempfile::tempdir().unwrap();
    sample_store(dir.path());
    let first = &segment_files(dir.path())[0];
    let offsets = frame_offsets(first);
    // Seq 3 starts the batch of 50 deals: the third frame.
    let by_seq = dump_dir("hexdump", dir.path(), &["--seq", "30", "--max-bytes", "0"]);
    assert_exit(&by_seq, 0);
    let at = format!("00000000000000000001.seg:{}", offsets[2]);
    let by_offset = dump_dir("hexdump", dir.path(), &["--at", &at, "--max-bytes", "0"]);
    assert_eq!(stdout(&by_seq), stdout(&by_offset));
    let text = stdout(&by_seq);
    let frame_len = offsets[3] - offsets[2];
    for want in [
        format!("frame at {} offset {}", first.display(), offsets[2]),
        format!("  +0    len           u32  {frame_len}"),
        "  +8    base_seq      u64  3".to_string(),
        "  +16   record_count  u32  50                   seqs 3..=52".to_string(),
        "(ok)".to_string(),
        "chunk 0: records".to_string(),
        "check: ok".to_string(),
        "chunk 0 payload".to_string(),
    ] {
        assert!(text.contains(&want), "missing {want:?} in:\n{text}");
    }
    // Every byte of the frame is shown once, 16 per line.
    let hex_lines = text.lines().filter(|l| l.starts_with("  0000")).count() as u64;
    assert!(hex_lines >= frame_len / 16, "{hex_lines} hex lines for {frame_len} bytes");
    let capped = stdout(&dump_dir("hexdump", dir.path(), &["--seq", "30", "--max-bytes", "64"]));
    assert!(capped.contains(&format!("... {} more bytes", frame_len - 64)), "{capped}");
    // A path works as well as a name.
    let by_path = dump_dir("hexdump", dir.path(), &["--at", &format!("{}:{}", first.display(), offsets[2]), "--max-bytes", "0"]);
    assert_eq!(stdout(&by_path), stdout(&by_seq));
}

#[test]
fn hexdump_of_a_damaged_frame_shows_stored_and_computed_crc() {
    let dir = tempfile::tempdir().unwrap();
    sample_store(dir.path());
    let first = &segment_files(dir.path())[0];
    let offset = frame_offsets(first)[4];
    flip_bit(first, offset + 60);
    let o = dump_dir("hexdump", dir.path(), &["--at", &format!("00000000000000000001.seg:{offset}")]);
    assert_exit(&o, 0);
    let text = stdout(&o);
    assert!(text.contains("(MISMATCH)") && text.contains("check: FAILED: frame CRC mismatch"), "{text}");
    // The frame is no longer committed data: --seq cannot find it.
    let o = dump_dir("hexdump", dir.path(), &["--seq", "54"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("corruption in"), "{}", stderr(&o));
}

#[test]
fn hexdump_rejects_offsets_outside_the_frames() {
    let dir = tempfile::tempdir().unwrap();
    sample_store(dir.path());
    for at in ["00000000000000000001.seg:10", "00000000000000000001.seg:99999999"] {
        let o = dump_dir("hexdump", dir.path(), &["--at", at]);
        assert_exit(&o, 2);
        assert_eq!(stderr(&o).lines().count(), 1, "{}", stderr(&o));
    }
    let o = dump_dir("hexdump", dir.path(), &["--seq", "154"]);
    assert_exit(&o, 2);
    assert!(stderr(&o).contains("seq 154 is not in the log (the last committed seq is 153)"), "{}", stderr(&o));
}

#[test]
fn read_commands_run_beside_a_live_writer() {
    let dir = tempfile::tempdir().unwrap();
    sample_store(dir.path());
    let store = open_store(dir.path(), small_segments()).unwrap();
    store.append(NewEvent::create("Contact", "contact_2", json!({}))).unwrap();
    store.sync().unwrap();
    assert_eq!(records(dir.path(), &["--from-seq", "154"]).len(), 1);
    for (sub, rest) in [("segments", vec![]), ("stats", vec![]), ("verify", vec![]), ("entity", vec!["contact_2"])] {
        assert_exit(&dump_dir(sub, dir.path(), &rest), 0);
    }
    // The writer still has its lock and goes on.
    store.append(NewEvent::update("contact_2", json!({"a": 1}))).unwrap();
}
