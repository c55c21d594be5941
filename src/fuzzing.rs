//! Entry points for the fuzz targets in `fuzz/`: thin wrappers that hand arbitrary bytes to
//! the real, crate-private parsers (frame, segment, dictionary), so that the format is still
//! parsed in exactly one place. Not part of the public API; hidden from the docs.
//!
//! The `reseal_*` helpers rewrite the checksums of mutated bytes (finding where they are with
//! the same parsers) so that a fuzzer gets past the CRCs to the checks behind them.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;

use crate::dictionary::{self, Dictionaries};
use crate::event::{Event, StoreId};
use crate::frame::{self, DecodedFrame, FrameHeader};
use crate::segment::{self, FrameScan, SEGMENT_HEADER_BYTES, SegmentHeader};
use crate::segment_set::{self, SegmentHandle};
use crate::storage::FsStorage;

/// The salt the fuzz targets seal frames with.
pub const FUZZ_SALT: u64 = 0x5eed_5a17;
/// The dictionary id the fuzz targets' dictionary has.
pub const FUZZ_DICT_ID: u32 = 1;

/// A small raw-content zstd dictionary (any bytes are one), registered as
/// [`FUZZ_DICT_ID`], so that dictionary-compressed chunks decode too.
pub fn fuzz_dictionary() -> &'static [u8] {
    br#"{"name":"Alice","stage":"Lead","amount":100,"balance":0}Contact.CreatedContact.UpdatedDeal.WonItem.Touched"#
}

fn dictionaries() -> &'static Dictionaries {
    static DICTS: OnceLock<Dictionaries> = OnceLock::new();
    DICTS.get_or_init(|| {
        let d = Dictionaries::default();
        d.insert(FUZZ_DICT_ID, fuzz_dictionary().to_vec());
        d
    })
}

/// A dictionary file (the on-disk form) holding `dict` as dictionary `id`.
///
/// ```
/// let file = strata::fuzzing::dictionary_file(1, b"dictionary bytes");
/// assert_eq!(&file[..8], b"STRATDIC");
/// ```
pub fn dictionary_file(id: u32, dict: &[u8]) -> Vec<u8> {
    dictionary::encode_file(id, dict)
}

/// The file name of dictionary `id`.
///
/// ```
/// assert_eq!(strata::fuzzing::dictionary_file_name(1), "dict-0000000001.zdict");
/// ```
pub fn dictionary_file_name(id: u32) -> String {
    dictionary::dict_file_name(id)
}

/// Decodes a frame sealed with `salt` both ways the engine reads frames: whole (recovery and
/// listings) and one event at a time (point reads). Returns the events, or the first error.
///
/// # Panics
/// If the two read paths disagree: a whole-frame decode that succeeds while a point read of
/// one of its events fails or returns something else is a bug.
///
/// ```
/// assert!(strata::fuzzing::decode_frame(b"not a frame", strata::fuzzing::FUZZ_SALT).is_err());
/// ```
pub fn decode_frame(bytes: &[u8], salt: u64) -> Result<Vec<Event>, String> {
    let dicts = dictionaries();
    let store = StoreId(7);
    let decoded = DecodedFrame::decode(bytes, salt, dicts)?;
    let header = decoded.header;
    let mut events = Vec::new();
    decoded.for_each_record(|seq, rec| {
        events.push(segment_set::to_event(&rec, seq, header.base_seq, store)?);
        Ok(())
    })?;
    // The point-read path, over a segment that holds just this frame.
    let seg_header = SegmentHeader { format_version: 1, base_seq: header.base_seq, store_id: store.0, salt, created_at: 0 };
    let mut file = seg_header.encode().to_vec();
    file.extend_from_slice(bytes);
    let handle = Arc::new(SegmentHandle::new(PathBuf::from("fuzz.seg"), seg_header, Arc::new(FsStorage), Bytes::from(file)));
    let at = segment_set::Located {
        segment: handle,
        offset: SEGMENT_HEADER_BYTES as u64,
        base_seq: header.base_seq,
        position: 0,
        unchecked: true,
    };
    for ev in &events {
        match segment_set::read_event(&at, ev.seq, dicts) {
            Ok(point) => assert_eq!(&point, ev, "a point read disagrees with the whole-frame decode"),
            Err(e) => panic!("a point read of seq {} fails where the whole-frame decode succeeds: {e}", ev.seq),
        }
    }
    Ok(events)
}

/// Rewrites the chunk CRCs and the frame CRC of `bytes` (a frame, possibly mutated) so that
/// they match its content; leaves it alone where the header or chunk table does not parse.
///
/// ```
/// let mut bytes = vec![0u8; 10];
/// strata::fuzzing::reseal_frame(&mut bytes, 1); // too short to be a frame: unchanged
/// assert_eq!(bytes, vec![0u8; 10]);
/// ```
pub fn reseal_frame(bytes: &mut [u8], salt: u64) {
    let Ok(header) = FrameHeader::parse(bytes) else { return };
    let len = header.len as usize;
    if len > bytes.len() {
        return;
    }
    let frame = &mut bytes[..len];
    if let Ok(entries) = frame::chunk_table(frame, &header) {
        for (i, entry) in entries.iter().enumerate() {
            let at = frame::chunk_offset(&entries, i);
            let crc = crc32fast::hash(&frame[at..at + entry.stored_len as usize]);
            let entry_at = frame::FRAME_HEADER_BYTES + i * frame::CHUNK_ENTRY_BYTES;
            frame[entry_at + 12..entry_at + 16].copy_from_slice(&crc.to_le_bytes());
        }
    }
    let crc = frame::frame_crc(salt, &frame[8..]);
    frame[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// Rewrites the checksums of a segment file (possibly mutated): its header CRC, the CRCs of
/// every frame found by walking frame lengths from the header on, and the trailer's CRC.
///
/// ```
/// let mut bytes = b"STRATSEG".to_vec();
/// strata::fuzzing::reseal_segment(&mut bytes); // shorter than a header: unchanged
/// assert_eq!(bytes, b"STRATSEG");
/// ```
pub fn reseal_segment(bytes: &mut [u8]) {
    if bytes.len() < SEGMENT_HEADER_BYTES || &bytes[..8] != segment::SEGMENT_MAGIC {
        return;
    }
    let crc = crc32fast::hash(&bytes[..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
    let Ok(header) = SegmentHeader::parse(bytes) else { return };
    let mut pos = SEGMENT_HEADER_BYTES;
    while let Ok(h) = FrameHeader::parse(&bytes[pos..]) {
        let end = pos + h.len as usize;
        if end > bytes.len() {
            break;
        }
        reseal_frame(&mut bytes[pos..end], header.salt);
        pos = end;
    }
    reseal_trailer(bytes);
}

/// Rewrites the CRC of a trailer footer at the end of `bytes`, if one is there and its index
/// lines up with the file.
fn reseal_trailer(bytes: &mut [u8]) {
    let n = bytes.len();
    if n < SEGMENT_HEADER_BYTES + segment::FOOTER_BYTES
        || &bytes[n - segment::FOOTER_BYTES..n - segment::FOOTER_BYTES + 8] != segment::TRAILER_MAGIC
    {
        return;
    }
    let footer_at = n - segment::FOOTER_BYTES;
    let index_at = frame::read_u64(bytes, footer_at + 8);
    if index_at < SEGMENT_HEADER_BYTES as u64 || index_at > footer_at as u64 {
        return;
    }
    let crc = crc32fast::hash(&bytes[index_at as usize..footer_at + 60]);
    bytes[footer_at + 60..footer_at + 64].copy_from_slice(&crc.to_le_bytes());
}

/// The frames of a segment file, as the segment scanner finds them (for building a seed
/// corpus from real stores).
///
/// ```
/// assert!(strata::fuzzing::frames_of_segment(b"not a segment").is_empty());
/// ```
pub fn frames_of_segment(bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
    let Ok(header) = SegmentHeader::parse(bytes) else { return Vec::new() };
    let end = match segment::Trailer::find(bytes) {
        Some(Ok(t)) => t.index_offset as usize,
        _ => bytes.len(),
    };
    FrameScan::new(bytes, header.salt, SEGMENT_HEADER_BYTES, end, header.base_seq)
        .map_while(|f| f.ok())
        .map(|f| (header.salt, f.bytes.to_vec()))
        .collect()
}

/// The file name of the segment whose first seq is `base_seq`.
///
/// ```
/// assert_eq!(strata::fuzzing::segment_file_name(1), "00000000000000000001.seg");
/// ```
pub fn segment_file_name(base_seq: u64) -> String {
    crate::format::segment_file_name(base_seq)
}

/// A frame of `count` realistic records built by the real encoder, compressed with the fuzz
/// dictionary when `with_dictionary` (for the seed corpus).
///
/// ```
/// use strata::fuzzing::{FUZZ_SALT, decode_frame, sample_frame};
/// let frame = sample_frame(3, true);
/// assert_eq!(decode_frame(&frame, FUZZ_SALT).map(|evs| evs.len()), Ok(3));
/// ```
pub fn sample_frame(count: usize, with_dictionary: bool) -> Vec<u8> {
    let data: Vec<String> = (0..count).map(|i| format!(r#"{{"name":"Alice {i}","stage":"Lead","amount":{i}}}"#)).collect();
    let entities: Vec<String> = (0..count).map(|i| format!("contact_{i}")).collect();
    let records: Vec<crate::record::RecordView<'_>> = (0..count)
        .map(|i| crate::record::RecordView {
            entity: &entities[i],
            event_type: if i % 2 == 0 { "Contact.Created" } else { "Contact.Qualified" },
            version: 1,
            timestamp: 1_700_000_000_000_000 + i as i64,
            actor: (i % 3 == 0).then_some("agent_1"),
            id: (i % 4 == 1).then_some("req-1"),
            data: data[i].as_bytes(),
            metadata: (i % 5 == 2).then_some(br#"{"reason":"x"}"#.as_slice()),
        })
        .collect();
    let mut out = Vec::new();
    let Ok(mut encoder) = frame::FrameEncoder::new(3) else { return out };
    if with_dictionary && encoder.use_dictionary(FUZZ_DICT_ID, fuzz_dictionary()).is_err() {
        return out;
    }
    if !records.is_empty()
        && encoder.encode(&mut out, 1, records.iter().copied(), FUZZ_SALT, count.is_multiple_of(2).then_some(64)).is_err()
    {
        out.clear();
    }
    out
}

/// The file name of the checkpoint covering the log up to `seq`.
///
/// ```
/// assert_eq!(strata::fuzzing::checkpoint_file_name(7), "checkpoint-00000000000000000007.ckpt");
/// ```
pub fn checkpoint_file_name(seq: u64) -> String {
    crate::format::checkpoint_file_name(seq)
}

/// Decodes a checkpoint file with the real decoder and builds the entity index from it, as
/// open does before checking that the checkpoint fits the log. Returns the seq it covers.
///
/// ```
/// assert!(strata::fuzzing::decode_checkpoint(b"STRATCKP").is_err());
/// ```
pub fn decode_checkpoint(bytes: &[u8]) -> Result<u64, String> {
    let mut cp = crate::checkpoint::Checkpoint::decode(bytes).map_err(|(offset, reason)| format!("at {offset}: {reason}"))?;
    let index = crate::checkpoint::into_index(&mut cp, 4);
    debug_assert!(index.snapshot_every > 0);
    Ok(cp.seq)
}

/// The uncompressed body of a checkpoint file (for building a seed corpus), if its header
/// parses and its body decompresses.
///
/// ```
/// assert_eq!(strata::fuzzing::checkpoint_body(b"nothing"), None);
/// ```
pub fn checkpoint_body(bytes: &[u8]) -> Option<Vec<u8>> {
    crate::checkpoint::parse_header(bytes).ok()?;
    zstd::stream::decode_all(bytes.get(crate::checkpoint::CHECKPOINT_HEADER_BYTES..)?).ok()
}

/// A checkpoint file around an arbitrary uncompressed `body`, with a valid header (the
/// layout of `checkpoint.rs`) and checksums, so that a fuzzer reaches the body decoder.
///
/// ```
/// let file = strata::fuzzing::checkpoint_file(b"body", 3, 9);
/// assert_eq!(strata::fuzzing::checkpoint_body(&file).as_deref(), Some(&b"body"[..]));
/// ```
pub fn checkpoint_file(body: &[u8], seq: u64, store_id: u64) -> Vec<u8> {
    let stored = zstd::bulk::compress(body, 1).unwrap_or_default();
    let mut out = Vec::with_capacity(crate::checkpoint::CHECKPOINT_HEADER_BYTES + stored.len());
    out.extend_from_slice(crate::checkpoint::CHECKPOINT_MAGIC);
    out.extend_from_slice(&crate::format::FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&(crate::checkpoint::CHECKPOINT_HEADER_BYTES as u32).to_le_bytes());
    out.extend_from_slice(&seq.to_le_bytes());
    out.extend_from_slice(&store_id.to_le_bytes());
    out.extend_from_slice(&(stored.len() as u64).to_le_bytes());
    out.extend_from_slice(&(body.len() as u64).to_le_bytes());
    out.push(1); // zstd
    out.extend_from_slice(&[0u8; 7]);
    out.extend_from_slice(&crc32fast::hash(&stored).to_le_bytes());
    let crc = crc32fast::hash(&out[..60]);
    out.extend_from_slice(&crc.to_le_bytes());
    out.extend_from_slice(&stored);
    out
}

/// Rewrites a checkpoint file's body CRC and header CRC (and its announced body length) so
/// that they match its content.
///
/// ```
/// let mut bytes = vec![0u8; 8];
/// strata::fuzzing::reseal_checkpoint(&mut bytes); // shorter than a header: unchanged
/// assert_eq!(bytes, vec![0u8; 8]);
/// ```
pub fn reseal_checkpoint(bytes: &mut [u8]) {
    let header_bytes = crate::checkpoint::CHECKPOINT_HEADER_BYTES;
    if bytes.len() < header_bytes {
        return;
    }
    let body_len = (bytes.len() - header_bytes) as u64;
    bytes[32..40].copy_from_slice(&body_len.to_le_bytes());
    let body_crc = crc32fast::hash(&bytes[header_bytes..]);
    bytes[56..60].copy_from_slice(&body_crc.to_le_bytes());
    let crc = crc32fast::hash(&bytes[..60]);
    bytes[60..64].copy_from_slice(&crc.to_le_bytes());
}
