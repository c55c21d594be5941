//! Segment scan and recovery of arbitrary bytes: the input becomes the segment files of a
//! store directory, and `Store::open` must return `Ok` or a typed `Err`, never panic, hang
//! or run out of memory. When it opens, every read must work, an append must go through,
//! and the store must then reopen cleanly under `Recovery::Strict` with the same events: a
//! recovered log is a clean log.
//!
//! Input: `mode u8 | split u8 | bytes`. Mode bits: 0 rewrite checksums first (to get past
//! the CRCs), 1-2 recovery mode, 3 split the bytes into two segments at `split / 256` of
//! their length, 4 add the fuzz dictionary file, 5 add a leftover `.tmp` file.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::json;
use strata::fuzzing::{FUZZ_DICT_ID, dictionary_file, dictionary_file_name, fuzz_dictionary, reseal_segment, segment_file_name};
use strata::{Durability, Error, EventQuery, NewEvent, Options, Recovery, Store};

fn base_seq_of(segment: &[u8]) -> u64 {
    segment.get(16..24).map_or(1, |b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
}

fn scratch_dir() -> tempfile::TempDir {
    // tmpfs where there is one: the fuzzer opens thousands of stores a second.
    let shm = std::path::Path::new("/dev/shm");
    if shm.is_dir() { tempfile::tempdir_in(shm) } else { tempfile::tempdir() }.expect("a temporary directory")
}

fuzz_target!(|data: &[u8]| {
    let [mode, split, rest @ ..] = data else { return };
    let recovery = match (mode >> 1) & 3 {
        0 => Recovery::TolerateTornTail,
        1 => Recovery::Strict,
        _ => Recovery::SalvagePrefix,
    };
    let mut segments = if mode & 8 != 0 {
        let at = rest.len() * usize::from(*split) / 256;
        vec![rest[..at].to_vec(), rest[at..].to_vec()]
    } else {
        vec![rest.to_vec()]
    };
    if mode & 1 != 0 {
        segments.iter_mut().for_each(|s| reseal_segment(s));
    }
    let dir = scratch_dir();
    for (i, seg) in segments.iter().enumerate() {
        // Named by the seq its header claims, so that mutations get past the name check.
        let name = segment_file_name(base_seq_of(seg).wrapping_add(i as u64 * u64::from(seg.is_empty())));
        std::fs::write(dir.path().join(name), seg).expect("write a segment");
    }
    if mode & 16 != 0 {
        std::fs::write(dir.path().join(dictionary_file_name(FUZZ_DICT_ID)), dictionary_file(FUZZ_DICT_ID, fuzz_dictionary()))
            .expect("write a dictionary");
    }
    if mode & 32 != 0 {
        std::fs::write(dir.path().join("00000000000000000009.seg.tmp"), rest).expect("write a tmp file");
    }
    let options =
        Options { durability: Durability::Never, recovery, train_dictionary: false, segment_size_bytes: 4096, ..Options::default() };
    let Ok(store) = Store::open(dir.path(), options.clone()) else { return };
    // Open checked every frame's checksums and index fields; the JSON of an event is
    // parsed when it is read, so a frame whose checksum is right but whose JSON is not (no
    // crash writes that) reads back as a typed corruption error. Either way, nothing panics.
    let events = match store.events(&EventQuery::new()) {
        Ok(events) => Some(events),
        Err(Error::Corruption { .. }) => None,
        Err(e) => panic!("events() after a successful open: {e}"),
    };
    if let Some(events) = &events {
        assert_eq!(events.len() as u64, store.last_seq(), "the log is not dense after open");
        let mut entities: Vec<&str> = events.iter().map(|e| e.entity.as_str()).collect();
        entities.sort_unstable();
        entities.dedup();
        for id in entities.iter().take(64) {
            match (store.history(id), store.get(id)) {
                (Ok(history), Ok(Some(current))) => {
                    assert_eq!(current.version, history.len() as u64, "get() and history() disagree on {id}")
                }
                (Ok(_), Ok(None)) => panic!("{id} has events but get() finds nothing"),
                (Err(Error::Corruption { .. }), _) | (_, Err(Error::Corruption { .. })) => {}
                (Err(e), _) | (_, Err(e)) => panic!("reading {id} after a successful open: {e}"),
            }
        }
    }
    let last_seq = store.last_seq();
    let probe = NewEvent::create("Probe", format!("probe-{}", store.last_seq()), json!({"n": 1}));
    let appended = match store.append(probe) {
        Ok(ev) => Some(ev),
        Err(e @ (Error::Io { .. } | Error::Poisoned { .. } | Error::Corruption { .. })) => panic!("append after a successful open: {e}"),
        Err(_) => None,
    };
    drop(store);
    let strict = Options { recovery: Recovery::Strict, ..options };
    let store = Store::open(dir.path(), strict).unwrap_or_else(|e| panic!("a recovered store does not reopen cleanly: {e}"));
    let expected_last = last_seq + u64::from(appended.is_some());
    assert_eq!(store.last_seq(), expected_last, "reopening changed the log's length");
    if let Some(mut want) = events {
        want.extend(appended);
        let got = store.events(&EventQuery::new()).expect("events() after reopening");
        assert_eq!(got, want, "reopening changed the log");
    }
});
