//! `repair`: keeps everything before the first bad frame, moves the rest aside (never
//! deletes), prints exactly what was cut; `--dry-run` prints the same and changes nothing.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::json;
use strata::{NewEvent, Options};

/// Damages the middle frame of the first (sealed) segment; returns its offset.
fn damage_first_segment(dir: &Path) -> u64 {
    let first = &segment_files(dir)[0];
    let offsets = frame_offsets(first);
    let bad = offsets[offsets.len() / 2];
    flip_bit(first, bad + 50);
    bad
}

#[test]
fn dry_run_prints_the_cut_and_changes_no_byte() {
    let dir = tempfile::tempdir().unwrap();
    sample_store(dir.path());
    let bad = damage_first_segment(dir.path());
    // A salvage file left by an earlier repair is never overwritten.
    let second = segment_files(dir.path())[1].file_name().unwrap().to_str().unwrap().to_string();
    let leftover = dir.path().join(format!("{second}.salvaged"));
    std::fs::write(&leftover, b"from an earlier repair").unwrap();
    let before = snapshot(dir.path());
    let o = dump_dir("repair", dir.path(), &["--dry-run"]);
    assert_exit(&o, 0);
    assert_eq!(snapshot(dir.path()), before, "a dry run changed the store");
    let text = stdout(&o);
    let files = segment_files(dir.path());
    assert!(text.starts_with(&format!("damage: {}: offset {bad}: frame CRC mismatch\n", files[0].display())), "{text}");
    assert!(text.contains(&format!("would cut {} from offset {bad}: ", files[0].display())), "{text}");
    for later in &files[1..] {
        let len = std::fs::metadata(later).unwrap().len();
        assert!(text.contains(&format!("would cut {} whole file: {len} bytes", later.display())), "{text}");
    }
    assert!(text.contains(&format!("-> {}.1.salvaged\n", files[1].display())), "{text}");
    assert!(text.ends_with("dry run: nothing was changed\n"), "{text}");
    // The same report as the real repair, word for word but for the verb.
    let real = dump_dir("repair", dir.path(), &[]);
    assert_exit(&real, 0);
    assert_eq!(stdout(&real), text.replace("would cut", "cut").replace("dry run: nothing was changed", "repaired: the store opens again"));
    assert_eq!(std::fs::read(&leftover).unwrap(), b"from an earlier repair");
    assert!(dir.path().join(format!("{second}.1.salvaged")).exists());
}

#[test]
fn repair_keeps_the_prefix_moves_the_rest_aside_and_the_store_opens() {
    let dir = tempfile::tempdir().unwrap();
    let events = sample_store(dir.path());
    let bad = damage_first_segment(dir.path());
    let files = segment_files(dir.path());
    let before = snapshot(dir.path());
    let original = |name: &str| before.iter().find(|(n, _)| n == name).unwrap().1.clone();
    assert!(open_store(dir.path(), Options::default()).is_err(), "the damage should stop open");

    let o = dump_dir("repair", dir.path(), &[]);
    assert_exit(&o, 0);
    let text = stdout(&o);
    assert!(text.contains(&format!("cut {} from offset {bad}: ", files[0].display())), "{text}");
    assert!(text.ends_with("repaired: the store opens again\n"), "{text}");

    // Nothing deleted: the cut bytes are in the salvage files, byte for byte.
    let name0 = "00000000000000000001.seg";
    let aside = std::fs::read(dir.path().join(format!("{name0}.{bad}.salvaged"))).unwrap();
    assert_eq!(aside, original(name0)[bad as usize..]);
    assert_eq!(std::fs::read(&files[0]).unwrap(), original(name0)[..bad as usize]);
    for later in &files[1..] {
        let name = later.file_name().unwrap().to_str().unwrap();
        assert!(!later.exists());
        assert_eq!(std::fs::read(dir.path().join(format!("{name}.salvaged"))).unwrap(), original(name));
    }

    let store = open_store(dir.path(), Options::default()).unwrap();
    let kept = store.last_seq();
    let report_line = format!("keeps seqs 1..={kept}; first seq lost: {}\n", kept + 1);
    assert!(text.contains(&report_line), "{text}");
    assert_eq!(store.events(&strata::EventQuery::new()).unwrap(), events[..kept as usize]);
    store.append(NewEvent::create("Contact", "after_repair", json!({}))).unwrap();
    drop(store);
    assert_exit(&dump_dir("verify", dir.path(), &[]), 0);
    assert_eq!(stdout(&dump_dir("repair", dir.path(), &[])), format!("nothing to repair: the log is intact (last seq {})\n", kept + 1));
}

#[test]
fn repair_of_a_torn_tail_keeps_its_bytes_aside() {
    let dir = tempfile::tempdir().unwrap();
    sample_store(dir.path());
    let active = segment_files(dir.path()).pop().unwrap();
    let last = *frame_offsets(&active).last().unwrap();
    let len = std::fs::metadata(&active).unwrap().len();
    let cut_at = last + (len - last) / 2;
    std::fs::OpenOptions::new().write(true).open(&active).unwrap().set_len(cut_at).unwrap();
    let torn = std::fs::read(&active).unwrap()[last as usize..].to_vec();
    let o = dump_dir("repair", dir.path(), &[]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("torn tail"), "{}", stdout(&o));
    assert!(stdout(&o).contains(&format!("{} bytes (no readable frames)", cut_at - last)), "{}", stdout(&o));
    let name = active.file_name().unwrap().to_str().unwrap();
    assert_eq!(std::fs::read(dir.path().join(format!("{name}.{last}.salvaged"))).unwrap(), torn);
    assert_eq!(open_store(dir.path(), Options::default()).unwrap().last_seq(), 152);
}

#[test]
fn repair_refuses_while_a_writer_has_the_store_open() {
    let dir = tempfile::tempdir().unwrap();
    sample_store(dir.path());
    let store = open_store(dir.path(), Options::default()).unwrap();
    for args in [&[][..], &["--dry-run"][..]] {
        let o = dump_dir("repair", dir.path(), args);
        assert_exit(&o, 2);
        assert_eq!(stderr(&o), format!("strata-dump: store {} is locked by another writer\n", dir.path().display()));
    }
    drop(store);
    assert_exit(&dump_dir("repair", dir.path(), &["--dry-run"]), 0);
}

#[test]
fn repair_moves_a_segment_with_a_bad_header_aside_whole() {
    let dir = tempfile::tempdir().unwrap();
    sample_store(dir.path());
    let second = segment_files(dir.path())[1].clone();
    flip_bit(&second, 20);
    let o = dump_dir("repair", dir.path(), &[]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains(&format!("cut {} whole file", second.display())), "{}", stdout(&o));
    assert!(dir.path().join(format!("{}.salvaged", second.file_name().unwrap().to_str().unwrap())).exists());
    assert_eq!(open_store(dir.path(), Options::default()).unwrap().last_seq(), base_of(&second) - 1);
}

/// Regressions (random_bit_flips seeds 1795318811578846689 and 1795318973988482925): a
/// flipped bit in the trailer of a sealed segment (in its index entries, or in its footer's
/// magic number so that the trailer is not found at all). The damage is reported where
/// `Store::open` reports it (the footer, or the end of the file); cutting there leaves the
/// trailer's index entries after the last frame, which the next pass cuts as a torn tail,
/// as open does. The dry run predicts both cuts.
#[test]
fn damaged_trailer_of_a_sealed_segment_is_cut_whole_and_the_store_opens() {
    let cases = [(false, false), (true, false), (false, true), (true, true)];
    for (recovery_by_open, flip_magic) in cases {
        let dir = tempfile::tempdir().unwrap();
        sample_store(dir.path());
        let first = segment_files(dir.path())[0].clone();
        let kept = base_of(&segment_files(dir.path())[1]) - 1;
        let len = std::fs::metadata(&first).unwrap().len();
        let index_offset = {
            let bytes = std::fs::read(&first).unwrap();
            u64::from_le_bytes(bytes[len as usize - 56..len as usize - 48].try_into().unwrap())
        };
        assert!(index_offset > *frame_offsets(&first).last().unwrap());
        let footer = len - 64;
        let (at, damage_at, reason) = match flip_magic {
            false => (index_offset + 3, footer, "trailer CRC mismatch"),
            true => (footer, len, "segment has no trailer but a later segment exists"),
        };
        flip_bit(&first, at);
        let o = dump_dir("verify", dir.path(), &[]);
        assert_exit(&o, 1);
        assert!(stdout(&o).starts_with(&format!("{}: offset {damage_at}: {reason}\n", first.display())), "{}", stdout(&o));
        if recovery_by_open {
            let salvage = Options { recovery: strata::Recovery::SalvagePrefix, ..Options::default() };
            assert_eq!(open_store(dir.path(), salvage).unwrap().last_seq(), kept);
        } else {
            let dry = dump_dir("repair", dir.path(), &["--dry-run"]);
            let o = dump_dir("repair", dir.path(), &[]);
            assert_exit(&o, 0);
            let text = stdout(&o);
            assert!(
                text.contains(&format!("cut {} from offset {index_offset}: {} bytes", first.display(), damage_at - index_offset)),
                "{text}"
            );
            assert!(text.contains(&format!("keeps seqs 1..={kept}; first seq lost: {}\n", kept + 1)), "{text}");
            assert_eq!(
                stdout(&dry).replace("would cut", "cut").replace("dry run: nothing was changed", "repaired: the store opens again"),
                text
            );
        }
        assert_eq!(open_store(dir.path(), Options::default()).unwrap().last_seq(), kept);
        assert_exit(&dump_dir("verify", dir.path(), &[]), 0);
    }
}

#[test]
fn repair_moves_checkpoints_of_the_cut_log_aside() {
    let dir = tempfile::tempdir().unwrap();
    let ckpt = store_with_checkpoint(dir.path());
    let first = &segment_files(dir.path())[0];
    let bad = frame_offsets(first)[10];
    flip_bit(first, bad + 50);
    let dry = dump_dir("repair", dir.path(), &["--dry-run"]);
    let line = format!(
        "would cut {} whole file: {} bytes (readable seqs 1..=100) -> {}.salvaged\n",
        ckpt.display(),
        std::fs::metadata(&ckpt).unwrap().len(),
        ckpt.display()
    );
    assert!(stdout(&dry).contains(&line), "{}", stdout(&dry));
    let o = dump_dir("repair", dir.path(), &[]);
    assert_exit(&o, 0);
    assert!(!ckpt.exists() && PathBuf::from(format!("{}.salvaged", ckpt.display())).exists());
    assert_eq!(open_store(dir.path(), Options::default()).unwrap().last_seq(), 10);
    assert_exit(&dump_dir("verify", dir.path(), &[]), 0);
}
