//! Shared by the strata-dump tests: stores written through the library's public API, and a
//! way to run the built binary on them.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};
use strata::{Durability, NewEvent, Options, Store};

/// Opens a store in this process. (A child process that another test thread is starting
/// shares the descriptor of a store's lock file until it execs; closing a store releases its
/// lock for that child too, so nothing here needs to retry.)
pub fn open_store(dir: &Path, options: Options) -> strata::Result<Store> {
    Store::open(dir, options)
}

/// Runs strata-dump with `args`.
pub fn dump(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_strata-dump")).args(args).output().expect("strata-dump runs")
}

/// Runs strata-dump on `dir`: `subcommand DIR rest...`.
pub fn dump_dir(subcommand: &str, dir: &Path, rest: &[&str]) -> Output {
    let dir = dir.to_str().expect("utf-8 temp dir");
    let mut args = vec![subcommand, dir];
    args.extend_from_slice(rest);
    dump(&args)
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts the exit code, showing both streams when it differs.
pub fn assert_exit(o: &Output, code: i32) {
    assert_eq!(o.status.code(), Some(code), "exit status {:?}\nstdout:\n{}\nstderr:\n{}", o.status, stdout(o), stderr(o));
}

/// Parses JSON Lines output.
pub fn json_lines(o: &Output) -> Vec<Value> {
    stdout(o).lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

/// Small segments, so that a few hundred events span several sealed segments.
pub fn small_segments() -> Options {
    Options { segment_size_bytes: 4096, durability: Durability::Never, ..Options::default() }
}

/// A store with contacts and deals spread over several segments:
/// - seq 1: Contact.Created contact_1 by agent_1 ({"name": "Alice", "stage": "Lead"})
/// - seq 2: Contact.Qualified contact_1 by agent_2 ({"stage": "Qualified"})
/// - seqs 3..=52: one batch creating deal_0..deal_49 (Deal.Created, by agent_1)
/// - seqs 53..=152: Deal.Updated on deal_{i % 50}, no actor
/// - seq 153: Contact.Deleted contact_1 with metadata {"reason": "test"}
pub fn sample_store(dir: &Path) -> Vec<strata::Event> {
    let store = open_store(dir, small_segments()).unwrap();
    let mut events = Vec::new();
    events
        .push(store.append(NewEvent::create("Contact", "contact_1", json!({"name": "Alice", "stage": "Lead"})).actor("agent_1")).unwrap());
    events.push(store.append(NewEvent::update("contact_1", json!({"stage": "Qualified"})).verb("Qualified").actor("agent_2")).unwrap());
    let deals =
        (0..50).map(|i| NewEvent::create("Deal", format!("deal_{i}"), json!({"amount": i * 10, "note": "x".repeat(20)})).actor("agent_1"));
    events.extend(store.append_batch(deals.collect()).unwrap());
    for i in 0..100 {
        events.push(store.append(NewEvent::update(format!("deal_{}", i % 50), json!({"amount": i, "step": i}))).unwrap());
    }
    events.push(store.append(NewEvent::delete("contact_1").metadata(json!({"reason": "test"}))).unwrap());
    drop(store);
    events
}

/// A store of 400 events with enough bytes for the writer to train a zstd dictionary (it
/// samples the first frames), and events after it that use it.
pub fn store_with_dictionary(dir: &Path) -> Vec<strata::Event> {
    let store = open_store(dir, Options { durability: Durability::Never, ..Options::default() }).unwrap();
    let events = (0..400)
        .map(|i| {
            let data = json!({"name": format!("customer {i}"), "email": format!("c{i}@example.com"), "notes": "lorem ipsum dolor sit amet ".repeat(10), "n": i});
            store.append(NewEvent::create("Customer", format!("customer_{i}"), data)).unwrap()
        })
        .collect();
    drop(store);
    assert!(
        std::fs::read_dir(dir).unwrap().any(|e| e.unwrap().file_name().to_string_lossy().ends_with(".zdict")),
        "no dictionary was trained"
    );
    events
}

/// The sample store with a checkpoint at seq 100 (written through the API), then more
/// events after it; returns the checkpoint file.
pub fn store_with_checkpoint(dir: &Path) -> PathBuf {
    let store = open_store(dir, small_segments()).unwrap();
    store.append(NewEvent::create("Contact", "c0", json!({"n": 0}))).unwrap();
    for i in 1..100 {
        store.append(NewEvent::update("c0", json!({"n": i}))).unwrap();
    }
    assert_eq!(store.checkpoint().unwrap(), Some(100));
    for i in 0..20 {
        store.append(NewEvent::create("Contact", format!("later_{i}"), json!({}))).unwrap();
    }
    drop(store);
    dir.join("checkpoint-00000000000000000100.ckpt")
}

/// The segment files of a store, in seq order.
pub fn segment_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "seg")).collect();
    files.sort();
    files
}

/// The seq a segment file starts at, from its name.
pub fn base_of(segment: &Path) -> u64 {
    segment.file_stem().unwrap().to_str().unwrap().parse().unwrap()
}

/// Every file of a directory with its bytes, sorted by name.
pub fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .map(|p| (p.file_name().unwrap().to_string_lossy().into_owned(), std::fs::read(&p).unwrap()))
        .collect();
    files.sort();
    files
}

/// Where the frames of a segment start, found by walking their length fields from offset 64
/// up to the trailer (sealed segments) or the end of the file: independent of the tool.
pub fn frame_offsets(segment: &Path) -> Vec<u64> {
    let bytes = std::fs::read(segment).unwrap();
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let footer = bytes.len().saturating_sub(64);
    let end = if bytes.len() >= 128 && &bytes[footer..footer + 8] == b"STRATEND" { u64_at(footer + 8) as usize } else { bytes.len() };
    let mut offsets = Vec::new();
    let mut at = 64usize;
    while at + 48 <= end {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        if len < 48 {
            break; // reserved space (zeros) after the last frame of an active segment
        }
        offsets.push(at as u64);
        at += len;
    }
    offsets
}

/// Flips one bit of `file` at `offset`.
pub fn flip_bit(file: &Path, offset: u64) {
    let mut bytes = std::fs::read(file).unwrap();
    bytes[offset as usize] ^= 0x10;
    std::fs::write(file, bytes).unwrap();
}
