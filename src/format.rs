//! Format-wide constants and the names of the files in a store directory.
//!
//! ```text
//! LOCK                         writer lock (flock), empty
//! {base_seq:020}.seg           segments, named by their first seq
//! dict-{id:010}.zdict          zstd dictionaries
//! checkpoint-{seq:020}.ckpt    checkpoints, named by the last seq they cover
//! *.tmp                        files being written; removed on open
//! *.salvaged                   bytes cut off by recovery or repair; never read, never deleted
//! ```

/// The newest on-disk format version this build writes and reads (it reads every older one).
///
/// 1: the first format. 2: the active segment may end in reserved space (zeros up to the end
/// of the file, see format-spec.md); a version-1 reader would take it for a torn tail.
/// 3: frames end with a `durable_to` mark (flag bit 0), which lets recovery tell pages that a
/// crash wrote back out of order from corruption; a version-2 reader would refuse the flag.
pub const FORMAT_VERSION: u32 = 3;

/// The first format version whose active segment may end in reserved space.
pub(crate) const RESERVED_SPACE_VERSION: u32 = 2;

/// The first format version whose frames carry their `durable_to` mark.
pub(crate) const DURABLE_MARK_VERSION: u32 = 3;

/// The writer-lock file.
pub const LOCK_FILE: &str = "LOCK";

/// The file name of the segment whose first seq is `base_seq`.
pub fn segment_file_name(base_seq: u64) -> String {
    format!("{base_seq:020}.seg")
}

/// Parses a segment file name back to its base seq.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let digits = name.strip_suffix(".seg")?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// The file name of the checkpoint covering the log up to and including `seq`.
pub fn checkpoint_file_name(seq: u64) -> String {
    format!("checkpoint-{seq:020}.ckpt")
}

/// Parses a checkpoint file name back to the seq it covers.
pub fn parse_checkpoint_file_name(name: &str) -> Option<u64> {
    name.strip_prefix("checkpoint-")?.strip_suffix(".ckpt")?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names_round_trip() {
        assert_eq!(parse_segment_file_name(&segment_file_name(42)), Some(42));
        assert_eq!(parse_checkpoint_file_name(&checkpoint_file_name(7)), Some(7));
        assert_eq!(parse_segment_file_name("42.seg"), None);
    }
}
