//! A dictionary is an optimization: an I/O error while writing a trained dictionary fails
//! no append. For a fault in each step of the dictionary's write (temporary file created,
//! written, `fdatasync`ed, renamed, directory `fsync`ed), on the in-memory `FaultStorage`:
//!
//! - the append whose commit triggered training is acknowledged, the writer is not
//!   poisoned, later appends succeed, and frames go on being compressed without a
//!   dictionary (`dict_id` 0); the writer does not train again while the store is open;
//! - what the failure left in the directory (a torn, empty or complete temporary file, or a
//!   complete dictionary file whose directory entry is not durable) does not stop the next
//!   open, reopened as is or after a power loss, and every acknowledged event is there;
//! - the reopened store trains again (or compresses with the dictionary the failed write
//!   did leave), and a power loss after that still loses nothing acknowledged.

mod faults;
mod layout;

use std::path::PathBuf;
use std::sync::Arc;

use faults::{assert_appends_continue, assert_holds, workload};
use serde_json::json;
use strata::{Event, FaultMode, FaultOp, FaultStorage, NewEvent, Options, Store};

const DIR: &str = "/db";

/// One segment for the whole workload, no checkpoints: the only creates, appends, renames
/// and directory fsyncs after open are the dictionary's.
fn options() -> Options {
    Options { segment_size_bytes: 8 << 20, checkpoint_every_events: 0, checkpoint_every_bytes: 0, ..Options::default() }
}

fn open(storage: &FaultStorage) -> Store {
    Store::open_with_storage(DIR, options(), Arc::new(storage.clone())).unwrap()
}

/// Single-event batches of ~400-byte records: the writer trains after 250 frames, and as
/// many again follow (enough samples for a second training, were it retried).
fn batches(seed: u64) -> Vec<Vec<NewEvent>> {
    workload(seed, 600, 400, 0)
}

/// The files of the store whose names end with `suffix`, sorted.
fn files(storage: &FaultStorage, suffix: &str) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = storage.paths().into_iter().filter(|p| p.to_string_lossy().ends_with(suffix)).collect();
    out.sort();
    out
}

/// The `dict_id` of every frame in the store, in log order.
fn frame_dict_ids(storage: &FaultStorage) -> Vec<u32> {
    files(storage, ".seg").iter().flat_map(|p| layout::frames_in(&storage.file_bytes(p).unwrap())).map(|f| f.dict_id).collect()
}

/// Where the workload trains with no fault: the index of the batch whose commit trains, and
/// the size of the dictionary file. Checks that the training commit does what the fault
/// cases count on: one frame write and sync, then one dictionary write.
fn training_step(seed: u64) -> (usize, usize) {
    let storage = FaultStorage::new(seed);
    let store = open(&storage);
    for (i, batch) in batches(seed).into_iter().enumerate() {
        let before = FaultOp::ALL.map(|op| storage.count(op));
        store.append_batch(batch).unwrap();
        if let [dict] = &files(&storage, ".zdict")[..] {
            let ops = |op: FaultOp| storage.count(op) - before[FaultOp::ALL.iter().position(|o| *o == op).unwrap()];
            let counted =
                [FaultOp::WriteAt, FaultOp::SyncData, FaultOp::Create, FaultOp::Append, FaultOp::Rename, FaultOp::SyncDir].map(ops);
            assert_eq!(counted, [1, 2, 1, 1, 1, 1], "the training commit: frame write + sync, then create, append, sync, rename, dir sync");
            assert_eq!(dict.file_name().unwrap(), "dict-0000000001.zdict");
            return (i, storage.file_bytes(dict).unwrap().len());
        }
    }
    panic!("the workload trains no dictionary");
}

/// What a run under one fault acknowledged.
struct Run {
    storage: FaultStorage,
    acked: Vec<Event>,
}

/// Appends the workload with the `nth` operation of kind `op` of the training commit failing
/// once; checks that nothing fails and nothing is compressed with a dictionary.
fn run_with_fault(seed: u64, training: usize, op: FaultOp, nth: u64) -> Run {
    let context = format!("{op:?} failing in the dictionary write");
    let storage = FaultStorage::new(seed);
    let store = open(&storage);
    let mut acked = Vec::new();
    for (i, batch) in batches(seed).into_iter().enumerate() {
        if i == training {
            storage.fail(op, storage.count(op) + nth, FaultMode::Once);
        }
        let events = store.append_batch(batch).unwrap_or_else(|e| panic!("{context}: append {i} failed: {e}"));
        acked.extend(events);
    }
    let probe = NewEvent::create("Probe", "after-the-workload", json!({}));
    acked.push(store.append(probe).unwrap_or_else(|e| panic!("{context}: the writer was poisoned: {e}")));
    assert!(frame_dict_ids(&storage).iter().all(|&id| id == 0), "{context}: a frame names a dictionary that was not written");
    let mut attempts = files(&storage, ".zdict").into_iter().chain(files(&storage, ".zdict.tmp"));
    assert!(attempts.all(|p| p.to_string_lossy().contains("dict-0000000001")), "{context}: training was retried");
    assert_holds(&store, &acked, None, &context);
    drop(store);
    Run { storage, acked }
}

/// Reopens `storage` as is and after a power loss: every acknowledged event is there, then
/// appends continue. Returns the store reopened as is.
fn reopens(storage: &FaultStorage, acked: &[Event], context: &str) -> Store {
    let crashed = storage.fork();
    crashed.crash();
    let store = open(&crashed);
    assert_holds(&store, acked, None, &format!("{context}, reopened after a power loss"));
    assert_appends_continue(&store, context);
    let store = open(storage);
    assert_holds(&store, acked, None, &format!("{context}, reopened"));
    assert!(files(storage, ".tmp").is_empty(), "{context}: open must remove temporary files");
    store
}

/// After a reopen, appends continue with a dictionary (trained anew, or the one the failed
/// write left) and a power loss loses none of them.
fn continues_with_a_dictionary(storage: &FaultStorage, store: Store, mut acked: Vec<Event>, context: &str) {
    for i in 0..300 {
        let note = format!("call {i} about renewal {} with a discount of {}%; ", i * 7, i % 13).repeat(6);
        let stage = ["lead", "won", "lost"][i % 3];
        let data = json!({"i": i, "stage": stage, "note": note});
        let ev = store.append(NewEvent::create("Later", format!("later-{i}"), data));
        acked.push(ev.unwrap_or_else(|e| panic!("{context}: append {i} after reopen: {e}")));
    }
    let ids = frame_dict_ids(storage);
    assert_eq!(ids.last(), Some(&1), "{context}: the reopened store must compress with dictionary 1");
    assert_eq!(files(storage, ".zdict").len(), 1, "{context}: one dictionary");
    let crashed = storage.fork();
    drop(store);
    crashed.crash();
    let store = open(&crashed);
    assert_holds(&store, &acked, None, &format!("{context}: power loss after appends with the dictionary"));
}

#[test]
fn a_failed_dictionary_write_acknowledges_the_batch_and_compresses_without_it() {
    let seed = faults::seed("a_failed_dictionary_write_acknowledges_the_batch_and_compresses_without_it", 0xd1c7);
    let (training, dict_len) = training_step(seed);
    // The training commit's operations: its frame's write and sync, then the dictionary's.
    let cases = [(FaultOp::Create, 1), (FaultOp::Append, 1), (FaultOp::SyncData, 2), (FaultOp::Rename, 1), (FaultOp::SyncDir, 1)];
    for (op, nth) in cases {
        let context = format!("{op:?} failing in the dictionary write");
        let run = run_with_fault(seed, training, op, nth);
        // What the failure left: nothing, a temporary file, or the renamed dictionary.
        let tmp = files(&run.storage, ".zdict.tmp");
        let dict = files(&run.storage, ".zdict");
        match op {
            FaultOp::Create => assert!(tmp.is_empty() && dict.is_empty(), "{context}: {tmp:?} {dict:?}"),
            FaultOp::Append => {
                assert!(dict.is_empty() && tmp.len() == 1, "{context}: {tmp:?} {dict:?}");
                let torn = run.storage.file_bytes(&tmp[0]).unwrap().len();
                assert!(torn < dict_len, "{context}: the temporary file must be torn ({torn} of {dict_len} bytes)");
            }
            FaultOp::SyncData | FaultOp::Rename => assert!(dict.is_empty() && tmp.len() == 1, "{context}: {tmp:?} {dict:?}"),
            FaultOp::SyncDir => assert!(tmp.is_empty() && dict.len() == 1, "{context}: {tmp:?} {dict:?}"),
            other => unreachable!("{other:?}"),
        }
        let store = reopens(&run.storage, &run.acked, &context);
        continues_with_a_dictionary(&run.storage, store, run.acked, &context);
    }
}

/// Whatever a failed dictionary write leaves as its temporary file (empty, a few bytes, a
/// header without the dictionary, all but the last byte) is removed by the next open, and
/// the dictionary trained then takes the id (no frame names it) without trouble.
#[test]
fn a_torn_temporary_dictionary_does_not_stop_open() {
    let seed = faults::seed("a_torn_temporary_dictionary_does_not_stop_open", 0xd1c8);
    let (training, dict_len) = training_step(seed);
    let run = run_with_fault(seed, training, FaultOp::Rename, 1);
    let tmp = files(&run.storage, ".zdict.tmp");
    assert_eq!(tmp.len(), 1, "a failed rename leaves the temporary file");
    let whole = run.storage.file_bytes(&tmp[0]).unwrap();
    assert_eq!(whole.len(), dict_len);
    for len in [0, 7, 24, dict_len - 1] {
        let context = format!("a {len}-byte temporary dictionary");
        let storage = run.storage.fork();
        storage.set_file_bytes(&tmp[0], whole[..len].to_vec()).unwrap();
        let store = reopens(&storage, &run.acked, &context);
        continues_with_a_dictionary(&storage, store, run.acked.clone(), &context);
    }
}
