//! Checkpoint decoding, and open with an arbitrary checkpoint next to an intact log.
//!
//! A checkpoint is a cache: one that fails a check must be skipped, and open must fall back
//! to replaying the log. So with the checkpoint's checksums left as they are, whatever the
//! bytes, open must succeed and show exactly the log's events. With checksums rewritten (or
//! an arbitrary body wrapped in a valid header), a bogus checkpoint can pass every check (it
//! is a cache, not a proof), so then only a typed result and panic-free reads are required.
//!
//! Input: `mode u8 | bytes`. Mode bit 0: the bytes are a raw (uncompressed) body, wrapped in
//! a valid header for the template store; bit 1: rewrite the checksums of the bytes (and
//! the store id, to the template's).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use strata::fuzzing::{checkpoint_file, checkpoint_file_name, decode_checkpoint, reseal_checkpoint};
use strata::{Durability, Event, EventQuery, NewEvent, Options, Store};

/// The template store: its files (without checkpoints), store id, last seq and events.
struct Template {
    files: Vec<(String, Vec<u8>)>,
    store_id: u64,
    last_seq: u64,
    events: Vec<Event>,
}

fn options() -> Options {
    Options { durability: Durability::Never, segment_size_bytes: 1024, train_dictionary: false, ..Options::default() }
}

fn scratch_dir() -> tempfile::TempDir {
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.expect("a temporary directory")
}

/// A small store written the same way every time (so that frame offsets, and so the fit
/// of a seed checkpoint, repeat from run to run), kept in memory.
fn template() -> &'static Template {
    static TEMPLATE: OnceLock<Template> = OnceLock::new();
    TEMPLATE.get_or_init(|| {
        let dir = scratch_dir();
        let store = Store::open(dir.path(), options()).expect("open the template");
        for i in 0..12 {
            store.append(NewEvent::create("Item", format!("i{i}"), json!({"n": i, "tag": "template"}))).expect("append");
        }
        for i in 0..12 {
            store.append(NewEvent::update(format!("i{}", i % 3), json!({"n": 100 + i}))).expect("append");
        }
        let events = store.events(&EventQuery::new()).expect("list");
        let (store_id, last_seq) = (store.store_id().0, store.last_seq());
        drop(store);
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir.path()).expect("list the template") {
            let entry = entry.expect("entry");
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.ends_with(".seg") || name.ends_with(".zdict") {
                files.push((name, std::fs::read(entry.path()).expect("read")));
            }
        }
        Template { files, store_id, last_seq, events }
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else { return };
    let t = template();
    let (raw_body, reseal) = (mode & 1 != 0, mode & 2 != 0);
    let mut file = if raw_body { checkpoint_file(rest, t.last_seq, t.store_id) } else { rest.to_vec() };
    if reseal {
        // The template's store id is random, chosen anew in each process, so no saved input
        // carries it: write it in, or a resealed checkpoint never gets past the store-id check.
        if let Some(id) = file.get_mut(24..32) {
            id.copy_from_slice(&t.store_id.to_le_bytes());
        }
        reseal_checkpoint(&mut file);
    }
    // The decoder alone: Ok or a reason, never a panic.
    let _ = decode_checkpoint(&file);
    // Open with it.
    let dir = scratch_dir();
    for (name, bytes) in &t.files {
        std::fs::write(dir.path().join(name), bytes).expect("write the template");
    }
    let seq = file.get(16..24).map_or(t.last_seq, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])));
    std::fs::write(dir.path().join(checkpoint_file_name(seq)), &file).expect("write the checkpoint");
    let opened = Store::open(dir.path(), options());
    if raw_body || reseal {
        if let Ok(store) = opened {
            let _ = store.events(&EventQuery::new());
            for i in 0..12 {
                let _ = store.get(&format!("i{i}"));
                let _ = store.history(&format!("i{i}"));
            }
        }
        return;
    }
    let store = opened.unwrap_or_else(|e| panic!("a checkpoint with its own checksums made open fail: {e}"));
    let events = store.events(&EventQuery::new()).expect("events");
    assert_eq!(events, t.events, "a checkpoint with its own checksums changed what the store shows");
    for i in 0..12 {
        let id = format!("i{i}");
        let want = t.events.iter().filter(|e| e.entity == id).count() as u64;
        assert_eq!(store.get(&id).expect("get").map(|e| e.version), Some(want), "{id}");
    }
});
