//! Reading the segment a live writer may be writing, so that a read racing a write is not
//! taken for damage.
//!
//! A read and a write of the same file do not wait for each other: the kernel copies each
//! page by page, so a read that a write overtakes sees the write's later pages and misses
//! its earlier ones. In the newest segment that looks like a bad frame followed by a good
//! one (group commit writes several frames in one call), or a sealed segment (the trailer
//! and the truncation came after) with a bad frame in it: damage, by recovery's rule, not a
//! torn tail. A page the write had passed is never written again, so a second read shows
//! other bytes there. Damage in the newest segment is therefore believed only when the next
//! read shows the same bytes from the bad frame to the good frame after it (or to the end
//! of the frames); otherwise the new read is scanned instead, up to [`READS`] reads. Segments
//! older than the newest were sealed before the next was created and need none of this.

use std::io;
use std::ops::Range;
use std::path::Path;

use bytes::Bytes;

use crate::format;
use crate::segment::{self, FrameScan, SegmentHeader, Trailer};
use crate::storage::Storage;

/// How many times the newest segment is read at most before damage in it is believed.
const READS: usize = 4;

/// The bytes of `path` from `base` to its end, read (as a copy) until the damage `damage`
/// finds in them, if any, is there with the same bytes in the next read too.
pub(super) fn read_settled(
    storage: &dyn Storage,
    path: &Path,
    base: u64,
    damage: impl Fn(&[u8]) -> Option<Range<usize>>,
) -> io::Result<Bytes> {
    let mut bytes = storage.read_copy_at(path, base, u64::MAX)?;
    for _ in 1..READS {
        let Some(range) = damage(&bytes) else { break };
        let again = storage.read_copy_at(path, base, u64::MAX)?;
        let same = again.get(range.clone()) == bytes.get(range);
        bytes = again;
        if same {
            break;
        }
    }
    Ok(bytes)
}

/// The damage a scan of a segment's frames meets that is not a torn tail, as the range of
/// bytes that shows it: from the bad frame to the next frame with a valid CRC, or to the
/// end of the frames of a sealed segment. `tail` holds the segment from file offset `base`
/// on; the scan starts at `from` in it, at seq `next_seq`.
pub(super) fn damage_in(tail: &[u8], base: u64, header: &SegmentHeader, from: usize, next_seq: u64) -> Option<Range<usize>> {
    let trailer = match Trailer::find_in_tail(tail, base) {
        Some(Ok(t)) => Some(t),
        _ => None,
    };
    let end = trailer.as_ref().map_or(tail.len(), |t| (t.index_offset - base) as usize);
    let mut scan = FrameScan::new(tail, header.salt, from, end, next_seq);
    if trailer.is_none() && header.format_version >= format::RESERVED_SPACE_VERSION {
        scan = scan.with_reserved_tail();
    }
    let mut next_seq = next_seq;
    let bad = scan.find_map(|item| match item {
        Ok(frame) => {
            next_seq = frame.header.next_seq();
            None
        }
        Err(bad) => Some(bad),
    })?;
    let at = bad.offset as usize;
    match segment::frame_proving_damage(tail, base, header.salt, at, next_seq) {
        Some(after) => Some(at..after as usize),
        None if trailer.is_some() => Some(at..end),
        None => None, // a torn tail: a write in flight, or what a crash left
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::FsStorage;

    fn header() -> SegmentHeader {
        SegmentHeader { format_version: format::FORMAT_VERSION, base_seq: 1, store_id: 7, salt: 5, created_at: 0 }
    }

    #[test]
    fn a_segment_of_zeros_after_its_header_has_no_damage() {
        let mut bytes = header().encode().to_vec();
        bytes.extend_from_slice(&[0; 4096]);
        assert_eq!(damage_in(&bytes, 0, &header(), segment::SEGMENT_HEADER_BYTES, 1), None);
        // A partial frame with nothing valid after it is a torn tail, not damage.
        bytes[64] = 9;
        assert_eq!(damage_in(&bytes, 0, &header(), segment::SEGMENT_HEADER_BYTES, 1), None);
    }

    #[test]
    fn damage_that_stays_is_read_twice_and_damage_that_moves_is_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        std::fs::write(&path, b"abcdef").unwrap();
        let reads = std::cell::Cell::new(0);
        let stays = |_: &[u8]| {
            reads.set(reads.get() + 1);
            Some(0..3)
        };
        assert_eq!(&read_settled(&FsStorage, &path, 0, stays).unwrap()[..], b"abcdef");
        assert_eq!(reads.get(), 1, "the second read showed the same bytes: believed");
        // Damage that is somewhere else on every read is looked at READS times at most.
        let reads = std::cell::Cell::new(0);
        let moves = |_: &[u8]| {
            reads.set(reads.get() + 1);
            std::fs::write(&path, format!("abcdef{}", reads.get())).unwrap();
            Some(4..5) // the last byte of the copy, which starts at offset 2
        };
        assert_eq!(&read_settled(&FsStorage, &path, 2, moves).unwrap()[..], b"cdef3");
        assert_eq!(reads.get(), READS - 1);
    }
}
