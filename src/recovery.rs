//! Opening a store: lock, load dictionaries, walk every segment, rebuild the index, and
//! decide what a damaged frame means.
//!
//! The rules (format-spec.md, "Recovery"):
//! - Zeros from the end of the last frame to the end of the last segment are reserved space
//!   (format version 2), the clean end of the log: the writer goes on filling it.
//! - A bad frame at the end of the last segment with no valid frame after it is a torn
//!   tail, what a crash mid-write leaves: it is cut off (unless `Recovery::Strict`).
//! - Any other bad frame (valid data after it, a bad frame in a sealed segment, a broken
//!   seq chain, a segment missing its trailer) is corruption: open fails with
//!   `Error::Corruption` naming the file and offset, unless `Recovery::SalvagePrefix`, which
//!   keeps everything before the first bad frame and moves the rest aside.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::checkpoint::{self, Checkpoint, Tail};
use crate::dictionary::{self, Dictionaries};
use crate::entity_index::EntityIndex;
use crate::error::{Error, Result};
use crate::event::StoreId;
use crate::format;
use crate::frame::FrameHeader;
use crate::frame::{DecodedFrame, FrameEncoder};
use crate::options::{Options, Recovery};
use crate::segment::{self, BadFrame, FrameScan, HeaderError, SEGMENT_HEADER_BYTES, SegmentHeader, Trailer};
use crate::segment_set::{FrameRef, SegmentHandle, SegmentSet};
use crate::storage::Storage;
use crate::store::Shared;
use crate::writer::{self, ActiveSegment, Sampler, View, Writer};

/// How many times open may cut a damaged log before giving up.
pub(crate) const MAX_RECOVERY_CUTS: usize = 4;

/// The first bad spot found in the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Position of the damaged segment in seq order.
    pub segment: usize,
    /// The damaged segment file.
    pub path: PathBuf,
    /// Offset of the first bad byte (the start of the bad frame).
    pub offset: u64,
    /// What check failed.
    pub reason: String,
    /// True when this is a torn tail (nothing valid follows in the last segment).
    pub torn_tail: bool,
    /// The first seq not kept if the log is cut here.
    pub first_lost_seq: u64,
}

/// The state rebuilt from the log's good prefix.
pub(crate) struct Replayed {
    pub(crate) store_id: StoreId,
    pub(crate) log: SegmentSet,
    pub(crate) index: EntityIndex,
    pub(crate) next_seq: u64,
    pub(crate) last_ts: i64,
    /// The last segment's frames, timestamps and raw bytes (to seal it later).
    pub(crate) tail: Option<ActiveSegment>,
    /// Whether the last segment is sealed.
    pub(crate) last_sealed: bool,
    pub(crate) damage: Option<Damage>,
}

/// What the directory holds, by file type.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub(crate) segments: Vec<(u64, String)>,
    pub(crate) dictionaries: Vec<(u32, String)>,
    pub(crate) checkpoints: Vec<(u64, String)>,
    pub(crate) temporary: Vec<String>,
    pub(crate) foreign: Vec<String>,
}

pub(crate) fn list(storage: &dyn Storage, dir: &Path) -> Result<Listing> {
    let mut listing = Listing::default();
    for name in storage.list_dir(dir).map_err(|e| Error::io(dir, e))? {
        if let Some(seq) = format::parse_segment_file_name(&name) {
            listing.segments.push((seq, name));
        } else if let Some(id) = dictionary::parse_dict_file_name(&name) {
            listing.dictionaries.push((id, name));
        } else if let Some(seq) = format::parse_checkpoint_file_name(&name) {
            listing.checkpoints.push((seq, name));
        } else if is_own_temporary(&name) {
            listing.temporary.push(name);
        } else if name != format::LOCK_FILE && !name.ends_with(".salvaged") {
            listing.foreign.push(name);
        }
    }
    listing.segments.sort();
    listing.dictionaries.sort();
    listing.checkpoints.sort();
    Ok(listing)
}

/// Whether `name` is a temporary file strata itself writes (`{file name}.tmp` for one of its
/// own file names). Any other `*.tmp` belongs to someone else and is never removed.
fn is_own_temporary(name: &str) -> bool {
    name.strip_suffix(".tmp").is_some_and(|stem| {
        format::parse_segment_file_name(stem).is_some()
            || dictionary::parse_dict_file_name(stem).is_some()
            || format::parse_checkpoint_file_name(stem).is_some()
    })
}

/// Refuses a directory that is not a strata store before anything in it is touched (the
/// lock file is created and temporary files are removed only in a store): a directory
/// with other files and no segments, or whose segment files none carry strata's magic.
pub(crate) fn check_is_store(storage: &dyn Storage, dir: &Path, listing: &Listing) -> Result<()> {
    if listing.segments.is_empty() {
        if listing.foreign.is_empty() {
            return Ok(());
        }
        return Err(Error::NotAStore {
            path: dir.to_path_buf(),
            reason: format!("it holds other files ({}) and no strata segments", listing.foreign.join(", ")),
        });
    }
    for (_, name) in &listing.segments {
        let path = dir.join(name);
        // Only the magic is needed, read as a copy: this runs before the lock is taken (and
        // by the inspector, which never takes it), so a writer may be changing the file.
        let magic_bytes = segment::SEGMENT_MAGIC.len() as u64;
        let bytes = storage.read_copy_at(&path, 0, magic_bytes).map_err(|e| Error::io(&path, e))?;
        // A file shorter than the magic may be a segment whose creation was cut short.
        if bytes.len() < segment::SEGMENT_MAGIC.len() || bytes.starts_with(segment::SEGMENT_MAGIC) {
            return Ok(());
        }
    }
    let path = dir.join(&listing.segments[0].1);
    Err(Error::NotAStore { path, reason: "no segment file starts with strata's magic number".into() })
}

/// Loads and checks every dictionary file.
pub(crate) fn load_dictionaries(storage: &dyn Storage, dir: &Path, listing: &Listing) -> Result<Dictionaries> {
    let dicts = Dictionaries::default();
    for (id, name) in &listing.dictionaries {
        dicts.insert(*id, load_dictionary(storage, dir, *id, name)?);
    }
    Ok(dicts)
}

/// Loads and checks dictionary file `name`, which must hold dictionary `id`.
pub(crate) fn load_dictionary(storage: &dyn Storage, dir: &Path, id: u32, name: &str) -> Result<Vec<u8>> {
    let path = dir.join(name);
    // Read as a copy, not mapped: the bytes are copied out below anyway, and the inspector
    // loads dictionaries this way without the lock. No more than the largest dictionary file
    // and a byte: a longer file is damage (its length does not match), whatever its size.
    let most = (dictionary::DICT_HEADER_BYTES + dictionary::MAX_DICT_BYTES as usize + 1) as u64;
    let bytes = storage.read_copy_at(&path, 0, most).map_err(|e| Error::io(&path, e))?;
    if let Some(found) = dictionary::newer_version(&bytes) {
        return Err(Error::UnsupportedVersion { path, found, supported: format::FORMAT_VERSION });
    }
    let (file_id, dict) = dictionary::decode_file(&bytes).map_err(|(offset, reason)| Error::corruption(&path, offset, reason))?;
    if file_id != id {
        return Err(Error::corruption(&path, 12, format!("dictionary id {file_id} does not match its file name")));
    }
    Ok(dict.to_vec())
}

/// Walks the log, replaying every good frame into the index and stopping at the first
/// damage. With a checkpoint, the index starts from it and only the log after its tail is
/// read; segments before the tail are opened (header checked) but not scanned.
pub(crate) fn replay(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    listing: &Listing,
    dicts: &Dictionaries,
    snapshot_every: u64,
    checkpoint: Option<Checkpoint>,
) -> Result<Replayed> {
    let mut out = Replayed {
        store_id: StoreId(0),
        log: SegmentSet::default(),
        index: EntityIndex::new(StoreId(0), snapshot_every),
        next_seq: 1,
        last_ts: i64::MIN,
        tail: None,
        last_sealed: false,
        damage: None,
    };
    let mut start = (0usize, SEGMENT_HEADER_BYTES as u64, Tail::default());
    let from_checkpoint = checkpoint.is_some();
    if let Some(mut cp) = checkpoint {
        out.store_id = cp.store_id;
        out.index = checkpoint::into_index(&mut cp, snapshot_every);
        out.log.frames = std::mem::take(&mut cp.frames);
        out.next_seq = cp.seq + 1;
        out.last_ts = cp.last_ts;
        start = (cp.tail.segment_no, cp.tail.end_offset, cp.tail);
    }
    let count = listing.segments.len();
    // Frames are checked and decompressed on a second thread while this one applies them.
    std::thread::scope(|scope| {
        for (i, (base, name)) in listing.segments.iter().enumerate() {
            let last = i + 1 == count;
            let path = dir.join(name);
            let bytes = storage.read_all(&path).map_err(|e| Error::io(&path, e))?;
            let header = match SegmentHeader::parse(&bytes) {
                Ok(h) => h,
                Err(HeaderError::BadMagic) if i == 0 && count == 1 => {
                    return Err(Error::NotAStore { path, reason: "the first segment does not start with strata's magic number".into() });
                }
                Err(HeaderError::NewerVersion(found)) => {
                    return Err(Error::UnsupportedVersion { path, found, supported: format::FORMAT_VERSION });
                }
                Err(e) => {
                    let reason = match e {
                        HeaderError::Damaged(r) => r.to_string(),
                        _ => "segment header has a bad magic number".into(),
                    };
                    // A crash while creating a segment leaves at most a partial header: nothing
                    // in it was ever acknowledged.
                    let torn = last && bytes.len() <= SEGMENT_HEADER_BYTES && (i == 0 || out.last_sealed);
                    out.damage = Some(Damage { segment: i, path, offset: 0, reason, torn_tail: torn, first_lost_seq: out.next_seq });
                    return Ok(out);
                }
            };
            if i == 0 && !from_checkpoint {
                out.store_id = StoreId(header.store_id);
                out.index.store_id = out.store_id;
            }
            let damage_at = |offset: u64, reason: String, first_lost_seq: u64| Damage {
                segment: i,
                path: path.clone(),
                offset,
                reason,
                torn_tail: false,
                first_lost_seq,
            };
            if header.store_id != out.store_id.0 {
                out.damage = Some(damage_at(24, "segment belongs to another store (store id differs)".into(), out.next_seq));
                return Ok(out);
            }
            // Segments up to the checkpoint's tail were checked against it (`checkpoint_fits`).
            let expected_base = if from_checkpoint && i <= start.0 { *base } else { out.next_seq };
            if header.base_seq != *base || header.base_seq != expected_base {
                let reason = format!("segment starts at seq {} but seq {} was expected", header.base_seq, expected_base);
                out.damage = Some(damage_at(16, reason, out.next_seq));
                return Ok(out);
            }
            let handle = Arc::new(SegmentHandle::new(path.clone(), header, storage.clone(), bytes.clone()));
            let segment_no = out.log.segments.len();
            out.log.segments.push(handle.clone());
            if i < start.0 {
                // Covered by the checkpoint and sealed before it was taken: its frames are
                // checked when read, and its trailer (read by nothing else) here, so that
                // damage to it is reported now, not by the next full replay.
                let footer_at = bytes.len().saturating_sub(segment::FOOTER_BYTES) as u64;
                let next_base = listing.segments.get(i + 1).map(|(b, _)| *b);
                let damage = match Trailer::find(&bytes) {
                    Some(Ok(t)) if Some(t.next_seq) == next_base => continue,
                    Some(Ok(_)) => damage_at(footer_at, "trailer does not match the next segment's base seq".into(), out.next_seq),
                    Some(Err((offset, reason))) => damage_at(offset, reason.into(), out.next_seq),
                    None => damage_at(footer_at, "sealed segment covered by the checkpoint has no trailer".into(), out.next_seq),
                };
                out.damage = Some(damage);
                return Ok(out);
            }
            let (end, sealed) = match Trailer::find(&bytes) {
                Some(Ok(t)) => (t.index_offset as usize, Some(t)),
                Some(Err((offset, reason))) if !last => {
                    out.damage = Some(damage_at(offset, reason.into(), out.next_seq));
                    return Ok(out);
                }
                None if !last => {
                    out.damage =
                        Some(damage_at(bytes.len() as u64, "segment has no trailer but a later segment exists".into(), out.next_seq));
                    return Ok(out);
                }
                _ => (bytes.len(), None),
            };
            let file = storage.open(&path).map_err(|e| Error::io(&path, e))?;
            let mut active = ActiveSegment::new(handle.clone(), file, segment_no, SEGMENT_HEADER_BYTES as u64);
            let mut from = SEGMENT_HEADER_BYTES;
            if i == start.0 && start.1 > SEGMENT_HEADER_BYTES as u64 {
                let tail = start.2;
                active.frames = out.log.frames.iter().filter(|f| f.segment() == i).map(|f| (f.base_seq, f.offset())).collect();
                (active.len, active.min_ts, active.max_ts, active.raw_bytes, active.next_seq) =
                    (tail.end_offset, tail.min_ts, tail.max_ts, tail.raw_bytes, out.next_seq);
                from = tail.end_offset as usize;
            }
            // The active segment may end in reserved space (zeros to the end of the file): the
            // scan ends there cleanly.
            let reserved_tail = last && sealed.is_none() && header.format_version >= format::RESERVED_SPACE_VERSION;
            for item in decode_ahead(scope, bytes.clone(), header.salt, (from, end), reserved_tail, out.next_seq, dicts) {
                let (frame, decoded) = match item {
                    Ok(f) => f,
                    Err(bad) => {
                        // Torn unless a later frame proves the bad bytes were written
                        // (format-spec.md, section 10).
                        let torn = last
                            && sealed.is_none()
                            && segment::frame_proving_damage(&bytes, 0, header.salt, bad.offset as usize, out.next_seq).is_none();
                        out.damage = Some(Damage { torn_tail: torn, ..damage_at(bad.offset, bad.reason, out.next_seq) });
                        out.tail = Some(active);
                        return Ok(out);
                    }
                };
                let decoded = decoded.map_err(|r| Error::corruption(&path, frame.offset, r))?;
                let next_seq = frame.header.next_seq();
                decoded.for_each_record(|seq, rec| out.index.apply_record(seq, &rec, next_seq, false)).map_err(|r| {
                    Error::corruption(&path, frame.offset, format!("{r} (the frame's CRC is valid: the log is inconsistent)"))
                })?;
                out.log.frames.push(FrameRef::new(frame.header.base_seq, segment_no, frame.offset));
                out.next_seq = next_seq;
                out.last_ts = out.last_ts.max(frame.header.max_ts);
                active.frames.push((frame.header.base_seq, frame.offset));
                active.len = frame.offset + u64::from(frame.header.len);
                active.min_ts = active.min_ts.min(frame.header.min_ts);
                active.max_ts = active.max_ts.max(frame.header.max_ts);
                active.raw_bytes += u64::from(frame.header.raw_len);
                active.next_seq = next_seq;
            }
            out.last_sealed = sealed.is_some();
            if let Some(t) = sealed
                && (active.len != t.index_offset || t.next_seq != out.next_seq || t.frames != active.frames)
            {
                out.damage = Some(damage_at(t.index_offset, "trailer does not match the segment's frames".into(), out.next_seq));
                return Ok(out);
            }
            if !out.last_sealed {
                // Whatever follows the frames is reserved space the writer will fill: readers
                // must not map it.
                active.allocated = bytes.len() as u64;
                handle.limit_mapped(active.len);
            }
            out.tail = Some(active);
        }
        Ok(out)
    })
}

/// A frame found by the scan: its offset and header.
#[derive(Debug, Clone, Copy)]
struct FoundFrame {
    offset: u64,
    header: FrameHeader,
}

type Decoded = std::result::Result<(FoundFrame, std::result::Result<DecodedFrame, String>), BadFrame>;

/// Scans `bytes[from..end]` and decompresses each good frame on a scoped thread, handing the
/// results over in order (in batches, to keep the hand-over cheap). The scan stops at the
/// first bad frame, which is handed over last, or (with `reserved_tail`) at reserved space.
/// Dropping the iterator stops the thread and waits for it to exit.
fn decode_ahead<'scope>(
    scope: &'scope std::thread::Scope<'scope, '_>,
    bytes: bytes::Bytes,
    salt: u64,
    (from, end): (usize, usize),
    reserved_tail: bool,
    next_seq: u64,
    dicts: &'scope Dictionaries,
) -> DecodeAhead<'scope> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<Decoded>>(4);
    let thread = scope.spawn(move || {
        let (mut batch, mut raw) = (Vec::new(), 0usize);
        let scan = FrameScan::new(&bytes, salt, from, end, next_seq);
        let scan = if reserved_tail { scan.with_reserved_tail() } else { scan };
        for item in scan {
            let stop = item.is_err();
            let decoded = item.map(|f| {
                raw += f.header.raw_len as usize;
                (FoundFrame { offset: f.offset, header: f.header }, DecodedFrame::decode(f.bytes, salt, dicts))
            });
            batch.push(decoded);
            if stop || batch.len() >= 256 || raw >= 1 << 20 {
                if tx.send(std::mem::take(&mut batch)).is_err() || stop {
                    return;
                }
                raw = 0;
            }
        }
        let _ = tx.send(batch);
    });
    DecodeAhead { frames: Some(rx.into_iter().flatten()), thread: Some(thread) }
}

/// The frames [`decode_ahead`]'s thread hands over, in order.
struct DecodeAhead<'scope> {
    frames: Option<std::iter::Flatten<std::sync::mpsc::IntoIter<Vec<Decoded>>>>,
    thread: Option<std::thread::ScopedJoinHandle<'scope, ()>>,
}

impl Iterator for DecodeAhead<'_> {
    type Item = Decoded;

    fn next(&mut self) -> Option<Decoded> {
        self.frames.as_mut()?.next()
    }
}

impl Drop for DecodeAhead<'_> {
    /// Closes the channel (the thread's next hand-over fails and it returns), then joins the
    /// thread: unlike the end of `std::thread::scope`, which waits only for the closure, a
    /// join waits for the thread to exit, thread-local destructors included, so nothing the
    /// thread allocated outlives the replay. A panic in it is passed on, as the scope would.
    fn drop(&mut self) {
        self.frames = None;
        if let Some(Err(panic)) = self.thread.take().map(|t| t.join())
            && !std::thread::panicking()
        {
            std::panic::resume_unwind(panic);
        }
    }
}

/// The newest checkpoint that decodes and fits the log; damaged or stale ones are reported
/// (a warning) and skipped: a checkpoint is only a cache.
fn newest_checkpoint(storage: &Arc<dyn Storage>, dir: &Path, listing: &Listing) -> Option<Checkpoint> {
    for (_, name) in listing.checkpoints.iter().rev() {
        let path = dir.join(name);
        let loaded = storage
            .read_all(&path)
            .map_err(|e| (0, format!("cannot read: {e}")))
            .and_then(|bytes| Checkpoint::decode(&bytes))
            .and_then(|cp| checkpoint_fits(storage, dir, listing, &cp).map(|()| cp));
        match loaded {
            Ok(cp) => return Some(cp),
            Err((offset, reason)) => {
                tracing::warn!(file = %path.display(), offset, reason = %reason, "ignoring a damaged or stale checkpoint; falling back")
            }
        }
    }
    None
}

/// Checks that a checkpoint describes this log: same segments, and its last frame is where
/// it says, with a valid CRC and the right seqs.
pub(crate) fn checkpoint_fits(
    storage: &Arc<dyn Storage>,
    dir: &Path,
    listing: &Listing,
    cp: &Checkpoint,
) -> std::result::Result<(), (u64, String)> {
    let stale = |reason: &str| (0u64, reason.to_string());
    let bases: Vec<u64> = listing.segments.iter().map(|(b, _)| *b).collect();
    if cp.segments.is_empty() || cp.segments.len() > bases.len() || cp.segments[..] != bases[..cp.segments.len()] {
        return Err(stale("its segments are not the store's"));
    }
    // Fields read from the checkpoint can hold any value that passes its CRCs: no arithmetic
    // on them may overflow (`segments` is not empty here).
    if cp.tail.segment_no != cp.segments.len() - 1 {
        return Err(stale("its tail is not in its last segment"));
    }
    let Some(last) = cp.frames.last() else { return Err(stale("it has no frames")) };
    // The last frame ends where the tail says the log went on: in the tail's segment.
    if last.segment() != cp.tail.segment_no {
        return Err(stale("its last frame is not in its tail's segment"));
    }
    let (_, name) = &listing.segments[last.segment()];
    let path = dir.join(name);
    // Only the segment's header and the one frame are read, as copies: the segment may be
    // the active one, which the inspector (verify) reads while a writer appends to it.
    let read =
        |offset: u64, len: u64| storage.read_copy_at(&path, offset, len).map_err(|e| (0, format!("cannot read {}: {e}", path.display())));
    let header = SegmentHeader::parse(&read(0, SEGMENT_HEADER_BYTES as u64)?)
        .map_err(|_| stale("the segment of its last frame has a bad header"))?;
    if header.store_id != cp.store_id.0 {
        return Err(stale("it belongs to another store"));
    }
    let not_in_log = || stale("its last frame is not in the log (the log was cut or changed after it)");
    let frame_len = cp.tail.end_offset.checked_sub(last.offset()).ok_or_else(not_in_log)?;
    let frame = read(last.offset(), frame_len)?;
    match FrameScan::new(&frame, header.salt, 0, frame.len(), last.base_seq).next() {
        Some(Ok(f)) if cp.seq.checked_add(1) == Some(f.header.next_seq()) && u64::from(f.header.len) == frame_len => Ok(()),
        _ => Err(not_in_log()),
    }
}

/// Names for salvage files. A salvage file is never overwritten: `{base}.salvaged`, or
/// `{base}.{n}.salvaged` when that is taken (a second cut of the same file).
pub(crate) struct SalvageNames(std::collections::HashSet<String>);

impl SalvageNames {
    /// The names already taken in `dir`.
    pub(crate) fn new(storage: &dyn Storage, dir: &Path) -> Result<Self> {
        Ok(SalvageNames(storage.list_dir(dir).map_err(|e| Error::io(dir, e))?.into_iter().collect()))
    }

    /// A free name for the salvage of `base`, taken from now on.
    pub(crate) fn next(&mut self, base: &str) -> String {
        let mut name = format!("{base}.salvaged");
        let mut n = 1;
        while self.0.contains(&name) {
            name = format!("{base}.{n}.salvaged");
            n += 1;
        }
        self.0.insert(name.clone());
        name
    }
}

/// Cuts the log at `damage`: the bytes from the damaged offset on and every later segment
/// are moved into `*.salvaged` files next to the store (or, for a torn tail, dropped).
/// Returns the salvage files written.
pub(crate) fn cut(storage: &Arc<dyn Storage>, dir: &Path, listing: &Listing, damage: &Damage, keep_aside: bool) -> Result<Vec<PathBuf>> {
    let mut moved = Vec::new();
    let io = |p: &Path, e| Error::io(p, e);
    let mut names = SalvageNames::new(storage.as_ref(), dir)?;
    let mut aside = |base: String| -> PathBuf { dir.join(names.next(&base)) };
    let file_name = |p: &Path| p.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    for (_, name) in listing.segments.iter().skip(damage.segment + 1) {
        let from = dir.join(name);
        let to = aside(name.clone());
        storage.rename(&from, &to).map_err(|e| io(&from, e))?;
        moved.push(to);
    }
    let path = &damage.path;
    let bytes = storage.read_all(path).map_err(|e| io(path, e))?;
    let offset = (damage.offset as usize).min(bytes.len());
    if damage.offset < SEGMENT_HEADER_BYTES as u64 {
        // The header itself is bad (or names the wrong store or seq): the whole file goes
        // aside; keeping part of a header would leave a file that is damaged again.
        let to = aside(file_name(path));
        storage.rename(path, &to).map_err(|e| io(path, e))?;
        moved.push(to);
    } else {
        let end = if damage.segment + 1 == listing.segments.len() { salvage_end(&bytes).max(offset) } else { bytes.len() };
        if keep_aside && offset < end {
            let to = aside(format!("{}.{offset}", file_name(path)));
            let file = storage.create_new(&to).map_err(|e| io(&to, e))?;
            file.append(&bytes[offset..end]).map_err(|e| io(&to, e))?;
            file.sync_data().map_err(|e| io(&to, e))?;
            moved.push(to);
        }
        drop(bytes);
        let file = storage.open(path).map_err(|e| io(path, e))?;
        file.set_len(offset as u64).map_err(|e| io(path, e))?;
        file.sync_data().map_err(|e| io(path, e))?;
    }
    storage.sync_dir(dir).map_err(|e| io(dir, e))?;
    Ok(moved)
}

/// A run of zeros at the end of the last segment at least this long is reserved space, left
/// out of a salvage copy. Shorter runs are kept: data itself may end in zero bytes (a trailer
/// index entry's offset does), and keeping a few zeros costs nothing.
pub(crate) const SALVAGE_ZEROS_LEFT_OUT_BYTES: usize = 4096;

/// Where the bytes worth keeping aside end in the last segment: before its reserved space.
pub(crate) fn salvage_end(bytes: &[u8]) -> usize {
    let data_end = segment::end_before_zeros(bytes);
    if bytes.len() - data_end >= SALVAGE_ZEROS_LEFT_OUT_BYTES { data_end } else { bytes.len() }
}

/// Makes durable what a previous writer may have left only in the page cache: every
/// segment's data and the directory's entries. Recovery trusts what it reads, and the
/// writer appends after it; without this, a store reopened in the same boot after a failed
/// fsync (a poisoned writer, a segment sealed or created but not synced), or after a writer
/// with `Durability::Never` was killed, could acknowledge appends that a later power loss
/// takes back along with the unsynced bytes before them (format-spec.md, section 10).
/// A file with nothing unsynced still costs one `fdatasync` (about 0.15 ms here).
fn make_durable(storage: &dyn Storage, dir: &Path, listing: &Listing) -> Result<()> {
    for (_, name) in &listing.segments {
        let path = dir.join(name);
        storage.sync_file(&path).map_err(|e| Error::io(&path, e))?;
    }
    storage.sync_dir(dir).map_err(|e| Error::io(dir, e))
}

/// Opens (or creates) the store in `dir`.
pub(crate) fn open(dir: &Path, options: Options, storage: Arc<dyn Storage>) -> Result<Shared> {
    storage.create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let listing = list(storage.as_ref(), dir)?;
    check_is_store(storage.as_ref(), dir, &listing)?;
    let lock_path = dir.join(format::LOCK_FILE);
    let lock =
        storage.try_lock(&lock_path).map_err(|e| Error::io(&lock_path, e))?.ok_or_else(|| Error::Locked { path: dir.to_path_buf() })?;
    for name in &listing.temporary {
        let path = dir.join(name);
        storage.remove_file(&path).map_err(|e| Error::io(&path, e))?;
    }
    make_durable(storage.as_ref(), dir, &listing)?;
    let dicts = load_dictionaries(storage.as_ref(), dir, &listing)?;
    // Each pass replays the log as cut by the pass before, and each cut makes it shorter.
    // A damaged trailer under SalvagePrefix takes two cuts: its footer, then the index
    // entries it leaves after the last frame, which read as a torn tail.
    let mut cuts = 0;
    loop {
        let listing = list(storage.as_ref(), dir)?;
        let checkpoint = newest_checkpoint(&storage, dir, &listing);
        let mut replayed = replay(&storage, dir, &listing, &dicts, options.snapshot_every_versions, checkpoint)?;
        let Some(damage) = replayed.damage.take() else {
            return finish_open(dir, options, storage, lock, dicts, replayed, &listing);
        };
        // The replay maps the segments; no map may outlive the cut, which truncates one.
        drop(replayed);
        if cuts == MAX_RECOVERY_CUTS {
            let reason = format!("{} (still damaged after {cuts} cuts by recovery)", damage.reason);
            return Err(Error::corruption(&damage.path, damage.offset, reason));
        }
        match (damage.torn_tail, options.recovery) {
            (true, Recovery::TolerateTornTail) => {
                tracing::warn!(file = %damage.path.display(), offset = damage.offset, reason = %damage.reason, "cutting a torn tail left by a crash");
                cut(&storage, dir, &listing, &damage, false)?;
            }
            (_, Recovery::SalvagePrefix) => {
                // SalvagePrefix never drops bytes: torn or corrupt, what it cuts is kept aside.
                let moved = cut(&storage, dir, &listing, &damage, true)?;
                tracing::warn!(file = %damage.path.display(), offset = damage.offset, reason = %damage.reason,
                    first_lost_seq = damage.first_lost_seq, moved = ?moved, "salvaged the log's prefix; the rest was moved aside");
            }
            (torn, _) => {
                let reason = if torn { format!("torn tail: {} (Recovery::Strict)", damage.reason) } else { damage.reason.clone() };
                return Err(Error::corruption(&damage.path, damage.offset, reason));
            }
        }
        cuts += 1;
    }
}

fn finish_open(
    dir: &Path,
    options: Options,
    storage: Arc<dyn Storage>,
    lock: Box<dyn std::any::Any + Send + Sync>,
    dicts: Dictionaries,
    mut replayed: Replayed,
    listing: &Listing,
) -> Result<Shared> {
    if listing.segments.is_empty() || replayed.log.segments.is_empty() {
        replayed.store_id = StoreId(writer::random_u64());
        replayed.index.store_id = replayed.store_id;
    }
    let needs_new_segment = replayed.last_sealed || replayed.tail.is_none();
    let mut active = match replayed.tail.take() {
        Some(tail) if !needs_new_segment => tail,
        _ => {
            let (handle, file) = writer::create_segment(&storage, dir, replayed.store_id, replayed.next_seq)?;
            replayed.log.segments.push(handle.clone());
            ActiveSegment::new(handle, file, replayed.log.segments.len() - 1, SEGMENT_HEADER_BYTES as u64)
        }
    }
    .reserving(options.segment_size_bytes);
    // Open synced every segment before replaying (`make_durable`): all of it is durable.
    active.durable_to = active.len;
    let mut encoder = FrameEncoder::new(options.compression_level).map_err(|e| Error::io(dir, e))?;
    let dict_ids = dicts.ids();
    if let Some(&id) = dict_ids.iter().filter(|&&id| id > 0).max() {
        // Its directory entry is durable even if no replayed frame uses it yet (the write
        // that made it may have failed between its rename and the directory fsync): open
        // synced the directory first (`make_durable`).
        let bytes = dicts.bytes(id).unwrap_or_default();
        encoder.use_dictionary(id, &bytes).map_err(|e| Error::io(dir.join(dictionary::dict_file_name(id)), e))?;
    }
    let has_dict = encoder.dict_id() != 0;
    let writer = Writer {
        active,
        encoder,
        next_seq: replayed.next_seq,
        last_ts: replayed.last_ts,
        poisoned: None,
        sampler: (options.train_dictionary && !has_dict).then(Sampler::default),
        next_dict_id: dict_ids.iter().max().copied().unwrap_or(0) + 1,
        dirty: false,
        last_sync: std::time::Duration::ZERO,
        json_buffers: Default::default(),
        payload_buffers: Default::default(),
        overlay: Default::default(),
        indexed_scratch: Vec::new(),
        frame_buf: Vec::new(),
        events_since_checkpoint: 0,
        bytes_since_checkpoint: 0,
    };
    let view = View { log: replayed.log, index: replayed.index, next_seq: replayed.next_seq, last_ts: replayed.last_ts };
    let shared = Shared {
        dir: dir.to_path_buf(),
        storage,
        options,
        store_id: replayed.store_id,
        dicts: Arc::new(dicts),
        view: RwLock::new(view),
        writer: Mutex::new(writer),
        group: Default::default(),
        validators: RwLock::new(Default::default()),
        checkpointing: Mutex::new(()),
        background: Mutex::new(None),
        _lock: lock,
    };
    shared.writer.lock().seal_older_version(&shared)?;
    Ok(shared)
}
