//! Segment files: a header, frames appended one per committed batch, and, once the segment
//! is full, a trailer that indexes its frames so that a sealed segment needs no rescan.
//!
//! ```text
//! Segment header (64 bytes):
//!   0 magic [u8; 8] = "STRATSEG"
//!   8 format_version u32
//!  12 header_len u32 = 64
//!  16 base_seq u64        seq of the segment's first record; also in the file name
//!  24 store_id u64        random, chosen when the store was created; the same in every segment
//!  32 salt u64            random per segment; seeds every frame CRC
//!  40 created_at i64      microseconds since the epoch
//!  48 reserved [u8; 12]   zero
//!  60 crc u32             CRC-32 of bytes [0, 60)
//! Frames (see frame.rs), back to back from offset 64.
//! Reserved space (the active segment only, format version 2): zeros from the end of the last
//!   frame to the end of the file, space the writer reserved ahead (fallocate) and fills with
//!   the next frames. A sealed segment never has it: sealing cuts it off.
//! Trailer (sealed segments only), at index_offset = end of the last frame:
//!   frame_count entries of 16 bytes: base_seq u64 | offset u64
//!   footer (64 bytes):
//!     0 magic [u8; 8] = "STRATEND"
//!     8 index_offset u64
//!    16 next_seq u64      seq after the segment's last record
//!    24 min_ts i64 | 32 max_ts i64
//!    40 raw_bytes u64     uncompressed record bytes in the segment
//!    48 frame_count u32 | 52 reserved u32 | 56 reserved u32
//!    60 crc u32           CRC-32 of the index entries then footer bytes [0, 60)
//! ```

use crate::frame::{self, FrameHeader, read_u32, read_u64};

/// The magic number at the start of every segment.
pub const SEGMENT_MAGIC: &[u8; 8] = b"STRATSEG";
/// The magic number at the start of a sealed segment's footer.
pub const TRAILER_MAGIC: &[u8; 8] = b"STRATEND";
/// Bytes in a segment header.
pub const SEGMENT_HEADER_BYTES: usize = 64;
/// Bytes in a trailer footer.
pub const FOOTER_BYTES: usize = 64;
/// Bytes per trailer index entry.
pub const TRAILER_ENTRY_BYTES: usize = 16;

/// The fields of a segment header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    /// Format version the segment was written with.
    pub format_version: u32,
    /// Seq of the segment's first record.
    pub base_seq: u64,
    /// The store's id.
    pub store_id: u64,
    /// Seeds the CRC of every frame in this segment.
    pub salt: u64,
    /// When the segment was created (microseconds since the epoch).
    pub created_at: i64,
}

/// Why a header could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeaderError {
    /// Not a strata segment at all.
    BadMagic,
    /// Written by a newer strata.
    NewerVersion(u32),
    /// Damaged: the reason names the check.
    Damaged(&'static str),
}

impl SegmentHeader {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut b = [0u8; SEGMENT_HEADER_BYTES];
        b[0..8].copy_from_slice(SEGMENT_MAGIC);
        b[8..12].copy_from_slice(&self.format_version.to_le_bytes());
        b[12..16].copy_from_slice(&(SEGMENT_HEADER_BYTES as u32).to_le_bytes());
        b[16..24].copy_from_slice(&self.base_seq.to_le_bytes());
        b[24..32].copy_from_slice(&self.store_id.to_le_bytes());
        b[32..40].copy_from_slice(&self.salt.to_le_bytes());
        b[40..48].copy_from_slice(&self.created_at.to_le_bytes());
        let crc = crc32fast::hash(&b[..60]);
        b[60..64].copy_from_slice(&crc.to_le_bytes());
        b
    }

    /// Parses and checks a header from the start of a segment file.
    pub fn parse(bytes: &[u8]) -> Result<SegmentHeader, HeaderError> {
        if bytes.len() < SEGMENT_HEADER_BYTES {
            return Err(if bytes.len() >= 8 && &bytes[..8] != SEGMENT_MAGIC {
                HeaderError::BadMagic
            } else {
                HeaderError::Damaged("segment is shorter than its header")
            });
        }
        if &bytes[..8] != SEGMENT_MAGIC {
            return Err(HeaderError::BadMagic);
        }
        if crc32fast::hash(&bytes[..60]) != read_u32(bytes, 60) {
            return Err(HeaderError::Damaged("segment header CRC mismatch"));
        }
        let format_version = read_u32(bytes, 8);
        if format_version > crate::format::FORMAT_VERSION {
            return Err(HeaderError::NewerVersion(format_version));
        }
        if format_version == 0 || read_u32(bytes, 12) as usize != SEGMENT_HEADER_BYTES {
            return Err(HeaderError::Damaged("segment header has an impossible version or length"));
        }
        Ok(SegmentHeader {
            format_version,
            base_seq: read_u64(bytes, 16),
            store_id: read_u64(bytes, 24),
            salt: read_u64(bytes, 32),
            created_at: read_u64(bytes, 40) as i64,
        })
    }
}

/// The trailer of a sealed segment.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Trailer {
    /// Where the frames end and the index begins.
    pub index_offset: u64,
    /// The seq after the segment's last record.
    pub next_seq: u64,
    /// Smallest record timestamp in the segment.
    pub min_ts: i64,
    /// Largest record timestamp in the segment.
    pub max_ts: i64,
    /// Uncompressed record bytes in the segment.
    pub raw_bytes: u64,
    /// `(base_seq, offset)` of every frame, in order.
    pub frames: Vec<(u64, u64)>,
}

impl Trailer {
    /// Encodes the trailer (index entries then footer).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.frames.len() * TRAILER_ENTRY_BYTES + FOOTER_BYTES);
        for (seq, offset) in &self.frames {
            out.extend_from_slice(&seq.to_le_bytes());
            out.extend_from_slice(&offset.to_le_bytes());
        }
        let footer_at = out.len();
        out.extend_from_slice(TRAILER_MAGIC);
        out.extend_from_slice(&self.index_offset.to_le_bytes());
        out.extend_from_slice(&self.next_seq.to_le_bytes());
        out.extend_from_slice(&self.min_ts.to_le_bytes());
        out.extend_from_slice(&self.max_ts.to_le_bytes());
        out.extend_from_slice(&self.raw_bytes.to_le_bytes());
        out.extend_from_slice(&(self.frames.len() as u32).to_le_bytes());
        out.extend_from_slice(&[0u8; 8]);
        let crc = crc32fast::hash(&out);
        out.extend_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(out.len() - footer_at, FOOTER_BYTES);
        out
    }

    /// Looks for a trailer at the end of a segment's bytes: `None` when the segment is not
    /// sealed, `Err((offset, reason))` when a footer is there but fails its checks.
    pub fn find(bytes: &[u8]) -> Option<Result<Trailer, (u64, &'static str)>> {
        Self::find_in_tail(bytes, 0)
    }

    /// [`find`](Trailer::find) for the tail of a segment: `tail` holds the segment's bytes
    /// from file offset `base` to its end, and the trailer must lie wholly in it (`base` at
    /// most its index offset). Offsets, given and returned, are the file's.
    pub fn find_in_tail(tail: &[u8], base: u64) -> Option<Result<Trailer, (u64, &'static str)>> {
        let file_len = base.checked_add(tail.len() as u64)?;
        if file_len < (SEGMENT_HEADER_BYTES + FOOTER_BYTES) as u64 || tail.len() < FOOTER_BYTES {
            return None;
        }
        let footer_at = tail.len() - FOOTER_BYTES;
        if &tail[footer_at..footer_at + 8] != TRAILER_MAGIC {
            return None;
        }
        Some(Self::parse_footer(tail, base, footer_at).map_err(|reason| (base + footer_at as u64, reason)))
    }

    /// Parses the footer at `footer_at` in `tail` (the segment's bytes from file offset
    /// `base` on) and the index before it.
    fn parse_footer(tail: &[u8], base: u64, footer_at: usize) -> Result<Trailer, &'static str> {
        let footer = &tail[footer_at..];
        let index_offset = read_u64(footer, 8);
        let frame_count = read_u32(footer, 48) as usize;
        let index_len = frame_count.checked_mul(TRAILER_ENTRY_BYTES).ok_or("trailer frame count is impossible")?;
        let lines_up = index_offset >= SEGMENT_HEADER_BYTES as u64
            && index_offset.checked_add(index_len as u64) == Some(base + footer_at as u64)
            && index_offset >= base;
        if !lines_up {
            return Err("trailer index does not line up with the file");
        }
        let index_at = (index_offset - base) as usize;
        let mut h = crc32fast::Hasher::new();
        h.update(&tail[index_at..footer_at + 60]);
        if h.finalize() != read_u32(footer, 60) {
            return Err("trailer CRC mismatch");
        }
        let frames = (0..frame_count)
            .map(|i| {
                let at = index_at + i * TRAILER_ENTRY_BYTES;
                (read_u64(tail, at), read_u64(tail, at + 8))
            })
            .collect();
        Ok(Trailer {
            index_offset,
            next_seq: read_u64(footer, 16),
            min_ts: read_u64(footer, 24) as i64,
            max_ts: read_u64(footer, 32) as i64,
            raw_bytes: read_u64(footer, 40),
            frames,
        })
    }
}

/// A frame found by [`FrameScan`].
#[derive(Debug, Clone, Copy)]
pub struct ScannedFrame<'a> {
    /// Byte offset of the frame in the segment.
    pub offset: u64,
    /// Its parsed header.
    pub header: FrameHeader,
    /// The frame's bytes (`header.len` of them).
    pub bytes: &'a [u8],
}

/// A frame that failed a check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadFrame {
    /// Byte offset in the segment where the bad frame starts.
    pub offset: u64,
    /// What failed.
    pub reason: String,
}

/// Walks the frames of one segment's bytes in order, checking length, CRC and seq
/// continuity. It stops at the first bad frame (returned once as an error) or at `end`.
///
/// This is the one parser of the segment format: recovery, reads and strata-dump all use it.
#[derive(Debug, Clone)]
pub struct FrameScan<'a> {
    bytes: &'a [u8],
    salt: u64,
    pos: usize,
    end: usize,
    next_seq: u64,
    done: bool,
    /// Whether bytes that are all zero from a frame boundary to `end` end the scan cleanly.
    reserved_tail: bool,
    /// Where the reserved zeros start, once the scan has met them.
    reserved_from: Option<usize>,
}

impl<'a> FrameScan<'a> {
    /// Scans `bytes[from..end]`, expecting the first frame to start at seq `next_seq`.
    pub fn new(bytes: &'a [u8], salt: u64, from: usize, end: usize, next_seq: u64) -> Self {
        let end = end.min(bytes.len());
        FrameScan { bytes, salt, pos: from, end, next_seq, done: false, reserved_tail: false, reserved_from: None }
    }

    /// Scans the active segment, which may end in reserved space: bytes that are all zero
    /// from a frame boundary to `end` end the scan cleanly instead of reading as a bad frame
    /// (no frame starts with a zero length). A zero run followed by anything else is still a
    /// bad frame.
    pub fn with_reserved_tail(mut self) -> Self {
        self.reserved_tail = true;
        self
    }

    /// The offset just after the last good frame.
    pub fn position(&self) -> u64 {
        self.pos as u64
    }

    /// Bytes of reserved space (zeros up to the end) the scan stopped at, once it has.
    pub fn reserved_bytes(&self) -> u64 {
        self.reserved_from.map_or(0, |from| (self.end - from) as u64)
    }

    fn check(&self) -> Result<ScannedFrame<'a>, String> {
        let rest = &self.bytes[self.pos..self.end];
        let header = FrameHeader::parse(rest)?;
        let len = header.len as usize;
        if len > rest.len() {
            return Err(format!("frame of {len} bytes runs past the end of the segment ({} bytes left)", rest.len()));
        }
        let bytes = &rest[..len];
        if !frame::verify_crc(bytes, self.salt) {
            return Err("frame CRC mismatch".into());
        }
        if header.base_seq != self.next_seq {
            return Err(format!("frame starts at seq {} but seq {} was expected", header.base_seq, self.next_seq));
        }
        frame::chunk_table(bytes, &header)?;
        Ok(ScannedFrame { offset: self.pos as u64, header, bytes })
    }
}

impl<'a> Iterator for FrameScan<'a> {
    type Item = Result<ScannedFrame<'a>, BadFrame>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done || self.pos >= self.end {
            return None;
        }
        match self.check() {
            Ok(frame) => {
                self.pos += frame.header.len as usize;
                self.next_seq = frame.header.next_seq();
                Some(Ok(frame))
            }
            Err(_) if self.reserved_tail && is_zero(&self.bytes[self.pos..self.end]) => {
                self.done = true;
                self.reserved_from = Some(self.pos);
                None
            }
            Err(reason) => {
                self.done = true;
                Some(Err(BadFrame { offset: self.pos as u64, reason }))
            }
        }
    }
}

/// Whether every byte is zero (reserved space).
pub fn is_zero(bytes: &[u8]) -> bool {
    // A word at a time: the reserved space of an active segment is megabytes long.
    let mut words = bytes.chunks_exact(8);
    words.by_ref().all(|w| <[u8; 8]>::try_from(w).is_ok_and(|w| u64::from_ne_bytes(w) == 0)) && words.remainder().iter().all(|&b| b == 0)
}

/// The length of `bytes` without its trailing zeros: where an active segment's reserved space
/// starts at the latest (its last frame may itself end in zero bytes).
pub fn end_before_zeros(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1)
}

/// Looks for any frame with a valid CRC (under `salt`) starting after `from`: the test that
/// tells a torn tail (nothing valid follows) from corruption (valid data follows a bad frame).
pub fn find_valid_frame_after(bytes: &[u8], salt: u64, from: usize, min_seq: u64) -> Option<u64> {
    let start = from.checked_add(1)?;
    if bytes.len() < frame::FRAME_HEADER_BYTES {
        return None;
    }
    // A frame has a non-zero length field at bytes 0..4 of its header, so none starts in the
    // zeros at the end (megabytes of them in an active segment's reserved space).
    let last = (bytes.len() - frame::FRAME_HEADER_BYTES).min(end_before_zeros(bytes));
    (start..=last).find_map(|pos| {
        // Cheap filters first: a plausible seq and a length that fits, then the CRC.
        let seq = read_u64(bytes, pos + 8);
        if seq < min_seq || seq - min_seq > (1 << 40) {
            return None;
        }
        let header = FrameHeader::parse(&bytes[pos..]).ok()?;
        let end = pos.checked_add(header.len as usize)?;
        let frame = bytes.get(pos..end)?;
        frame::verify_crc(frame, salt).then_some(pos as u64)
    })
}

/// The unit a lost write leaves behind: a write the disk never got reads as the zeros the
/// reserved space held, sector by sector (format-spec.md, section 10).
pub const SECTOR_BYTES: u64 = 512;

/// Looks for proof that the bad frame at `bad`, followed by valid frames, is damage to bytes
/// that were written rather than a write the disk never got, and returns the offset of the
/// first valid frame after it: then the damage is corruption, not a torn write. `None` when
/// nothing valid follows or nothing proves it.
///
/// Proof is either of:
/// - a later valid frame without a `durable_to` mark (format versions 1 and 2), or with one
///   past `bad` (version 3): it was written after the bad bytes were synced;
/// - the bad bytes hold no sector that reads as all zeros (a whole sector, or the rest of the
///   sector `bad` is in): a write lost by a crash that kept a later one (out-of-order
///   writeback) leaves zeros, while a flipped bit in written bytes leaves none.
///
/// `bytes` holds the segment from file offset `base` on (0: the whole file); `bad` and the
/// offset returned are offsets in `bytes`, while the marks are the file's offsets.
pub fn frame_proving_damage(bytes: &[u8], base: u64, salt: u64, bad: usize, min_seq: u64) -> Option<u64> {
    let bad_in_file = base.checked_add(bad as u64)?;
    let first = find_valid_frame_after(bytes, salt, bad, min_seq)?;
    let mut at = first;
    loop {
        let pos = at as usize;
        let header = FrameHeader::parse(&bytes[pos..]).ok()?;
        let frame = &bytes[pos..pos + header.len as usize];
        match header.durable_to(frame) {
            Some(durable_to) if durable_to <= bad_in_file => {}
            _ => return Some(at),
        }
        match find_valid_frame_after(bytes, salt, pos + frame.len() - 1, min_seq) {
            Some(next) => at = next,
            None => break,
        }
    }
    (!looks_unwritten(bytes, base, bad, first as usize)).then_some(first)
}

/// Whether the bad bytes `[bad, end)` (offsets in `bytes`, which starts at file offset
/// `base`) hold a sector that reads as all zeros: a whole one, or the rest of the sector
/// `bad` is in (a sector synced up to `bad` and lost after it). A sector that `end` splits
/// is not one: the valid frame at `end` shows that sector was written.
fn looks_unwritten(bytes: &[u8], base: u64, bad: usize, end: usize) -> bool {
    let mut from = bad;
    while from < end {
        let in_file = base + from as u64;
        let sector_end = (in_file / SECTOR_BYTES + 1) * SECTOR_BYTES;
        let to = (sector_end - base) as usize;
        if to > end {
            return false;
        }
        if bytes[from..to].iter().all(|&b| b == 0) {
            return true;
        }
        from = to;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trips_and_rejects_damage() {
        let h = SegmentHeader { format_version: 1, base_seq: 9, store_id: 7, salt: 5, created_at: 3 };
        let b = h.encode();
        assert_eq!(SegmentHeader::parse(&b), Ok(h));
        let mut bad = b;
        bad[20] ^= 1;
        assert_eq!(SegmentHeader::parse(&bad), Err(HeaderError::Damaged("segment header CRC mismatch")));
        let mut other = b;
        other[0] = b'X';
        assert_eq!(SegmentHeader::parse(&other), Err(HeaderError::BadMagic));
    }

    /// A segment of one-record frames at seqs 1.. whose durable marks are `marks` (`None`:
    /// no mark, as in format version 2), with each frame's offset.
    fn segment_with_marks(salt: u64, marks: &[Option<u64>]) -> (Vec<u8>, Vec<usize>) {
        let mut bytes = vec![0u8; SEGMENT_HEADER_BYTES];
        let mut offsets = Vec::new();
        let mut encoder = frame::FrameEncoder::new(3).unwrap();
        for (i, mark) in marks.iter().enumerate() {
            let data = format!("{{\"n\":{i}}}");
            let rec = crate::record::RecordView {
                entity: "e",
                event_type: "E.Created",
                version: 1,
                timestamp: i as i64,
                actor: None,
                id: None,
                data: data.as_bytes(),
                metadata: None,
            };
            offsets.push(bytes.len());
            encoder.encode(&mut bytes, i as u64 + 1, std::iter::once(rec), salt, *mark).unwrap();
        }
        (bytes, offsets)
    }

    #[test]
    fn a_later_frame_proves_damage_durable_only_if_its_mark_is_past_it() {
        let salt = 42;
        let damage = |bytes: &mut Vec<u8>, at: usize| bytes[at + 10] ^= 0x10;
        // Frames 2 and 3 were written before frame 1 was synced (marks at 64): no mark proves
        // frame 1 durable, but a flipped bit (not the zeros of a lost write) proves it was
        // written: damage, shown by the first valid frame after it.
        let (mut bytes, at) = segment_with_marks(salt, &[Some(64), Some(64), Some(64)]);
        damage(&mut bytes, at[0]);
        assert_eq!(frame_proving_damage(&bytes, 0, salt, at[0], 1), Some(at[1] as u64));
        // Frame 3 was written after a sync that covered frames 1 and 2: damage to either is
        // corruption, proven by frame 3.
        let (_, at) = segment_with_marks(salt, &[Some(64), Some(64), Some(64)]);
        let (bytes, at) = segment_with_marks(salt, &[Some(64), Some(64), Some(at[2] as u64)]);
        for bad in [0, 1] {
            let mut damaged = bytes.clone();
            damage(&mut damaged, at[bad]);
            assert_eq!(frame_proving_damage(&damaged, 0, salt, at[bad], 1 + bad as u64), Some(at[2] as u64), "frame {bad}");
        }
        // Only the segment's tail at hand (the follower reads from its position on): the
        // offsets are the tail's, the marks the file's.
        let mut damaged = bytes.clone();
        damage(&mut damaged, at[1]);
        assert_eq!(frame_proving_damage(&damaged[at[1]..], at[1] as u64, salt, 0, 2), Some((at[2] - at[1]) as u64));
        // Nothing valid after the damage: nothing proves it.
        assert_eq!(frame_proving_damage(&damaged[..at[2] + 30], 0, salt, at[1], 2), None);
        let (mut unsynced, unsynced_at) = segment_with_marks(salt, &[Some(64), Some(64), Some(64)]);
        damage(&mut unsynced, unsynced_at[1]);
        let tail = &unsynced[unsynced_at[1]..];
        assert_eq!(frame_proving_damage(tail, unsynced_at[1] as u64, salt, 0, 2), Some((unsynced_at[2] - unsynced_at[1]) as u64));
        // A frame without a mark (format version 2) always proves it.
        let (mut v2, v2_at) = segment_with_marks(salt, &[None, None]);
        damage(&mut v2, v2_at[0]);
        assert_eq!(frame_proving_damage(&v2, 0, salt, v2_at[0], 1), Some(v2_at[1] as u64));
    }

    /// What a crash that writes pages back out of order leaves: the bytes of a lost write
    /// read as zeros (the reserved space's), sector by sector, with later frames intact.
    #[test]
    fn zeros_where_no_mark_proves_the_bytes_durable_are_a_lost_write() {
        let salt = 7;
        let (bytes, at) = segment_with_marks(salt, &[Some(64); 24]);
        let sector = SECTOR_BYTES as usize;
        let next = |from: usize| at.iter().position(|&o| o >= from).expect("a frame past the offset");
        assert!(next(3 * sector) + 1 < at.len(), "the frames span more than three sectors");
        // The first sector synced up to frame 1 and lost after it: zeros to its end.
        let mut lost = bytes.clone();
        lost[at[1]..sector].fill(0);
        assert_eq!(frame_proving_damage(&lost, 0, salt, at[1], 2), None);
        // The same seen from the frame on, as the follower reads it.
        assert_eq!(frame_proving_damage(&lost[at[1]..], at[1] as u64, salt, 0, 2), None);
        // A whole sector lost in the middle of a frame that started in a sector kept.
        let straddling = next(sector) - 1;
        let mut lost = bytes.clone();
        lost[sector..2 * sector].fill(0);
        assert_eq!(frame_proving_damage(&lost, 0, salt, at[straddling], straddling as u64 + 1), None);
        // A flipped bit in the frame that straddles the sector boundary: damage.
        let mut flipped = bytes.clone();
        flipped[sector] ^= 0x01;
        let after = frame_proving_damage(&flipped, 0, salt, at[straddling], straddling as u64 + 1);
        assert_eq!(after, Some(at[straddling + 1] as u64));
        // Zeros in a sector that the valid frame after them shares were written as zeros: a
        // lost write takes the whole rest of a sector.
        let mut zeroed = bytes.clone();
        zeroed[at[1]..at[2]].fill(0);
        assert!(at[2] < sector);
        assert_eq!(frame_proving_damage(&zeroed, 0, salt, at[1], 2), Some(at[2] as u64));
    }

    #[test]
    fn trailer_round_trips() {
        let t = Trailer { index_offset: 100, next_seq: 12, min_ts: 1, max_ts: 2, raw_bytes: 50, frames: vec![(10, 64), (11, 80)] };
        let mut file = vec![0u8; 100];
        file.extend_from_slice(&t.encode());
        assert_eq!(Trailer::find(&file), Some(Ok(t)));
        let n = file.len();
        file[n - 30] ^= 4;
        assert!(matches!(Trailer::find(&file), Some(Err(_))));
    }

    #[test]
    fn a_trailer_is_found_in_the_tail_of_a_segment_with_the_file_offsets() {
        let t = Trailer { index_offset: 100, next_seq: 12, min_ts: 1, max_ts: 2, raw_bytes: 50, frames: vec![(10, 64), (11, 80)] };
        let mut file = vec![0u8; 100];
        file.extend_from_slice(&t.encode());
        for base in [0, 64, 100] {
            assert_eq!(Trailer::find_in_tail(&file[base..], base as u64), Some(Ok(t.clone())), "from {base}");
        }
        // The tail must hold the whole trailer.
        assert!(matches!(Trailer::find_in_tail(&file[101..], 101), Some(Err(_))));
        let n = file.len();
        file[n - 30] ^= 4;
        let footer_at = (n - FOOTER_BYTES) as u64;
        assert_eq!(Trailer::find_in_tail(&file[64..], 64), Some(Err((footer_at, "trailer CRC mismatch"))));
    }
}
