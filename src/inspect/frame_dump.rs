//! `hexdump`: the raw bytes of one frame with its fields as stored, for looking at a damaged
//! frame. The fields are read without any check; the checks the scanner makes are then run
//! and the first that fails is reported.

use std::ops::ControlFlow;
use std::path::{Path, PathBuf};

use super::Inspector;
use super::walk::Walk;
use crate::error::{Error, Result};
use crate::format;
use crate::frame::{self, CHUNK_ENTRY_BYTES, FRAME_HEADER_BYTES, FrameHeader};
use crate::segment::{FrameScan, SEGMENT_HEADER_BYTES, SegmentHeader};

/// Which frame to show.
///
/// ```
/// use strata::inspect::FrameLocator;
/// let at = FrameLocator::At { file: "00000000000000000001.seg".into(), offset: 64 };
/// assert_ne!(at, FrameLocator::Seq(1));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameLocator {
    /// The committed frame that holds this seq.
    Seq(u64),
    /// The frame starting at `offset` in `file` (a name in the store directory or a path).
    At {
        /// The segment file.
        file: PathBuf,
        /// Where the frame starts.
        offset: u64,
    },
}

/// A frame header's fields as stored, unchecked.
///
/// ```
/// # let f = strata::inspect::FrameFields { len: 100, crc: 1, computed_crc: Some(1), base_seq: 1, record_count: 1,
/// #   chunk_count: 1, flags: 0, min_ts: 0, max_ts: 0, dict_id: 0, raw_len: 40 };
/// assert!(f.crc_matches());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameFields {
    /// Bytes in the whole frame (offset 0, u32).
    pub len: u32,
    /// The stored CRC (offset 4, u32).
    pub crc: u32,
    /// The CRC the frame's bytes have under its segment's salt, when all `len` bytes are there.
    pub computed_crc: Option<u32>,
    /// The seq of the first record (offset 8, u64).
    pub base_seq: u64,
    /// Records in the frame (offset 16, u32).
    pub record_count: u32,
    /// Chunks in the frame (offset 20, u16).
    pub chunk_count: u16,
    /// Flags (offset 22, u16): bit 0, the frame ends with its 8-byte durable mark (format
    /// version 3); no other bit is valid.
    pub flags: u16,
    /// The smallest record timestamp, microseconds since the epoch (offset 24, i64).
    pub min_ts: i64,
    /// The largest record timestamp (offset 32, i64).
    pub max_ts: i64,
    /// The dictionary codec-2 chunks use, 0 for none (offset 40, u32).
    pub dict_id: u32,
    /// Uncompressed bytes of all chunks (offset 44, u32).
    pub raw_len: u32,
}

impl FrameFields {
    /// True when the stored CRC is the computed one.
    ///
    /// ```
    /// # let f = strata::inspect::FrameFields { len: 100, crc: 1, computed_crc: None, base_seq: 1, record_count: 1,
    /// #   chunk_count: 1, flags: 0, min_ts: 0, max_ts: 0, dict_id: 0, raw_len: 40 };
    /// assert!(!f.crc_matches());
    /// ```
    pub fn crc_matches(&self) -> bool {
        self.computed_crc == Some(self.crc)
    }

    /// The frame's durable mark (format-spec.md, section 4.4), read from the last 8 of the
    /// frame's `bytes` as stored: `None` when its flags say it has none or `bytes` is not the
    /// whole frame.
    ///
    /// ```
    /// # let f = strata::inspect::FrameFields { len: 72, crc: 1, computed_crc: None, base_seq: 1, record_count: 1,
    /// #   chunk_count: 1, flags: 1, min_ts: 0, max_ts: 0, dict_id: 0, raw_len: 8 };
    /// let mut frame = vec![0u8; 64];
    /// frame.extend_from_slice(&640u64.to_le_bytes());
    /// assert_eq!(f.durable_mark(&frame), Some(640));
    /// assert_eq!(f.durable_mark(&frame[..70]), None);
    /// ```
    pub fn durable_mark(&self, bytes: &[u8]) -> Option<u64> {
        if self.flags & frame::FLAG_DURABLE_MARK == 0 || bytes.len() != self.len as usize {
            return None;
        }
        let at = bytes.len().checked_sub(frame::DURABLE_MARK_BYTES)?;
        Some(frame::read_u64(bytes, at))
    }
}

/// One chunk-table entry as stored, unchecked.
///
/// ```
/// let c = strata::inspect::ChunkFields { records: 2, codec: 1, reserved: 0, raw_len: 90, stored_len: 60,
///     crc: 5, computed_crc: Some(5), payload_offset: 64 };
/// assert_eq!(c.codec_name(), "zstd");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkFields {
    /// Records in the chunk (u16).
    pub records: u16,
    /// How the chunk is stored: 0 raw, 1 zstd, 2 zstd with the frame's dictionary (u8).
    pub codec: u8,
    /// Reserved, always 0 (u8).
    pub reserved: u8,
    /// Uncompressed length (u32).
    pub raw_len: u32,
    /// Stored length (u32).
    pub stored_len: u32,
    /// CRC-32 of the stored bytes (u32).
    pub crc: u32,
    /// The CRC the stored bytes have, when they are all there.
    pub computed_crc: Option<u32>,
    /// Where the chunk's stored bytes start, from the start of the frame.
    pub payload_offset: u64,
}

impl ChunkFields {
    /// The codec's name.
    ///
    /// ```
    /// let mut c = strata::inspect::ChunkFields { records: 1, codec: 9, reserved: 0, raw_len: 0, stored_len: 0,
    ///     crc: 0, computed_crc: None, payload_offset: 64 };
    /// assert_eq!(c.codec_name(), "unknown");
    /// ```
    pub fn codec_name(&self) -> &'static str {
        match self.codec {
            frame::CODEC_RAW => "raw",
            frame::CODEC_ZSTD => "zstd",
            frame::CODEC_ZSTD_DICT => "zstd+dict",
            _ => "unknown",
        }
    }
}

/// One frame's bytes and fields.
///
/// ```
/// use strata::inspect::{FrameLocator, Inspector};
/// use strata::{NewEvent, Options, Store};
/// let dir = tempfile::tempdir()?;
/// Store::open(dir.path(), Options::default())?.append(NewEvent::create("K", "e", serde_json::json!({})))?;
/// let dump = Inspector::open(dir.path())?.frame(&FrameLocator::Seq(1))?;
/// assert_eq!((dump.offset, dump.fields.unwrap().base_seq), (64, 1));
/// assert!(dump.problem.is_none() && dump.fields.unwrap().crc_matches());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameDump {
    /// The segment file.
    pub file: PathBuf,
    /// Where the frame starts in it.
    pub offset: u64,
    /// The header fields, when the file holds a whole header there.
    pub fields: Option<FrameFields>,
    /// The chunk-table entries that the file holds.
    pub chunks: Vec<ChunkFields>,
    /// The frame's bytes from its start: `len` of them, or fewer when the file ends first or
    /// the dump is capped.
    pub bytes: Vec<u8>,
    /// Bytes of the file from the frame's start to its end.
    pub available_bytes: u64,
    /// The first check the frame fails, as the scanner words it (`None`: it is good).
    pub problem: Option<String>,
}

impl Inspector {
    /// The raw bytes and fields of one frame, with the first check it fails.
    ///
    /// ```
    /// use strata::inspect::{FrameLocator, Inspector};
    /// use strata::{NewEvent, Options, Store};
    /// let dir = tempfile::tempdir()?;
    /// Store::open(dir.path(), Options::default())?.append(NewEvent::create("K", "e", serde_json::json!({})))?;
    /// let inspector = Inspector::open(dir.path())?;
    /// let dump = inspector.frame(&FrameLocator::At { file: "00000000000000000001.seg".into(), offset: 64 })?;
    /// assert_eq!(dump.chunks.len(), 1);
    /// assert!(inspector.frame(&FrameLocator::Seq(2)).is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn frame(&self, at: &FrameLocator) -> Result<FrameDump> {
        let (file, offset) = match at {
            FrameLocator::Seq(seq) => self.locate(*seq)?,
            FrameLocator::At { file, offset } => (self.resolve(file), *offset),
        };
        let bytes = self.storage.read_copy(&file).map_err(|e| Error::io(&file, e))?;
        let start = usize::try_from(offset)
            .ok()
            .filter(|&o| o <= bytes.len())
            .ok_or_else(|| Error::invalid("offset", format!("{offset} is past the end of {} ({} bytes)", file.display(), bytes.len())))?;
        if start < SEGMENT_HEADER_BYTES {
            return Err(Error::invalid(
                "offset",
                format!("{offset} is inside the segment header (frames start at {SEGMENT_HEADER_BYTES})"),
            ));
        }
        let header = SegmentHeader::parse(&bytes);
        // With a damaged segment header, the salt as stored is the best guess there is.
        let salt = header.as_ref().map_or_else(|_| frame::read_u64(&bytes, 32), |h| h.salt);
        let rest = &bytes[start..];
        let unchecked = FrameHeader::read_unchecked(rest);
        let frame_bytes = unchecked.map_or(rest, |h| rest.get(..h.len as usize).unwrap_or(rest));
        let fields = unchecked.map(|h| FrameFields {
            len: h.len,
            crc: h.crc,
            computed_crc: frame_bytes
                .get(8..)
                .filter(|_| frame_bytes.len() == h.len as usize)
                .map(|after_crc| frame::frame_crc(salt, after_crc)),
            base_seq: h.base_seq,
            record_count: h.record_count,
            chunk_count: h.chunk_count,
            flags: h.flags,
            min_ts: h.min_ts,
            max_ts: h.max_ts,
            dict_id: h.dict_id,
            raw_len: h.raw_len,
        });
        let chunks = fields.map_or_else(Vec::new, |f| chunk_fields(frame_bytes, f.chunk_count));
        let problem = match &header {
            Err(e) => Some(format!("the segment header is bad ({e:?}), so the CRC is computed with the salt as stored")),
            Ok(h) => self.check(&file, &bytes, start, h, fields.map_or(0, |f| f.base_seq)),
        };
        Ok(FrameDump { file, offset, fields, chunks, bytes: frame_bytes.to_vec(), available_bytes: rest.len() as u64, problem })
    }

    /// The segment and offset of the committed frame that holds `seq`.
    fn locate(&self, seq: u64) -> Result<(PathBuf, u64)> {
        let mut found = None;
        let walked = self.walk(Walk { from_seq: seq, ..Walk::default() }, &mut |v| {
            let h = &v.frame.header;
            if h.base_seq <= seq && seq < h.next_seq() {
                found = Some((v.path.to_path_buf(), v.frame.offset));
                return Ok(ControlFlow::Break(()));
            }
            Ok(ControlFlow::Continue(()))
        })?;
        found.ok_or_else(|| {
            Error::invalid("seq", format!("seq {seq} is not in the log (the last committed seq is {})", walked.next_seq - 1))
        })
    }

    /// A file name in the store directory, or a path as given.
    fn resolve(&self, file: &Path) -> PathBuf {
        let in_dir = self.dir.join(file);
        match file.components().count() == 1 && format::parse_segment_file_name(&file.to_string_lossy()).is_some() {
            true => in_dir,
            false => file.to_path_buf(),
        }
    }
}

/// The chunk-table entries present in `frame`, with the CRCs their stored bytes have.
fn chunk_fields(frame: &[u8], count: u16) -> Vec<ChunkFields> {
    let mut out = Vec::new();
    let mut payload = FRAME_HEADER_BYTES as u64 + CHUNK_ENTRY_BYTES as u64 * u64::from(count);
    for i in 0..usize::from(count) {
        let Some((e, reserved)) = frame::read_chunk_entry(frame, i) else { break };
        let stored = usize::try_from(payload).ok().and_then(|at| frame.get(at..at.checked_add(e.stored_len as usize)?));
        out.push(ChunkFields {
            records: e.records,
            codec: e.codec,
            reserved,
            raw_len: e.raw_len,
            stored_len: e.stored_len,
            crc: e.crc,
            computed_crc: stored.map(crc32fast::hash),
            payload_offset: payload,
        });
        payload += u64::from(e.stored_len);
    }
    out
}

impl Inspector {
    /// The first check the frame at `start` fails, run by the scanner and the decoder
    /// themselves (the expected seq is the frame's own: it is looked at on its own).
    fn check(&self, path: &Path, bytes: &[u8], start: usize, header: &SegmentHeader, base_seq: u64) -> Option<String> {
        match FrameScan::new(bytes, header.salt, start, bytes.len(), base_seq).next()? {
            Err(bad) => Some(bad.reason),
            Ok(frame) => self.decode(path, &frame, header.salt).err().map(|p| p.reason),
        }
    }
}
