//! Bad input: a directory that is not a store, truncated or corrupted files, hostile length
//! fields. Each gives a clear one-line error and a non-zero exit: never a panic, a hang or an
//! unbounded allocation.

mod common;

use std::path::Path;
use std::process::Output;

use common::*;

const READ_COMMANDS: [&[&str]; 6] =
    [&["segments"], &["records"], &["stats"], &["entity", "contact_1"], &["hexdump", "--seq", "1"], &["verify"]];

fn run(sub: &[&str], dir: &Path) -> Output {
    dump_dir(sub[0], dir, &sub[1..])
}

/// A clean failure: exit 2, one line on stderr naming the problem, no panic.
fn assert_one_line_error(o: &Output, contains: &str) {
    assert_exit(o, 2);
    let err = stderr(o);
    assert_eq!(err.lines().count(), 1, "not one line: {err}");
    assert!(err.starts_with("strata-dump: ") && err.contains(contains), "{err:?} does not say {contains:?}");
}

#[test]
fn a_directory_that_is_not_a_store_is_a_one_line_error() {
    let empty = tempfile::tempdir().unwrap();
    let foreign = tempfile::tempdir().unwrap();
    std::fs::write(foreign.path().join("photo.jpg"), b"\xff\xd8\xff").unwrap();
    let file = foreign.path().join("photo.jpg");
    let missing = empty.path().join("missing");
    for sub in READ_COMMANDS.iter().chain([&["repair"][..], &["repair", "--dry-run"][..], &["follow"][..]].iter()) {
        assert_one_line_error(&run(sub, empty.path()), "is not a strata store: it holds no strata segment files");
        assert_one_line_error(&run(sub, foreign.path()), "it holds no strata segment files, only photo.jpg");
        assert_one_line_error(&run(sub, &file), "Not a directory");
        assert_one_line_error(&run(sub, &missing), "No such file or directory");
    }
    assert!(!missing.exists() && std::fs::read_dir(empty.path()).unwrap().next().is_none(), "nothing may be created");
}

#[test]
fn a_segment_of_random_bytes_is_not_a_store() {
    let dir = tempfile::tempdir().unwrap();
    let noise: Vec<u8> = (0..5000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    std::fs::write(dir.path().join("00000000000000000001.seg"), noise).unwrap();
    for sub in READ_COMMANDS.iter().chain([&["repair"][..]].iter()) {
        assert_one_line_error(&run(sub, dir.path()), "is not a strata store: no segment file starts with strata's magic number");
    }
}

#[test]
fn hostile_length_fields_are_reported_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    sample_store(dir.path());
    let first = segment_files(dir.path())[0].clone();
    let at = frame_offsets(&first)[3];
    for (len, reason) in
        [(u32::MAX, "frame length is over the limit"), (1 << 30, "runs past the end of the segment"), (0, "shorter than its header")]
    {
        let mut bytes = std::fs::read(&first).unwrap();
        let saved = bytes.clone();
        bytes[at as usize..at as usize + 4].copy_from_slice(&len.to_le_bytes());
        std::fs::write(&first, &bytes).unwrap();
        let o = dump_dir("verify", dir.path(), &[]);
        assert_exit(&o, 1);
        assert!(stdout(&o).starts_with(&format!("{}: offset {at}: ", first.display())) && stdout(&o).contains(reason), "{}", stdout(&o));
        let o = dump_dir("records", dir.path(), &[]);
        assert_one_line_error(&o, &format!("corruption in {} at offset {at}: ", first.display()));
        assert_eq!(stdout(&o).lines().count(), 52, "the events before the damage are shown");
        let o = dump_dir("hexdump", dir.path(), &["--at", &format!("00000000000000000001.seg:{at}")]);
        assert_exit(&o, 0);
        assert!(stdout(&o).contains(&format!("len           u32  {len}")) && stdout(&o).contains("check: FAILED"), "{}", stdout(&o));
        std::fs::write(&first, saved).unwrap();
    }
    // A chunk count of 65535 claims a megabyte of chunk table in a small frame.
    let mut bytes = std::fs::read(&first).unwrap();
    bytes[at as usize + 20..at as usize + 22].copy_from_slice(&u16::MAX.to_le_bytes());
    std::fs::write(&first, &bytes).unwrap();
    let o = dump_dir("hexdump", dir.path(), &["--at", &format!("00000000000000000001.seg:{at}")]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("check: FAILED: frame length is shorter than its header and chunk table"), "{}", stdout(&o));
}

#[test]
fn truncated_files_are_reported_at_their_end() {
    let dir = tempfile::tempdir().unwrap();
    sample_store(dir.path());
    let files = segment_files(dir.path());
    // A sealed segment cut short loses its trailer while a later segment exists.
    let sealed = &files[0];
    let len = std::fs::metadata(sealed).unwrap().len();
    std::fs::OpenOptions::new().write(true).open(sealed).unwrap().set_len(len - 100).unwrap();
    let o = dump_dir("verify", dir.path(), &[]);
    assert_exit(&o, 1);
    assert!(stdout(&o).contains(&format!("{}: offset ", sealed.display())), "{}", stdout(&o));
    assert_one_line_error(&dump_dir("stats", dir.path(), &[]), &format!("corruption in {}", sealed.display()));
    // A segment cut inside its header.
    std::fs::OpenOptions::new().write(true).open(&files[1]).unwrap().set_len(30).unwrap();
    let o = dump_dir("verify", dir.path(), &["--json"]);
    assert_exit(&o, 1);
    assert!(stdout(&o).contains("segment is shorter than its header"), "{}", stdout(&o));
}

/// A tiny deterministic generator, so that a failing case can be replayed from its seed.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn random_bit_flips_never_crash_any_command() {
    let seed: u64 = std::env::var("STRATA_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1);
    println!("seed {seed} (rerun with STRATA_SEED={seed})");
    let pristine = tempfile::tempdir().unwrap();
    let ckpt = store_with_checkpoint(pristine.path());
    let mut files = segment_files(pristine.path());
    files.push(ckpt);
    let mut state = seed;
    for round in 0..12 {
        let dir = tempfile::tempdir().unwrap();
        for f in &files {
            std::fs::copy(f, dir.path().join(f.file_name().unwrap())).unwrap();
        }
        let target = dir.path().join(files[(xorshift(&mut state) % files.len() as u64) as usize].file_name().unwrap());
        let len = std::fs::metadata(&target).unwrap().len();
        let at = xorshift(&mut state) % len;
        let mut bytes = std::fs::read(&target).unwrap();
        bytes[at as usize] ^= 1 << (xorshift(&mut state) % 8);
        std::fs::write(&target, bytes).unwrap();
        println!("round {round}: flipped a bit at {}:{at}", target.file_name().unwrap().to_string_lossy());
        for sub in READ_COMMANDS.iter().chain([&["repair", "--dry-run"][..]].iter()) {
            let o = run(sub, dir.path());
            let code = o.status.code();
            assert!(
                matches!(code, Some(0..=2)),
                "seed {seed} round {round}: {sub:?} on a flip at {}:{at} exited {:?}: {}",
                target.display(),
                o.status,
                stderr(&o)
            );
            assert!(!stderr(&o).contains("panicked"), "seed {seed} round {round}: {sub:?} panicked: {}", stderr(&o));
        }
        // Repair leaves a store that opens, unless no segment is strata's any more (a store
        // of one segment whose magic number was hit): then there is nothing to repair.
        let o = dump_dir("repair", dir.path(), &[]);
        if o.status.code() == Some(2) && target.file_name() == files[0].file_name() && at < 8 {
            assert_one_line_error(&o, "is not a strata store");
            continue;
        }
        assert_exit(&o, 0);
        open_store(dir.path(), strata::Options::default()).unwrap_or_else(|e| panic!("seed {seed} round {round}: {e}"));
    }
}
