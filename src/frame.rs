//! The frame codec: one committed batch of records, checksummed and compressed in chunks.
//!
//! ```text
//! Frame header (48 bytes, little-endian):
//!   0 len u32           whole frame in bytes, header included
//!   4 crc u32           CRC-32 (IEEE) of the segment salt (8 bytes LE) then bytes [8, len)
//!   8 base_seq u64      seq of the first record; the batch id
//!  16 record_count u32
//!  20 chunk_count u16
//!  22 flags u16         bit 0: the frame ends with `durable_to` (format version 3); no others
//!  24 min_ts i64        smallest record timestamp (microseconds)
//!  32 max_ts i64        largest record timestamp
//!  40 dict_id u32       dictionary used by codec-2 chunks (0: none)
//!  44 raw_len u32       sum of the chunks' uncompressed lengths
//!  48 chunk table       chunk_count entries of 16 bytes:
//!       records u16 | codec u8 | reserved u8 | raw_len u32 | stored_len u32 | crc u32
//!  .. chunk payloads    in table order, stored_len bytes each
//!  .. durable_to u64    (flag bit 0) the offset up to which the segment was durable when
//!                       the frame was written: what tells out-of-order writeback from
//!                       corruption (format-spec.md, section 4.4)
//! ```
//! Records are split into chunks of about [`CHUNK_TARGET_RAW_BYTES`] so that reading one
//! event decompresses one small chunk, not the whole batch. Each chunk's own CRC lets a
//! point read check just what it reads.

use crate::dictionary::Dictionaries;
use crate::record::{self, Reader, RecordView};

/// Bytes in a frame header.
pub const FRAME_HEADER_BYTES: usize = 48;
/// Bytes in one chunk-table entry.
pub const CHUNK_ENTRY_BYTES: usize = 16;
/// Flag bit: the frame ends with its `durable_to` mark (8 bytes, format version 3).
pub const FLAG_DURABLE_MARK: u16 = 1;
/// Bytes of the `durable_to` mark at the end of a frame that has one.
pub const DURABLE_MARK_BYTES: usize = 8;
/// The largest frame accepted (encoded).
pub const MAX_FRAME_BYTES: u32 = 1 << 30;
/// The largest total of uncompressed bytes in one frame.
pub const MAX_FRAME_RAW_BYTES: u32 = 1 << 30;
/// The largest uncompressed chunk (one record can fill a chunk on its own).
pub const MAX_CHUNK_RAW_BYTES: u32 = 80 << 20;
/// Records are grouped into chunks of about this many uncompressed bytes.
pub const CHUNK_TARGET_RAW_BYTES: usize = 2048;

/// The largest batch accepted, in uncompressed record bytes: one frame holds one batch, and
/// this keeps its lengths within their limits.
pub const MAX_BATCH_RAW_BYTES: usize = 255 << 20;
/// A frame is split into at most about this many chunks (bigger batches get bigger chunks),
/// which keeps the chunk count within the u16 of the header.
pub const MAX_CHUNKS_PER_FRAME: usize = 32 << 10;

/// Chunk stored uncompressed.
pub const CODEC_RAW: u8 = 0;
/// Chunk compressed with zstd, no dictionary.
pub const CODEC_ZSTD: u8 = 1;
/// Chunk compressed with zstd and the frame's dictionary.
pub const CODEC_ZSTD_DICT: u8 = 2;

const _: () = assert!(MAX_CHUNK_RAW_BYTES <= MAX_FRAME_RAW_BYTES);
const _: () = assert!(MAX_CHUNKS_PER_FRAME + 1 < u16::MAX as usize);
const _: () = assert!(MAX_BATCH_RAW_BYTES / MAX_CHUNKS_PER_FRAME + CHUNK_TARGET_RAW_BYTES < MAX_CHUNK_RAW_BYTES as usize);
const _: () = assert!(MAX_BATCH_RAW_BYTES as u64 + (CHUNK_ENTRY_BYTES as u64) * (u16::MAX as u64) < MAX_FRAME_BYTES as u64);
const _: () = assert!(crate::record::MAX_RECORD_BYTES < MAX_BATCH_RAW_BYTES);
const _: () = assert!((crate::record::MAX_RECORD_BYTES as u64) < MAX_CHUNK_RAW_BYTES as u64);

/// The fixed fields at the start of every frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// The whole frame's length in bytes.
    pub len: u32,
    /// The stored CRC.
    pub crc: u32,
    /// The seq of the first record (and the id of the batch).
    pub base_seq: u64,
    /// How many records the frame holds.
    pub record_count: u32,
    /// How many chunks the records are split into.
    pub chunk_count: u16,
    /// The smallest record timestamp (microseconds since the epoch).
    pub min_ts: i64,
    /// The largest record timestamp.
    pub max_ts: i64,
    /// The dictionary codec-2 chunks were compressed with.
    pub dict_id: u32,
    /// The sum of the chunks' uncompressed lengths.
    pub raw_len: u32,
    /// The flags: [`FLAG_DURABLE_MARK`] or none.
    pub flags: u16,
}

/// One entry of a frame's chunk table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkEntry {
    /// How many records the chunk holds.
    pub records: u16,
    /// How the chunk is stored (`CODEC_*`).
    pub codec: u8,
    /// The uncompressed length.
    pub raw_len: u32,
    /// The stored length.
    pub stored_len: u32,
    /// CRC-32 of the stored bytes.
    pub crc: u32,
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Reads a little-endian u32 at `at`; the caller guarantees the bounds.
pub(crate) fn read_u32(b: &[u8], at: usize) -> u32 {
    u32_at(b, at)
}
/// Reads a little-endian u64 at `at`; the caller guarantees the bounds.
pub(crate) fn read_u64(b: &[u8], at: usize) -> u64 {
    u64_at(b, at)
}

impl FrameHeader {
    /// Parses and sanity-checks a header from the first bytes of a frame. It does not check
    /// the CRC: see [`verify_crc`].
    pub fn parse(bytes: &[u8]) -> Result<FrameHeader, &'static str> {
        let h = Self::read_unchecked(bytes).ok_or("frame header is cut short")?;
        if h.flags & !FLAG_DURABLE_MARK != 0 {
            return Err("frame has unknown flags");
        }
        if h.len > MAX_FRAME_BYTES {
            return Err("frame length is over the limit");
        }
        if (h.len as usize) < h.fixed_bytes() {
            return Err("frame length is shorter than its header and chunk table");
        }
        if h.record_count == 0 || h.chunk_count == 0 {
            return Err("frame has no records");
        }
        if h.min_ts > h.max_ts {
            return Err("frame min timestamp is after its max timestamp");
        }
        if h.raw_len > MAX_FRAME_RAW_BYTES {
            return Err("frame raw length is over the limit");
        }
        if h.base_seq == 0 || h.base_seq.checked_add(u64::from(h.record_count)).is_none() {
            return Err("frame base seq is out of range");
        }
        Ok(h)
    }

    /// Reads the header fields as stored, without any check (`None` when fewer than
    /// [`FRAME_HEADER_BYTES`] are given): for showing a damaged frame.
    pub(crate) fn read_unchecked(bytes: &[u8]) -> Option<FrameHeader> {
        if bytes.len() < FRAME_HEADER_BYTES {
            return None;
        }
        let h = FrameHeader {
            len: u32_at(bytes, 0),
            crc: u32_at(bytes, 4),
            base_seq: u64_at(bytes, 8),
            record_count: u32_at(bytes, 16),
            chunk_count: u16_at(bytes, 20),
            min_ts: u64_at(bytes, 24) as i64,
            max_ts: u64_at(bytes, 32) as i64,
            dict_id: u32_at(bytes, 40),
            raw_len: u32_at(bytes, 44),
            flags: u16_at(bytes, 22),
        };
        Some(h)
    }

    /// The frame's bytes other than chunk payloads: header, chunk table and the durable
    /// mark if it has one.
    fn fixed_bytes(&self) -> usize {
        let mark = if self.flags & FLAG_DURABLE_MARK != 0 { DURABLE_MARK_BYTES } else { 0 };
        FRAME_HEADER_BYTES + CHUNK_ENTRY_BYTES * usize::from(self.chunk_count) + mark
    }

    /// The frame's `durable_to` mark (`frame` is exactly `len` bytes): the offset up to which
    /// its segment was durable when the writer wrote it. `None` for a frame without one
    /// (format versions 1 and 2), which proves every byte before it was durable.
    pub fn durable_to(&self, frame: &[u8]) -> Option<u64> {
        let at = frame.len().checked_sub(DURABLE_MARK_BYTES)?;
        (self.flags & FLAG_DURABLE_MARK != 0 && frame.len() >= self.fixed_bytes()).then(|| u64_at(frame, at))
    }

    /// The seq after this frame's last record.
    pub fn next_seq(&self) -> u64 {
        self.base_seq + u64::from(self.record_count)
    }
}

/// The CRC a frame must carry: over the segment salt, then everything after the CRC field.
pub fn frame_crc(salt: u64, frame_after_crc: &[u8]) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(&salt.to_le_bytes());
    h.update(frame_after_crc);
    h.finalize()
}

/// Checks a whole frame's CRC (`frame` is exactly `header.len` bytes).
pub fn verify_crc(frame: &[u8], salt: u64) -> bool {
    frame.len() >= FRAME_HEADER_BYTES && frame_crc(salt, &frame[8..]) == u32_at(frame, 4)
}

/// Parses the chunk table of a frame whose header has been parsed; checks that the chunks
/// add up to the frame's length, record count and raw length.
pub fn chunk_table(frame: &[u8], header: &FrameHeader) -> Result<Vec<ChunkEntry>, &'static str> {
    let count = usize::from(header.chunk_count);
    let table_end = FRAME_HEADER_BYTES + CHUNK_ENTRY_BYTES * count;
    if frame.len() < table_end {
        return Err("chunk table is cut short");
    }
    let mut entries = Vec::with_capacity(count);
    let (mut records, mut stored, mut raw) = (0u64, header.fixed_bytes() as u64, 0u64);
    for i in 0..count {
        let (e, reserved) = read_chunk_entry(frame, i).ok_or("chunk table is cut short")?;
        if e.records == 0 || e.codec > CODEC_ZSTD_DICT || reserved != 0 {
            return Err("chunk table entry is malformed");
        }
        if e.raw_len > MAX_CHUNK_RAW_BYTES || (e.codec == CODEC_RAW && e.raw_len != e.stored_len) {
            return Err("chunk length is out of range");
        }
        records += u64::from(e.records);
        stored += u64::from(e.stored_len);
        raw += u64::from(e.raw_len);
        entries.push(e);
    }
    if records != u64::from(header.record_count) {
        return Err("chunk record counts do not add up to the frame's");
    }
    if stored != u64::from(header.len) || raw != u64::from(header.raw_len) {
        return Err("chunk lengths do not add up to the frame's");
    }
    Ok(entries)
}

/// Reads chunk-table entry `index` and its reserved byte as stored, without any check
/// (`None` when the frame ends first): for showing a damaged frame.
pub(crate) fn read_chunk_entry(frame: &[u8], index: usize) -> Option<(ChunkEntry, u8)> {
    let at = FRAME_HEADER_BYTES.checked_add(index.checked_mul(CHUNK_ENTRY_BYTES)?)?;
    let b = frame.get(at..at.checked_add(CHUNK_ENTRY_BYTES)?)?;
    let e = ChunkEntry { records: u16_at(b, 0), codec: b[2], raw_len: u32_at(b, 4), stored_len: u32_at(b, 8), crc: u32_at(b, 12) };
    Some((e, b[3]))
}

/// Where chunk `index` starts in the frame.
pub fn chunk_offset(entries: &[ChunkEntry], index: usize) -> usize {
    FRAME_HEADER_BYTES + CHUNK_ENTRY_BYTES * entries.len() + entries[..index].iter().map(|e| e.stored_len as usize).sum::<usize>()
}

/// Decompresses one chunk after checking its CRC.
pub fn decode_chunk(stored: &[u8], entry: &ChunkEntry, dict_id: u32, dicts: &Dictionaries) -> Result<Vec<u8>, String> {
    if stored.len() != entry.stored_len as usize {
        return Err("chunk is cut short".into());
    }
    if crc32fast::hash(stored) != entry.crc {
        return Err("chunk CRC mismatch".into());
    }
    let raw = match entry.codec {
        CODEC_RAW => stored.to_vec(),
        CODEC_ZSTD => dicts.decompress(0, stored, entry.raw_len as usize)?,
        _ => dicts.decompress(dict_id, stored, entry.raw_len as usize)?,
    };
    if raw.len() != entry.raw_len as usize {
        return Err("chunk decompressed to the wrong length".into());
    }
    Ok(raw)
}

/// Decodes every record of a raw chunk, calling `each` with its index in the chunk.
pub fn decode_records<'a>(
    raw: &'a [u8],
    header: &FrameHeader,
    expected: u16,
    mut each: impl FnMut(usize, RecordView<'a>) -> Result<(), String>,
) -> Result<(), String> {
    let mut reader = Reader::new(raw);
    for i in 0..usize::from(expected) {
        let at = reader.position();
        let rec = record::decode(&mut reader, header.min_ts, header.max_ts).map_err(|e| format!("record {i} at chunk byte {at}: {e}"))?;
        each(i, rec)?;
    }
    if !reader.is_empty() {
        return Err("chunk has bytes after its last record".into());
    }
    Ok(())
}

/// Builds frames: encodes records, splits them into chunks and compresses each chunk.
pub(crate) struct FrameEncoder {
    level: i32,
    plain: zstd::bulk::Compressor<'static>,
    with_dict: Option<(u32, zstd::bulk::Compressor<'static>)>,
    raw: Vec<u8>,
    /// Where each record of the frame being built ends in `raw` (kept between frames).
    ends: Vec<usize>,
    /// The compressed bytes of the chunk being built (kept between chunks).
    compressed: Vec<u8>,
}

impl FrameEncoder {
    pub(crate) fn new(level: i32) -> std::io::Result<Self> {
        Ok(FrameEncoder {
            level,
            plain: zstd::bulk::Compressor::new(level)?,
            with_dict: None,
            raw: Vec::new(),
            ends: Vec::new(),
            compressed: Vec::new(),
        })
    }

    /// From now on compress with this dictionary.
    pub(crate) fn use_dictionary(&mut self, id: u32, bytes: &[u8]) -> std::io::Result<()> {
        self.with_dict = Some((id, zstd::bulk::Compressor::with_dictionary(self.level, bytes)?));
        Ok(())
    }

    /// The dictionary new frames use (0: none).
    pub(crate) fn dict_id(&self) -> u32 {
        self.with_dict.as_ref().map_or(0, |(id, _)| *id)
    }

    /// Encodes `records` (which must be non-empty, with non-decreasing timestamps) as one
    /// frame starting at `base_seq`, appending it to `out`, with the `durable_to` mark when
    /// given (format version 3). Returns the raw (uncompressed) record bytes, for dictionary
    /// training.
    pub(crate) fn encode<'r>(
        &mut self,
        out: &mut Vec<u8>,
        base_seq: u64,
        records: impl Iterator<Item = RecordView<'r>> + Clone,
        salt: u64,
        durable_to: Option<u64>,
    ) -> std::io::Result<usize> {
        let (min_ts, max_ts) = records.clone().fold((i64::MAX, i64::MIN), |(lo, hi), r| (lo.min(r.timestamp), hi.max(r.timestamp)));
        // Encode all records once, remembering where each chunk ends.
        self.raw.clear();
        let mut ends = std::mem::take(&mut self.ends);
        ends.clear();
        for rec in records {
            record::encode(&mut self.raw, &rec, min_ts);
            ends.push(self.raw.len());
        }
        let count = ends.len();
        debug_assert!(count > 0);
        // Chunks of about CHUNK_TARGET_RAW_BYTES; a huge batch gets bigger chunks so that
        // the chunk count stays well within its u16.
        let target = CHUNK_TARGET_RAW_BYTES.max(self.raw.len() / MAX_CHUNKS_PER_FRAME + 1);
        let mut bounds: Vec<(usize, u16)> = Vec::new();
        let (mut chunk_start, mut in_chunk) = (0usize, 0u16);
        for &end in &ends {
            in_chunk += 1;
            if end - chunk_start >= target || in_chunk == u16::MAX {
                bounds.push((end, in_chunk));
                chunk_start = end;
                in_chunk = 0;
            }
        }
        if in_chunk > 0 {
            bounds.push((self.raw.len(), in_chunk));
        }
        self.ends = ends;
        let start = out.len();
        out.resize(start + FRAME_HEADER_BYTES + CHUNK_ENTRY_BYTES * bounds.len(), 0);
        let dict_id = self.dict_id();
        let mut from = 0;
        let raw = std::mem::take(&mut self.raw);
        for (i, &(end, count)) in bounds.iter().enumerate() {
            let chunk = &raw[from..end];
            let payload_at = out.len();
            let codec = self.compress_into(out, chunk)?;
            let stored_len = (out.len() - payload_at) as u32;
            let crc = crc32fast::hash(&out[payload_at..]);
            let at = start + FRAME_HEADER_BYTES + i * CHUNK_ENTRY_BYTES;
            out[at..at + 2].copy_from_slice(&count.to_le_bytes());
            out[at + 2] = codec;
            out[at + 4..at + 8].copy_from_slice(&(chunk.len() as u32).to_le_bytes());
            out[at + 8..at + 12].copy_from_slice(&stored_len.to_le_bytes());
            out[at + 12..at + 16].copy_from_slice(&crc.to_le_bytes());
            from = end;
        }
        self.raw = raw;
        let mut flags = 0u16;
        if let Some(mark) = durable_to {
            out.extend_from_slice(&mark.to_le_bytes());
            flags |= FLAG_DURABLE_MARK;
        }
        let len = (out.len() - start) as u32;
        let h = &mut out[start..];
        h[0..4].copy_from_slice(&len.to_le_bytes());
        h[22..24].copy_from_slice(&flags.to_le_bytes());
        h[8..16].copy_from_slice(&base_seq.to_le_bytes());
        h[16..20].copy_from_slice(&(count as u32).to_le_bytes());
        h[20..22].copy_from_slice(&(bounds.len() as u16).to_le_bytes());
        h[24..32].copy_from_slice(&min_ts.to_le_bytes());
        h[32..40].copy_from_slice(&max_ts.to_le_bytes());
        h[40..44].copy_from_slice(&dict_id.to_le_bytes());
        h[44..48].copy_from_slice(&(self.raw.len() as u32).to_le_bytes());
        let crc = frame_crc(salt, &h[8..]);
        h[4..8].copy_from_slice(&crc.to_le_bytes());
        Ok(self.raw.len())
    }

    /// The raw bytes of the records encoded by the last `encode` call.
    pub(crate) fn last_raw(&self) -> &[u8] {
        &self.raw
    }

    fn compress_into(&mut self, out: &mut Vec<u8>, chunk: &[u8]) -> std::io::Result<u8> {
        let (codec, compressor) = match self.with_dict.as_mut() {
            Some((_, c)) => (CODEC_ZSTD_DICT, c),
            None => (CODEC_ZSTD, &mut self.plain),
        };
        self.compressed.clear();
        self.compressed.reserve(zstd::zstd_safe::compress_bound(chunk.len()));
        compressor.compress_to_buffer(chunk, &mut self.compressed)?;
        // Store raw where compression does not pay for itself.
        if self.compressed.len() + 8 < chunk.len() {
            out.extend_from_slice(&self.compressed);
            Ok(codec)
        } else {
            out.extend_from_slice(chunk);
            Ok(CODEC_RAW)
        }
    }
}

/// A fully decoded frame: its header and every record's raw chunk bytes.
pub struct DecodedFrame {
    /// The frame header.
    pub header: FrameHeader,
    chunks: Vec<(u16, Vec<u8>)>,
}

impl DecodedFrame {
    /// Checks and decompresses a whole frame (`frame` is exactly `header.len` bytes).
    pub fn decode(frame: &[u8], salt: u64, dicts: &Dictionaries) -> Result<DecodedFrame, String> {
        let header = FrameHeader::parse(frame)?;
        if frame.len() != header.len as usize {
            return Err("frame is cut short".into());
        }
        if !verify_crc(frame, salt) {
            return Err("frame CRC mismatch".into());
        }
        let entries = chunk_table(frame, &header)?;
        let mut chunks = Vec::with_capacity(entries.len());
        let mut at = FRAME_HEADER_BYTES + CHUNK_ENTRY_BYTES * entries.len();
        for (i, e) in entries.iter().enumerate() {
            let stored = &frame[at..at + e.stored_len as usize];
            at += e.stored_len as usize;
            let raw = decode_chunk(stored, e, header.dict_id, dicts).map_err(|err| format!("chunk {i}: {err}"))?;
            chunks.push((e.records, raw));
        }
        Ok(DecodedFrame { header, chunks })
    }

    /// Visits every record in order with its seq.
    pub fn for_each_record<'a>(&'a self, mut each: impl FnMut(u64, RecordView<'a>) -> Result<(), String>) -> Result<(), String> {
        let mut seq = self.header.base_seq;
        for (records, raw) in &self.chunks {
            decode_records(raw, &self.header, *records, |_, rec| {
                let r = each(seq, rec);
                seq += 1;
                r
            })?;
        }
        Ok(())
    }
}
