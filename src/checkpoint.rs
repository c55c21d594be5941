//! Checkpoints: the materialized state and the index at a seq, so that open replays only the
//! log after it.
//!
//! ```text
//! checkpoint-{seq:020}.ckpt
//! Header (64 bytes):
//!   0 magic [u8; 8] = "STRATCKP"
//!   8 format_version u32
//!  12 header_len u32 = 64
//!  16 seq u64             last seq covered
//!  24 store_id u64
//!  32 body_len u64        stored body bytes after the header
//!  40 raw_len u64         body bytes after decompression
//!  48 codec u8            1 = zstd
//!  49 reserved [u8; 7]    zero
//!  56 body_crc u32        CRC-32 of the stored body
//!  60 header_crc u32      CRC-32 of bytes [0, 60)
//! Body (zstd), all integers varints unless noted (see format-spec.md for the full table):
//!   last_ts i64 LE | snapshot_every | segments | frame index | tail | entities | caller ids | undo links
//! ```
//! A checkpoint is a cache: one that is missing, torn or fails a check is reported and open
//! falls back to an older one or a full replay. It is written to a temporary file, fsynced,
//! renamed into place and the directory fsynced; older ones are removed only after that.

use std::sync::Arc;

use crate::entity_index::{EntityIndex, EntityRecord, Snapshot, VersionRef};
use crate::error::{Error, Result};
use crate::event::StoreId;
use crate::format;
use crate::frame::{read_u32, read_u64};
use crate::record::{Reader, put_varint};
use crate::segment_set::FrameRef;
use crate::store::Shared;

/// The magic number at the start of a checkpoint.
pub const CHECKPOINT_MAGIC: &[u8; 8] = b"STRATCKP";
/// Bytes in a checkpoint header.
pub const CHECKPOINT_HEADER_BYTES: usize = 64;
/// Entities with fewer versions are checkpointed without their snapshots.
const PERSIST_SNAPSHOTS_FROM_VERSIONS: usize = 64;
/// zstd-compressed body.
const CODEC_ZSTD: u8 = 1;
/// The largest checkpoint body accepted after decompression (64 GiB).
const MAX_CHECKPOINT_RAW_BYTES: u64 = 64 << 30;

/// Where the log ended when the checkpoint was taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Tail {
    /// Position of the segment that held the last covered frame.
    pub(crate) segment_no: usize,
    /// Offset just after the last covered frame in that segment.
    pub(crate) end_offset: u64,
    pub(crate) min_ts: i64,
    pub(crate) max_ts: i64,
    pub(crate) raw_bytes: u64,
}

/// Everything a checkpoint holds.
#[derive(Debug, Default)]
pub(crate) struct Checkpoint {
    pub(crate) seq: u64,
    pub(crate) store_id: StoreId,
    pub(crate) last_ts: i64,
    pub(crate) snapshot_every: u64,
    /// Base seq of every segment, in order.
    pub(crate) segments: Vec<u64>,
    pub(crate) frames: Vec<FrameRef>,
    pub(crate) tail: Tail,
    pub(crate) entities: Vec<(Arc<str>, EntityRecord)>,
    pub(crate) caller_ids: Vec<(Box<str>, u64)>,
    pub(crate) undone_by: Vec<(u64, u64)>,
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_varint(out, b.len() as u64);
    out.extend_from_slice(b);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    ((v >> 1) as i64) ^ -((v & 1) as i64)
}

impl Checkpoint {
    /// Encodes the whole file: header and compressed body.
    pub(crate) fn encode(&self, level: i32) -> std::io::Result<Vec<u8>> {
        let body = self.encode_body();
        let stored = zstd::bulk::compress(&body, level)?;
        let mut out = Vec::with_capacity(CHECKPOINT_HEADER_BYTES + stored.len());
        out.extend_from_slice(CHECKPOINT_MAGIC);
        out.extend_from_slice(&format::FORMAT_VERSION.to_le_bytes());
        out.extend_from_slice(&(CHECKPOINT_HEADER_BYTES as u32).to_le_bytes());
        out.extend_from_slice(&self.seq.to_le_bytes());
        out.extend_from_slice(&self.store_id.0.to_le_bytes());
        out.extend_from_slice(&(stored.len() as u64).to_le_bytes());
        out.extend_from_slice(&(body.len() as u64).to_le_bytes());
        out.push(CODEC_ZSTD);
        out.extend_from_slice(&[0u8; 7]);
        out.extend_from_slice(&crc32fast::hash(&stored).to_le_bytes());
        let crc = crc32fast::hash(&out[..60]);
        out.extend_from_slice(&crc.to_le_bytes());
        debug_assert_eq!(out.len(), CHECKPOINT_HEADER_BYTES);
        out.extend_from_slice(&stored);
        Ok(out)
    }

    fn encode_body(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 << 20);
        out.extend_from_slice(&self.last_ts.to_le_bytes());
        put_varint(&mut out, self.snapshot_every);
        put_varint(&mut out, self.segments.len() as u64);
        for s in &self.segments {
            put_varint(&mut out, *s);
        }
        put_varint(&mut out, self.frames.len() as u64);
        let (mut prev_seq, mut prev_segment, mut prev_offset) = (0u64, 0usize, 0u64);
        for f in &self.frames {
            put_varint(&mut out, f.base_seq - prev_seq);
            put_varint(&mut out, (f.segment() - prev_segment) as u64);
            let offset = if f.segment() == prev_segment { f.offset() - prev_offset } else { f.offset() };
            put_varint(&mut out, offset);
            (prev_seq, prev_segment, prev_offset) = (f.base_seq, f.segment(), f.offset());
        }
        let t = &self.tail;
        put_varint(&mut out, t.segment_no as u64);
        put_varint(&mut out, t.end_offset);
        out.extend_from_slice(&t.min_ts.to_le_bytes());
        out.extend_from_slice(&t.max_ts.to_le_bytes());
        put_varint(&mut out, t.raw_bytes);
        put_varint(&mut out, self.entities.len() as u64);
        for (id, e) in &self.entities {
            encode_entity(&mut out, id, e);
        }
        put_varint(&mut out, self.caller_ids.len() as u64);
        for (id, seq) in &self.caller_ids {
            put_bytes(&mut out, id.as_bytes());
            put_varint(&mut out, *seq);
        }
        put_varint(&mut out, self.undone_by.len() as u64);
        for (a, b) in &self.undone_by {
            put_varint(&mut out, *a);
            put_varint(&mut out, *b);
        }
        out
    }

    /// Checks and decodes a checkpoint file; errors carry the offset and reason.
    pub(crate) fn decode(bytes: &[u8]) -> std::result::Result<Checkpoint, (u64, String)> {
        let header = parse_header(bytes)?;
        let stored = &bytes[CHECKPOINT_HEADER_BYTES..];
        if crc32fast::hash(stored) != header.body_crc {
            return Err((CHECKPOINT_HEADER_BYTES as u64, "checkpoint body CRC mismatch".into()));
        }
        // Decompress no more than the header announces (plus one byte, to tell a body that
        // is too long): a small body can expand to any size, and raw_len is the checked bound.
        let mut body = Vec::new();
        zstd::stream::read::Decoder::new(stored)
            .and_then(|d| std::io::Read::read_to_end(&mut std::io::Read::take(d, header.raw_len.saturating_add(1)), &mut body))
            .map_err(|e| (CHECKPOINT_HEADER_BYTES as u64, format!("checkpoint body does not decompress: {e}")))?;
        if body.len() as u64 != header.raw_len {
            return Err((40, "checkpoint body decompressed to the wrong length".into()));
        }
        let mut cp = decode_body(&body).map_err(|r| (CHECKPOINT_HEADER_BYTES as u64, format!("checkpoint body: {r}")))?;
        cp.seq = header.seq;
        cp.store_id = StoreId(header.store_id);
        Ok(cp)
    }
}

/// The fixed fields of a checkpoint header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CheckpointHeader {
    /// Last seq covered.
    pub seq: u64,
    /// The store's id.
    pub store_id: u64,
    /// Stored body length.
    pub body_len: u64,
    /// Body length after decompression.
    pub raw_len: u64,
    /// CRC-32 of the stored body.
    pub body_crc: u32,
}

/// Parses and checks a checkpoint header (and that the file has the body it announces).
pub fn parse_header(bytes: &[u8]) -> std::result::Result<CheckpointHeader, (u64, String)> {
    if bytes.len() < CHECKPOINT_HEADER_BYTES {
        return Err((0, "checkpoint is shorter than its header".into()));
    }
    if &bytes[..8] != CHECKPOINT_MAGIC {
        return Err((0, "bad checkpoint magic".into()));
    }
    if crc32fast::hash(&bytes[..60]) != read_u32(bytes, 60) {
        return Err((60, "checkpoint header CRC mismatch".into()));
    }
    let version = read_u32(bytes, 8);
    if version == 0 || version > format::FORMAT_VERSION {
        return Err((8, format!("unsupported checkpoint format version {version}")));
    }
    if read_u32(bytes, 12) as usize != CHECKPOINT_HEADER_BYTES || bytes[48] != CODEC_ZSTD || bytes[49..56].iter().any(|&b| b != 0) {
        return Err((12, "checkpoint header has an impossible length, codec or reserved bytes".into()));
    }
    let h = CheckpointHeader {
        seq: read_u64(bytes, 16),
        store_id: read_u64(bytes, 24),
        body_len: read_u64(bytes, 32),
        raw_len: read_u64(bytes, 40),
        body_crc: read_u32(bytes, 56),
    };
    if h.body_len != (bytes.len() - CHECKPOINT_HEADER_BYTES) as u64 {
        return Err((32, format!("checkpoint announces a {}-byte body but has {}", h.body_len, bytes.len() - CHECKPOINT_HEADER_BYTES)));
    }
    if h.raw_len > MAX_CHECKPOINT_RAW_BYTES {
        return Err((40, "checkpoint raw length is over the limit".into()));
    }
    Ok(h)
}

fn encode_entity(out: &mut Vec<u8>, id: &str, e: &EntityRecord) {
    put_bytes(out, id.as_bytes());
    put_bytes(out, e.kind.as_bytes());
    let has_state = e.current.is_some() || e.current_json.is_some();
    let flags = u8::from(e.deleted) | if has_state { 2 } else { 0 };
    out.push(flags);
    put_varint(out, e.versions.len() as u64);
    let (mut prev_ts, mut prev_seq) = (0i64, 0u64);
    for (i, v) in e.versions.iter().enumerate() {
        if i == 0 {
            put_varint(out, zigzag(v.ts));
        } else {
            put_varint(out, v.ts.wrapping_sub(prev_ts) as u64);
        }
        put_varint(out, v.seq - prev_seq);
        (prev_ts, prev_seq) = (v.ts, v.seq);
    }
    match (&e.current, &e.current_json) {
        (Some(cur), _) => put_bytes(out, &serde_json::to_vec(&**cur).unwrap_or_else(|_| b"{}".to_vec())),
        (None, Some(json)) => put_bytes(out, json),
        (None, None) => {}
    }
    // Snapshots are rebuilt lazily from the log when missing; only deep entities' are worth
    // the checkpoint's bytes and load time.
    let snapshots: &[Option<Snapshot>] = if e.versions.len() >= PERSIST_SNAPSHOTS_FROM_VERSIONS { &e.snapshots } else { &[] };
    put_varint(out, snapshots.len() as u64);
    for snap in snapshots {
        match snap {
            Some(s) => {
                out.push(1);
                put_bytes(out, s);
            }
            None => out.push(0),
        }
    }
}

/// A count read from the body, checked against the bytes left (each item takes at least
/// `min_item_bytes`), so that no allocation is sized by an unchecked length.
fn count(r: &mut Reader<'_>, min_item_bytes: usize) -> std::result::Result<usize, String> {
    let n = r.varint()?;
    let n = usize::try_from(n).map_err(|_| "count too large")?;
    if n.saturating_mul(min_item_bytes) > r.remaining() {
        return Err(format!("count {n} is more than the remaining bytes can hold"));
    }
    Ok(n)
}

fn decode_body(body: &[u8]) -> std::result::Result<Checkpoint, String> {
    if body.len() < 8 {
        return Err("body is cut short".into());
    }
    let last_ts = read_u64(body, 0) as i64;
    let mut r = Reader::new(&body[8..]);
    let snapshot_every = r.varint()?;
    let n = count(&mut r, 1)?;
    let mut segments = Vec::with_capacity(n);
    for _ in 0..n {
        segments.push(r.varint()?);
    }
    let n = count(&mut r, 3)?;
    let mut frames = Vec::with_capacity(n);
    let (mut seq, mut segment, mut offset) = (0u64, 0usize, 0u64);
    for _ in 0..n {
        seq = seq.checked_add(r.varint()?).ok_or("frame seq overflows")?;
        let seg_delta = usize::try_from(r.varint()?).map_err(|_| "segment number too large")?;
        let off = r.varint()?;
        offset = if seg_delta == 0 { offset.checked_add(off).ok_or("frame offset overflows")? } else { off };
        segment = segment.checked_add(seg_delta).ok_or("segment number overflows")?;
        if segment >= segments.len() || offset >= crate::segment_set::MAX_SEGMENT_BYTES {
            return Err("frame index points outside the segments".into());
        }
        // Open does not rescan what a checkpoint covers: point reads check these frames' CRCs.
        frames.push(FrameRef::new(seq, segment, offset).unchecked());
    }
    let segment_no = usize::try_from(r.varint()?).map_err(|_| "tail segment too large")?;
    let end_offset = r.varint()?;
    let mut ts = [0i64; 2];
    for t in &mut ts {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = r.u8()?;
        }
        *t = i64::from_le_bytes(b);
    }
    let raw_bytes = r.varint()?;
    let tail = Tail { segment_no, end_offset, min_ts: ts[0], max_ts: ts[1], raw_bytes };
    let n = count(&mut r, 5)?;
    let mut entities = Vec::with_capacity(n);
    for _ in 0..n {
        entities.push(decode_entity(&mut r)?);
    }
    let n = count(&mut r, 2)?;
    let mut caller_ids = Vec::with_capacity(n);
    for _ in 0..n {
        caller_ids.push((Box::from(r.str()?), r.varint()?));
    }
    let n = count(&mut r, 2)?;
    let mut undone_by = Vec::with_capacity(n);
    for _ in 0..n {
        undone_by.push((r.varint()?, r.varint()?));
    }
    if !r.is_empty() {
        return Err("bytes after the last section".into());
    }
    Ok(Checkpoint { seq: 0, store_id: StoreId(0), last_ts, snapshot_every, segments, frames, tail, entities, caller_ids, undone_by })
}

fn decode_entity(r: &mut Reader<'_>) -> std::result::Result<(Arc<str>, EntityRecord), String> {
    let id: Arc<str> = Arc::from(r.str()?);
    let kind: Arc<str> = Arc::from(r.str()?);
    let flags = r.u8()?;
    if flags & !3 != 0 {
        return Err(format!("entity {id} has unknown flags"));
    }
    let n = count(r, 2)?;
    if n == 0 {
        return Err(format!("entity {id} has no versions"));
    }
    let mut versions = Vec::with_capacity(n);
    let (mut ts, mut seq) = (0i64, 0u64);
    for i in 0..n {
        let t = r.varint()?;
        ts = if i == 0 {
            unzigzag(t)
        } else {
            ts.checked_add(i64::try_from(t).map_err(|_| "timestamp delta too large")?).ok_or("timestamp overflows")?
        };
        seq = seq.checked_add(r.varint()?).ok_or("seq overflows")?;
        versions.push(VersionRef { ts, seq });
    }
    // The state stays JSON text until first read (see EntityRecord::current_json).
    let current_json = if flags & 2 != 0 {
        let json = r.bytes()?;
        if json.first() != Some(&b'{') {
            return Err(format!("entity {id} state is not a JSON object"));
        }
        Some(Arc::from(json))
    } else {
        None
    };
    let n = count(r, 1)?;
    let mut snapshots = Vec::with_capacity(n);
    for _ in 0..n {
        snapshots.push(match r.u8()? {
            0 => None,
            1 => Some(Arc::from(r.bytes()?)),
            _ => return Err(format!("entity {id} has a malformed snapshot slot")),
        });
    }
    Ok((id, EntityRecord { kind, deleted: flags & 1 != 0, versions, current: None, current_json, snapshots }))
}

/// Builds the checkpoint's index into an `EntityIndex`.
pub(crate) fn into_index(cp: &mut Checkpoint, snapshot_every: u64) -> EntityIndex {
    let mut index = EntityIndex::new(cp.store_id, snapshot_every);
    let keep_snapshots = cp.snapshot_every == index.snapshot_every;
    for (id, mut rec) in std::mem::take(&mut cp.entities) {
        if !keep_snapshots {
            rec.snapshots.clear();
        }
        index.insert_entity(id, rec);
    }
    index.caller_ids = std::mem::take(&mut cp.caller_ids).into_iter().collect();
    index.undone_by = std::mem::take(&mut cp.undone_by).into_iter().collect();
    index
}

/// Writes a checkpoint of the store as it is now; returns the seq it covers (`None` for an
/// empty store or when the newest checkpoint already covers everything).
///
/// Order matters for crash safety: the log is synced first (a checkpoint never covers
/// events that are not durable), the state is captured under the writer lock (so it matches
/// the log's tail exactly), and the file is written, fsynced and renamed outside any lock.
pub(crate) fn write(shared: &Shared) -> Result<Option<u64>> {
    crate::read::materialize_all(shared)?;
    let cp = {
        let mut writer = shared.writer.lock();
        writer.sync()?;
        let view = shared.view.read();
        if view.next_seq <= 1 {
            return Ok(None);
        }
        let seq = view.next_seq - 1;
        let active = &writer.active;
        let tail = Tail {
            segment_no: active.segment_no,
            end_offset: active.len,
            min_ts: active.min_ts,
            max_ts: active.max_ts,
            raw_bytes: active.raw_bytes,
        };
        let cp = Checkpoint {
            seq,
            store_id: shared.store_id,
            last_ts: view.last_ts,
            snapshot_every: view.index.snapshot_every,
            segments: view.log.segments.iter().map(|s| s.header.base_seq).collect(),
            frames: view.log.frames.clone(),
            tail,
            entities: view.index.entities.iter().map(|(id, e)| (id.clone(), e.clone())).collect(),
            caller_ids: view.index.caller_ids.iter().map(|(k, v)| (k.clone(), *v)).collect(),
            undone_by: view.index.undone_by.iter().map(|(k, v)| (*k, *v)).collect(),
        };
        writer.events_since_checkpoint = 0;
        writer.bytes_since_checkpoint = 0;
        cp
    };
    let name = format::checkpoint_file_name(cp.seq);
    let existing = crate::recovery::list(shared.storage.as_ref(), &shared.dir)?;
    if existing.checkpoints.iter().any(|(seq, _)| *seq >= cp.seq) {
        return Ok(None);
    }
    let bytes = cp.encode(1).map_err(|e| Error::io(shared.dir.join(&name), e))?;
    crate::writer::write_file_durably(&shared.storage, &shared.dir, &name, &bytes)?;
    // Only now that the new checkpoint is durable do older ones go.
    let keep = shared.options.checkpoints_kept.max(1);
    let listing = crate::recovery::list(shared.storage.as_ref(), &shared.dir)?;
    let old = listing.checkpoints.len().saturating_sub(keep);
    for (_, old_name) in listing.checkpoints.iter().take(old) {
        let path = shared.dir.join(old_name);
        shared.storage.remove_file(&path).map_err(|e| Error::io(&path, e))?;
    }
    if old > 0 {
        shared.storage.sync_dir(&shared.dir).map_err(|e| Error::io(&shared.dir, e))?;
    }
    tracing::debug!(seq = cp.seq, bytes = bytes.len(), "wrote a checkpoint");
    Ok(Some(cp.seq))
}
