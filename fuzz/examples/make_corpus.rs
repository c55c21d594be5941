//! Writes the seed corpus (`fuzz/corpus/<target>/seed-*`) from real stores written through
//! the public API. Run from `fuzz/`: `cargo run --example make_corpus`.

use std::path::Path;

use serde_json::json;
use strata::fuzzing::{FUZZ_SALT, checkpoint_body, frames_of_segment, reseal_frame, sample_frame};
use strata::{Durability, NewEvent, Options, Store};

/// Writes a small store: creates, updates with custom verbs, a delete, a batch.
fn write_store(dir: &Path, segment_size_bytes: u64) {
    let options = Options { durability: Durability::Never, segment_size_bytes, train_dictionary: false, ..Options::default() };
    let store = Store::open(dir, options).unwrap();
    store.append(NewEvent::create("Contact", "c1", json!({"name": "Alice", "stage": "Lead"})).actor("agent_1")).unwrap();
    store.append(NewEvent::update("c1", json!({"stage": "Qualified"})).verb("Qualified").id("req-1")).unwrap();
    store
        .append_batch(vec![
            NewEvent::create("Account", "a", json!({"balance": 10})),
            NewEvent::create("Account", "b", json!({"balance": 0})).metadata(json!({"reason": "opening"})),
        ])
        .unwrap();
    for i in 0..6 {
        store.append(NewEvent::update("a", json!({"balance": 10 - i, "note": "x".repeat(40)}))).unwrap();
    }
    store.append(NewEvent::delete("c1")).unwrap();
    store.append(NewEvent::restore("c1")).unwrap();
}

fn segments(dir: &Path) -> Vec<Vec<u8>> {
    let mut names: Vec<_> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|p| p.extension().is_some_and(|x| x == "seg")).collect();
    names.sort();
    names.into_iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn save(target: &str, name: &str, bytes: &[u8]) {
    let dir = Path::new("corpus").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("seed-{name}")), bytes).unwrap();
}

fn with_prefix(prefix: &[u8], bytes: &[u8]) -> Vec<u8> {
    let mut out = prefix.to_vec();
    out.extend_from_slice(bytes);
    out
}

fn main() {
    // A store in one segment, and one in many small ones (sealed, with trailers).
    let one = tempfile::tempdir().unwrap();
    write_store(one.path(), 64 << 20);
    let many = tempfile::tempdir().unwrap();
    write_store(many.path(), 400);
    let active = segments(one.path()).remove(0);
    let rolled = segments(many.path());

    // frame_decode: mode byte (bit 0: reseal) then a frame.
    save("frame_decode", "sample-1", &with_prefix(&[0], &sample_frame(1, false)));
    save("frame_decode", "sample-6-dictionary", &with_prefix(&[0], &sample_frame(6, true)));
    for (i, (_, mut frame)) in frames_of_segment(&active).into_iter().take(3).enumerate() {
        reseal_frame(&mut frame, FUZZ_SALT);
        save("frame_decode", &format!("store-frame-{i}"), &with_prefix(&[1], &frame));
    }

    // segment_open: mode u8 | split u8 | bytes.
    save("segment_open", "active", &with_prefix(&[0, 0], &active));
    save("segment_open", "sealed", &with_prefix(&[0, 0], &rolled[0]));
    let mut torn = active.clone();
    torn.truncate(active.len() - 7);
    save("segment_open", "torn-tail", &with_prefix(&[0, 0], &torn));
    let mut two = rolled[0].clone();
    let split = (two.len() * 256).div_ceil(two.len() + rolled[1].len()) as u8;
    two.extend_from_slice(&rolled[1]);
    save("segment_open", "two-segments", &with_prefix(&[8, split], &two));
    save("segment_open", "salvage-garbage", &with_prefix(&[4, 0], &with_prefix(&active, &[0xAB; 96])));

    // checkpoint_open: mode u8 (bit 0: raw body, bit 1: reseal) | bytes, from a store written
    // like the target's template.
    let cp_dir = tempfile::tempdir().unwrap();
    {
        let options = Options { durability: Durability::Never, segment_size_bytes: 1024, train_dictionary: false, ..Options::default() };
        let store = Store::open(cp_dir.path(), options).unwrap();
        for i in 0..12 {
            store.append(NewEvent::create("Item", format!("i{i}"), json!({"n": i, "tag": "template"}))).unwrap();
        }
        for i in 0..12 {
            store.append(NewEvent::update(format!("i{}", i % 3), json!({"n": 100 + i}))).unwrap();
        }
        store.checkpoint().unwrap();
    }
    let ckpt =
        std::fs::read_dir(cp_dir.path()).unwrap().map(|e| e.unwrap().path()).find(|p| p.extension().is_some_and(|x| x == "ckpt")).unwrap();
    let ckpt = std::fs::read(ckpt).unwrap();
    save("checkpoint_open", "file", &with_prefix(&[0], &ckpt));
    save("checkpoint_open", "file-resealed", &with_prefix(&[2], &ckpt));
    save("checkpoint_open", "raw-body", &with_prefix(&[1], &checkpoint_body(&ckpt).unwrap()));

    // api_ops: any bytes are a sequence of operations.
    save("api_ops", "creates", &[3, 0, 0, 0, 0, 1, 5, 2, 0, 9, 0, 0, 3, 4, 0, 0, 0, 0, 0, 0, 0]);
    save("api_ops", "mixed", &(0u8..=255).map(|b| b.wrapping_mul(37)).collect::<Vec<_>>());
    save("api_ops", "reopen", &[1, 1, 0, 0, 0, 0, 0, 0, 0, 32, 32, 16, 0, 0, 0, 0, 0, 0]);
    println!("seed corpus written under fuzz/corpus/");
}
