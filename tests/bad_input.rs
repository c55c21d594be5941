//! Bad input of every kind gets a typed error, never a panic, and writes nothing: the log's
//! last seq, the files on disk and the state after a reopen are exactly as before.

mod layout;

use layout::dir_sizes;

use std::path::Path;

use serde_json::{Value, json};
use strata::{Error, NewEvent, Options, Store, Timestamp};

/// A store holding a live contact `c1` (version 2), a deleted contact `gone` and a deal.
fn seeded(dir: &Path) -> Store {
    let store = Store::open(dir, Options::default()).unwrap();
    store.append(NewEvent::create("Contact", "c1", json!({"name": "Alice", "stage": "Lead"}))).unwrap();
    store.append(NewEvent::update("c1", json!({"stage": "Qualified"})).verb("Qualified")).unwrap();
    store.append(NewEvent::create("Contact", "gone", json!({}))).unwrap();
    store.append(NewEvent::delete("gone")).unwrap();
    store.append(NewEvent::create("Deal", "d1", json!({"amount": 10}))).unwrap();
    store
}

/// Appends `bad`, expects an error that `check` accepts, and checks that nothing was
/// written, in memory and on disk.
fn rejects(store: &Store, dir: &Path, bad: NewEvent, check: impl Fn(&Error) -> bool) {
    let seq = store.last_seq();
    let files = dir_sizes(dir);
    let described = format!("{bad:?}");
    match store.append(bad.clone()) {
        Ok(ev) => panic!("{described} was accepted as {ev:?}"),
        Err(e) => assert!(check(&e), "{described} gave the wrong error: {e:?}"),
    }
    // Also inside a batch, after a good event: the whole batch must go.
    let good = NewEvent::update("d1", json!({"amount": 11}));
    assert!(store.append_batch(vec![good, bad]).is_err(), "{described} was accepted in a batch");
    assert_eq!(store.last_seq(), seq, "{described} moved the log");
    assert_eq!(dir_sizes(dir), files, "{described} changed the files");
}

/// Reopens the store and checks that it holds exactly the seeded events.
fn reopened_unchanged(store: Store, dir: &Path) {
    let before: Vec<_> = ["c1", "gone", "d1"].iter().map(|id| (store.get(id).unwrap(), store.history(id).unwrap())).collect();
    let last = store.last_seq();
    drop(store);
    let store = Store::open(dir, Options::default()).unwrap();
    assert_eq!(store.last_seq(), last);
    let after: Vec<_> = ["c1", "gone", "d1"].iter().map(|id| (store.get(id).unwrap(), store.history(id).unwrap())).collect();
    assert_eq!(after, before);
}

#[test]
fn update_delete_or_restore_of_an_unknown_entity_is_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    let not_found = |e: &Error| matches!(e, Error::NotFound { entity } if entity == "nobody");
    rejects(&store, dir.path(), NewEvent::update("nobody", json!({"x": 1})), not_found);
    rejects(&store, dir.path(), NewEvent::update("nobody", json!({})).verb("Qualified"), not_found);
    rejects(&store, dir.path(), NewEvent::delete("nobody"), not_found);
    rejects(&store, dir.path(), NewEvent::restore("nobody"), not_found);
    reopened_unchanged(store, dir.path());
}

#[test]
fn a_duplicate_create_is_already_exists_even_for_a_deleted_entity() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    rejects(
        &store,
        dir.path(),
        NewEvent::create("Contact", "c1", json!({})),
        |e| matches!(e, Error::AlreadyExists { entity, kind, version: 2 } if entity == "c1" && kind == "Contact"),
    );
    // A create with another kind is still a duplicate: ids are global.
    rejects(&store, dir.path(), NewEvent::create("Deal", "c1", json!({})), |e| matches!(e, Error::AlreadyExists { .. }));
    rejects(&store, dir.path(), NewEvent::create("Contact", "gone", json!({})), |e| matches!(e, Error::AlreadyExists { version: 2, .. }));
    reopened_unchanged(store, dir.path());
}

#[test]
fn invalid_entity_ids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    let bad_id = |e: &Error| matches!(e, Error::InvalidInput { what: "entity id", .. });
    let too_long = "x".repeat(257);
    // 255 ASCII bytes plus a 2-byte character: 257 bytes in 256 characters.
    let too_long_utf8 = format!("{}é", "x".repeat(255));
    for id in ["", too_long.as_str(), too_long_utf8.as_str(), "a\nb", "tab\there", "nul\0", "bell\u{7}", "del\u{7f}", "c1\u{85}"] {
        rejects(&store, dir.path(), NewEvent::create("Contact", id, json!({})), bad_id);
        rejects(&store, dir.path(), NewEvent::update(id, json!({})), bad_id);
    }
    // The limits themselves are accepted.
    let longest = "y".repeat(256);
    store.append(NewEvent::create("Contact", longest.as_str(), json!({}))).unwrap();
    assert_eq!(store.get(&longest).unwrap().unwrap().id, longest);
    store.append(NewEvent::create("Contact", "x", json!({}))).unwrap();
}

#[test]
fn invalid_kinds_and_verbs_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    let long = "K".repeat(65);
    for kind in ["", "1Deal", "Deal.X", "De al", "Déal", "_Deal", "Deal-1", "*", long.as_str()] {
        rejects(&store, dir.path(), NewEvent::create(kind, "new", json!({})), |e| matches!(e, Error::InvalidInput { what: "kind", .. }));
    }
    for verb in ["", "1st", "Won.Big", "Wo n", "Gagné", "*", long.as_str()] {
        rejects(&store, dir.path(), NewEvent::update("c1", json!({})).verb(verb), |e| {
            matches!(e, Error::InvalidInput { what: "verb", .. })
        });
    }
    reopened_unchanged(store, dir.path());
}

#[test]
fn reserved_verbs_cannot_be_used_as_custom_verbs() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    for verb in ["Created", "Deleted", "Restored"] {
        rejects(&store, dir.path(), NewEvent::update("c1", json!({})).verb(verb), |e| {
            matches!(e, Error::InvalidInput { what: "verb", .. })
        });
    }
    // `Updated` is what an update is called anyway.
    assert_eq!(store.append(NewEvent::update("c1", json!({})).verb("Updated")).unwrap().event_type, "Contact.Updated");
}

#[test]
fn non_object_data_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    let bad_data = |e: &Error| matches!(e, Error::InvalidInput { what: "data", .. });
    for data in [json!(null), json!(1), json!("text"), json!([1, 2]), json!(true)] {
        rejects(&store, dir.path(), NewEvent::create("Contact", "new", data.clone()), bad_data);
        rejects(&store, dir.path(), NewEvent::update("c1", data), bad_data);
    }
    reopened_unchanged(store, dir.path());
}

#[test]
fn reserved_or_non_object_metadata_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    let bad_meta = |e: &Error| matches!(e, Error::InvalidInput { what: "metadata", .. });
    for key in ["undoOf", "undoType", "rollbackTo"] {
        let mut meta = serde_json::Map::new();
        meta.insert(key.to_string(), json!("x"));
        rejects(&store, dir.path(), NewEvent::update("c1", json!({})).metadata(Value::Object(meta)), bad_meta);
    }
    for meta in [json!([1]), json!("note"), json!(null), json!(3)] {
        rejects(&store, dir.path(), NewEvent::update("c1", json!({})).metadata(meta), bad_meta);
    }
    reopened_unchanged(store, dir.path());
}

#[test]
fn invalid_actors_and_event_ids_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    let long = "a".repeat(257);
    for actor in ["", "line\nbreak", long.as_str()] {
        rejects(&store, dir.path(), NewEvent::update("c1", json!({})).actor(actor), |e| {
            matches!(e, Error::InvalidInput { what: "actor", .. })
        });
    }
    for id in ["", "line\nbreak", long.as_str()] {
        rejects(&store, dir.path(), NewEvent::update("c1", json!({})).id(id), |e| {
            matches!(e, Error::InvalidInput { what: "event id", .. })
        });
    }
    reopened_unchanged(store, dir.path());
}

#[test]
fn an_event_over_max_event_bytes_is_too_large() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options { max_event_bytes: 1024, ..Options::default() }).unwrap();
    store.append(NewEvent::create("Doc", "doc", json!({"body": "small"}))).unwrap();
    let big = "x".repeat(2000);
    rejects(
        &store,
        dir.path(),
        NewEvent::update("doc", json!({"body": big})),
        |e| matches!(e, Error::TooLarge { entity, size, limit: 1024 } if entity == "doc" && *size > 2000),
    );
    // Metadata counts too.
    rejects(&store, dir.path(), NewEvent::update("doc", json!({})).metadata(json!({"note": "y".repeat(2000)})), |e| {
        matches!(e, Error::TooLarge { .. })
    });
    // Just under the limit is fine.
    store.append(NewEvent::update("doc", json!({"body": "z".repeat(900)}))).unwrap();
    assert_eq!(store.last_seq(), 2);
}

#[test]
fn the_default_limit_allows_4_mib_events_but_not_more() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options::default()).unwrap();
    store.append(NewEvent::create("Doc", "doc", json!({}))).unwrap();
    store.append(NewEvent::update("doc", json!({"body": "x".repeat(4_000_000)}))).unwrap();
    rejects(&store, dir.path(), NewEvent::update("doc", json!({"body": "x".repeat(4 << 20)})), |e| matches!(e, Error::TooLarge { .. }));
    drop(store);
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.get("doc").unwrap().unwrap().state["body"].as_str().map(str::len), Some(4_000_000));
}

#[test]
fn timestamp_regression_and_version_conflict_write_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    let last = store.history("d1").unwrap()[0].timestamp;
    rejects(&store, dir.path(), NewEvent::update("c1", json!({})).timestamp(last), |e| matches!(e, Error::TimestampRegression { .. }));
    rejects(&store, dir.path(), NewEvent::update("c1", json!({})).timestamp(Timestamp::from_micros(-5)), |e| {
        matches!(e, Error::TimestampRegression { .. })
    });
    rejects(&store, dir.path(), NewEvent::update("c1", json!({})).expect_version(1), |e| {
        matches!(e, Error::VersionConflict { expected: 1, actual: 2, .. })
    });
    reopened_unchanged(store, dir.path());
}

#[test]
fn a_directory_with_other_files_is_not_a_store_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("notes.txt"), b"my notes").unwrap();
    std::fs::write(dir.path().join("data.bin"), [0u8, 1, 2, 3, 255]).unwrap();
    std::fs::write(dir.path().join("half-written.tmp"), b"someone else's temporary file").unwrap();
    let before = dir_sizes(dir.path());
    let err = Store::open(dir.path(), Options::default()).unwrap_err();
    assert!(matches!(err, Error::NotAStore { .. }), "{err:?}");
    assert_eq!(dir_sizes(dir.path()), before);
}

#[test]
fn a_directory_holding_only_temporary_files_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("upload.tmp"), b"someone else's temporary file").unwrap();
    let before = dir_sizes(dir.path());
    let err = Store::open(dir.path(), Options::default()).unwrap_err();
    assert!(matches!(err, Error::NotAStore { .. }), "{err:?}");
    assert_eq!(dir_sizes(dir.path()), before);
}

#[test]
fn a_file_named_like_a_segment_holding_garbage_is_not_a_store() {
    for garbage in [vec![b'G'; 8], b"this is not a strata segment, just some text".to_vec(), vec![0xAB; 4096]] {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("00000000000000000001.seg"), &garbage).unwrap();
        std::fs::write(dir.path().join("other.tmp"), b"keep me").unwrap();
        let before = dir_sizes(dir.path());
        let err = Store::open(dir.path(), Options::default()).unwrap_err();
        assert!(matches!(err, Error::NotAStore { .. }), "{} garbage bytes: {err:?}", garbage.len());
        assert_eq!(dir_sizes(dir.path()), before, "opening changed the directory");
    }
}

#[test]
fn a_path_that_is_a_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("plain-file");
    std::fs::write(&file, b"x").unwrap();
    let err = Store::open(&file, Options::default()).unwrap_err();
    assert!(matches!(err, Error::Io { .. } | Error::NotAStore { .. }), "{err:?}");
    assert_eq!(std::fs::read(&file).unwrap(), b"x");
}

/// Rewrites the u32 format version at offset 8 of a file whose header CRC (over bytes
/// `[0, crc_at)`, at `crc_at`) must then be fixed up, as a newer strata would have written it.
fn patch_version(path: &Path, version: u32, crc_at: usize, crc_extra: &[u8]) {
    let mut bytes = std::fs::read(path).unwrap();
    bytes[8..12].copy_from_slice(&version.to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&bytes[..crc_at]);
    h.update(crc_extra);
    let crc = h.finalize();
    bytes[crc_at..crc_at + 4].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(path, bytes).unwrap();
}

fn first_segment(dir: &Path) -> std::path::PathBuf {
    dir.join("00000000000000000001.seg")
}

#[test]
fn a_store_with_a_newer_format_version_is_refused_and_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    drop(seeded(dir.path()));
    // Segment header: version at 8, CRC of [0, 60) at 60.
    patch_version(&first_segment(dir.path()), 4, 60, &[]);
    let before = dir_sizes(dir.path());
    let bytes_before = std::fs::read(first_segment(dir.path())).unwrap();
    for recovery in [strata::Recovery::TolerateTornTail, strata::Recovery::Strict, strata::Recovery::SalvagePrefix] {
        let err = Store::open(dir.path(), Options { recovery, ..Options::default() }).unwrap_err();
        match err {
            Error::UnsupportedVersion { path, found, supported } => {
                assert_eq!(path, first_segment(dir.path()));
                assert_eq!((found, supported), (4, 3));
            }
            other => panic!("{recovery:?}: expected UnsupportedVersion, got {other:?}"),
        }
    }
    assert_eq!(dir_sizes(dir.path()), before);
    assert_eq!(std::fs::read(first_segment(dir.path())).unwrap(), bytes_before);
}

#[test]
fn a_dictionary_with_a_newer_format_version_is_refused_as_unsupported() {
    let dir = tempfile::tempdir().unwrap();
    {
        let store = Store::open(dir.path(), Options { durability: strata::Durability::Never, ..Options::default() }).unwrap();
        // Enough single-event commits for the writer to train a dictionary.
        for i in 0..1000 {
            let data = json!({"name": format!("Person {i}"), "email": format!("p{i}@example.com"), "stage": "Lead", "owner": "agent_1"});
            store.append(NewEvent::create("Contact", format!("contact_{i}"), data)).unwrap();
        }
    }
    let dict = dir.path().join("dict-0000000001.zdict");
    assert!(dict.exists(), "no dictionary was trained: {:?}", dir_sizes(dir.path()));
    // Dictionary header: version at 8, CRC of [0, 20) then the dictionary bytes, at 20.
    let body = std::fs::read(&dict).unwrap()[24..].to_vec();
    patch_version(&dict, 7, 20, &body);
    let err = Store::open(dir.path(), Options::default()).unwrap_err();
    assert!(matches!(err, Error::UnsupportedVersion { found: 7, supported: 3, .. }), "{err:?}");
}

#[test]
fn a_second_writer_in_the_same_process_is_locked_out_until_the_first_closes() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    let err = Store::open(dir.path(), Options::default()).unwrap_err();
    match err {
        Error::Locked { path } => assert_eq!(path, dir.path()),
        other => panic!("expected Locked, got {other:?}"),
    }
    // The failed open wrote nothing and did not disturb the first writer.
    store.append(NewEvent::update("c1", json!({"x": 1}))).unwrap();
    drop(store);
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.get("c1").unwrap().unwrap().version, 3);
}

/// Run by `a_second_writer_in_another_process_is_locked_out` in a child process: opens the
/// store named by `STRATA_LOCK_HOLDER_DIR`, says so on stdout, and holds it until stdin closes.
#[test]
#[ignore = "helper run in a child process by a_second_writer_in_another_process_is_locked_out"]
fn lock_holder_child() {
    use std::io::{Read, Write};
    let Ok(dir) = std::env::var("STRATA_LOCK_HOLDER_DIR") else { return };
    let store = Store::open(&dir, Options::default()).unwrap();
    store.append(NewEvent::create("Contact", "from_child", json!({}))).unwrap();
    println!("LOCKED");
    std::io::stdout().flush().unwrap();
    let mut sink = Vec::new();
    let _ = std::io::stdin().read_to_end(&mut sink);
}

#[test]
fn a_second_writer_in_another_process_is_locked_out() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--ignored", "--exact", "lock_holder_child", "--nocapture", "--test-threads=1"])
        .env("STRATA_LOCK_HOLDER_DIR", dir.path())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let held = lines.by_ref().map_while(Result::ok).any(|l| l.contains("LOCKED"));
    assert!(held, "the child never reported holding the lock");
    let err = Store::open(dir.path(), Options::default()).unwrap_err();
    assert!(matches!(err, Error::Locked { .. }), "{err:?}");
    drop(child.stdin.take());
    assert!(child.wait().unwrap().success());
    let store = Store::open(dir.path(), Options::default()).unwrap();
    assert_eq!(store.get("from_child").unwrap().unwrap().version, 1);
}

#[test]
fn options_out_of_range_are_refused_before_touching_the_disk() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("store");
    let cases = [
        Options { max_event_bytes: (64 << 20) + 1, ..Options::default() },
        Options { segment_size_bytes: 1 << 40, ..Options::default() },
        Options { segment_size_bytes: u64::MAX, ..Options::default() },
    ];
    for opts in cases {
        let described = format!("{opts:?}");
        let err = Store::open(&path, opts).unwrap_err();
        assert!(matches!(err, Error::InvalidInput { what: "options", .. }), "{described}: {err:?}");
        assert!(!path.exists(), "{described} created the store directory");
    }
    // The largest allowed values open.
    let ok = Options { max_event_bytes: 64 << 20, segment_size_bytes: (1 << 40) - 1, ..Options::default() };
    Store::open(&path, ok).unwrap();
}

#[test]
fn tiny_segments_still_work() {
    let dir = tempfile::tempdir().unwrap();
    // Smaller than a header plus one frame: every frame gets a segment of its own.
    let opts = Options { segment_size_bytes: 1, durability: strata::Durability::Never, ..Options::default() };
    let store = Store::open(dir.path(), opts.clone()).unwrap();
    for i in 0..20 {
        store.append(NewEvent::create("Contact", format!("c{i}"), json!({"i": i}))).unwrap();
    }
    drop(store);
    let store = Store::open(dir.path(), opts).unwrap();
    assert_eq!(store.last_seq(), 20);
    assert_eq!(store.get("c19").unwrap().unwrap().state["i"], 19);
}

#[test]
#[ignore = "slow in debug builds (255 MiB of JSON): cargo test --release --test bad_input -- --ignored"]
fn a_batch_too_large_for_one_frame_is_refused_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let store = seeded(dir.path());
    let body = "x".repeat(4_000_000);
    // 67 events of 4 MB each, every one under max_event_bytes, together over 255 MiB.
    let batch: Vec<NewEvent> = (0..67).map(|i| NewEvent::create("Doc", format!("doc_{i}"), json!({"body": body}))).collect();
    let before = dir_sizes(dir.path());
    match store.append_batch(batch) {
        Err(Error::InvalidInput { what: "batch", .. }) => {}
        Err(other) => panic!("unexpected error {other}"),
        Ok(evs) => panic!("a batch of {} events over 255 MiB was accepted", evs.len()),
    }
    assert_eq!(dir_sizes(dir.path()), before);
    reopened_unchanged(store, dir.path());
}

/// Before MAX_BATCH_RAW_BYTES, a batch of more than 65,535 chunks was acknowledged and
/// written with a truncated chunk count, so the frame could not be read back.
#[test]
#[ignore = "slow in debug builds (270 MB in one batch): cargo test --release --test bad_input -- --ignored"]
fn a_batch_of_more_than_65535_chunks_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path(), Options { durability: strata::Durability::Never, ..Options::default() }).unwrap();
    let body = "y".repeat(4100);
    let batch: Vec<NewEvent> = (0..66_000).map(|i| NewEvent::create("Doc", format!("doc_{i}"), json!({"b": body}))).collect();
    match store.append_batch(batch) {
        Err(Error::InvalidInput { what: "batch", .. }) => {}
        Err(other) => panic!("unexpected error {other:?}"),
        Ok(evs) => {
            let n = evs.len();
            drop(store);
            let reopened = Store::open(dir.path(), Options::default());
            panic!("a {n}-event batch was acknowledged; reopening gives {:?}", reopened.map(|s| s.last_seq()));
        }
    }
}
