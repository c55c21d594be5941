//! `repair`: salvage a store that fails to open. It finds the first damage exactly as
//! `Store::open` does (`recovery::replay`), keeps everything before it, and moves the rest
//! aside with recovery's own cut: the bytes after the damaged offset go into
//! `{segment}.{offset}.salvaged`, every later segment into `{segment}.salvaged`. Nothing is
//! deleted. It holds the writer lock throughout, so it never runs beside a live writer.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};
use crate::format;
use crate::frame::FrameHeader;
use crate::recovery::{self, Damage, SalvageNames};
use crate::segment::{self, FrameScan, SEGMENT_HEADER_BYTES, SegmentHeader};
use crate::storage::{FsStorage, Storage};

use super::Problem;

/// A run of bytes that repair moves out of the log.
///
/// ```
/// let piece = strata::inspect::CutPiece {
///     file: "s/00000000000000000001.seg".into(), from_offset: 4096, bytes: 100,
///     readable_seqs: Some((57, 60)), moved_to: "s/00000000000000000001.seg.4096.salvaged".into(),
/// };
/// assert_eq!(piece.readable_seqs, Some((57, 60)));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CutPiece {
    /// The file the bytes come from.
    pub file: PathBuf,
    /// Where the cut starts in it (0: the whole file).
    pub from_offset: u64,
    /// How many bytes are cut.
    pub bytes: u64,
    /// The first and last seq of the frames still readable in the cut bytes, if any.
    pub readable_seqs: Option<(u64, u64)>,
    /// Where the bytes go.
    pub moved_to: PathBuf,
}

/// What repair found and cut (or, in a dry run, would cut).
///
/// ```
/// use strata::{NewEvent, Options, Store};
/// let dir = tempfile::tempdir()?;
/// Store::open(dir.path(), Options::default())?.append(NewEvent::create("K", "e", serde_json::json!({})))?;
/// let report = strata::inspect::repair(dir.path(), true)?;
/// assert!(report.damage.is_none() && report.cut.is_empty());
/// assert_eq!(report.kept_to_seq, 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepairReport {
    /// True when nothing was changed on purpose.
    pub dry_run: bool,
    /// The first damage, as `Store::open` sees it (`None`: nothing to repair).
    pub damage: Option<Problem>,
    /// The last seq kept.
    pub kept_to_seq: u64,
    /// The first seq not kept, when something is cut.
    pub first_lost_seq: Option<u64>,
    /// What is moved out of the log, in log order.
    pub cut: Vec<CutPiece>,
}

impl RepairReport {
    /// The bytes moved out of the log.
    ///
    /// ```
    /// let r = strata::inspect::RepairReport { dry_run: true, damage: None, kept_to_seq: 0, first_lost_seq: None, cut: vec![] };
    /// assert_eq!(r.cut_bytes(), 0);
    /// ```
    pub fn cut_bytes(&self) -> u64 {
        self.cut.iter().map(|p| p.bytes).sum()
    }
}

/// Salvages the store in `dir`: keeps everything before its first damage and moves the rest
/// aside, cutting again (as `Store::open` does) until the log replays clean; checkpoints that
/// cover seqs no longer in the log are moved aside too. With `dry_run`, reports the same and
/// changes nothing. Fails with [`Error::Locked`] when a writer has the store open.
///
/// ```
/// use strata::{NewEvent, Options, Store};
/// use serde_json::json;
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path(), Options::default())?;
/// store.append(NewEvent::create("Contact", "c1", json!({})))?;
/// store.append(NewEvent::update("c1", json!({"a": 1})))?;
/// drop(store);
/// let segment = dir.path().join("00000000000000000001.seg");
/// let mut bytes = std::fs::read(&segment)?;
/// bytes[70] ^= 1; // damage the first frame: the second one is valid, so this is corruption
/// std::fs::write(&segment, &bytes)?;
/// assert!(Store::open(dir.path(), Options::default()).is_err());
/// let report = strata::inspect::repair(dir.path(), false)?;
/// assert_eq!((report.kept_to_seq, report.first_lost_seq), (0, Some(1)));
/// assert!(Store::open(dir.path(), Options::default()).is_ok());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn repair(dir: impl AsRef<Path>, dry_run: bool) -> Result<RepairReport> {
    let dir = dir.as_ref();
    let storage: Arc<dyn Storage> = Arc::new(FsStorage);
    let listing = recovery::list(storage.as_ref(), dir)?;
    super::check_is_store(storage.as_ref(), dir, &listing)?;
    // A dry run takes the lock too (a lock changes no byte) when the lock file exists, so
    // that it refuses where the real repair would; it never creates the file.
    let names = storage.list_dir(dir).map_err(|e| Error::io(dir, e))?;
    let _lock = if !dry_run || names.iter().any(|n| n == format::LOCK_FILE) {
        let lock_path = dir.join(format::LOCK_FILE);
        Some(storage.try_lock(&lock_path).map_err(|e| Error::io(&lock_path, e))?.ok_or_else(|| Error::Locked { path: dir.to_path_buf() })?)
    } else {
        None
    };
    let dicts = recovery::load_dictionaries(storage.as_ref(), dir, &listing)?;
    let mut report = RepairReport { dry_run, damage: None, kept_to_seq: 0, first_lost_seq: None, cut: Vec::new() };
    let mut cuts = 0;
    let mut salvage_names: Option<SalvageNames> = None;
    loop {
        let listing = recovery::list(storage.as_ref(), dir)?;
        // A full replay, ignoring checkpoints: every frame is checked.
        let replayed = recovery::replay(&storage, dir, &listing, &dicts, 1, None)?;
        report.kept_to_seq = replayed.next_seq - 1;
        let Some(damage) = replayed.damage.clone() else { break };
        drop(replayed);
        if cuts == recovery::MAX_RECOVERY_CUTS {
            return Err(Error::corruption(&damage.path, damage.offset, format!("{} (still damaged after {cuts} cuts)", damage.reason)));
        }
        if report.damage.is_none() {
            report.damage =
                Some(Problem { torn_tail: damage.torn_tail, ..Problem::new(&damage.path, damage.offset, damage.reason.clone()) });
        }
        // Named as the cut will name them; a dry run goes on naming its predicted cuts.
        let names = salvage_names.get_or_insert(SalvageNames::new(storage.as_ref(), dir)?);
        report.cut.extend(plan_cut(storage.as_ref(), dir, &listing.segments, &damage, names)?);
        if dry_run {
            let (follow_up, kept_to_seq) = after_cut(storage.as_ref(), dir, &listing.segments, &damage, names)?;
            report.cut.extend(follow_up);
            report.kept_to_seq = kept_to_seq;
            break;
        }
        recovery::cut(&storage, dir, &listing, &damage, true)?;
        salvage_names = None;
        cuts += 1;
    }
    if report.damage.is_some() {
        report.first_lost_seq = Some(report.kept_to_seq + 1);
        let mut names = match salvage_names {
            Some(n) => n,
            None => SalvageNames::new(storage.as_ref(), dir)?,
        };
        move_stale_checkpoints(storage.as_ref(), dir, &listing, &mut names, &mut report)?;
    }
    Ok(report)
}

/// Checkpoints that cover seqs the log no longer holds describe a log that is gone: they are
/// moved aside (open would skip them; verify would report them).
fn move_stale_checkpoints(
    storage: &dyn Storage,
    dir: &Path,
    listing: &recovery::Listing,
    names: &mut SalvageNames,
    report: &mut RepairReport,
) -> Result<()> {
    for (seq, name) in listing.checkpoints.iter().filter(|(seq, _)| *seq > report.kept_to_seq) {
        let file = dir.join(name);
        let bytes = storage.file_len(&file).map_err(|e| Error::io(&file, e))?;
        let moved_to = dir.join(names.next(name));
        if !report.dry_run {
            storage.rename(&file, &moved_to).map_err(|e| Error::io(&file, e))?;
        }
        report.cut.push(CutPiece { file, from_offset: 0, bytes, readable_seqs: Some((1, *seq)), moved_to });
    }
    if !report.dry_run {
        storage.sync_dir(dir).map_err(|e| Error::io(dir, e))?;
    }
    Ok(())
}

/// For a dry run: what the next pass would cut once `damage` is cut, and the last seq then
/// kept. Cutting makes the damaged segment the last one; whatever follows its last good
/// frame (what is left of a damaged trailer) reads as a torn tail and is cut next.
fn after_cut(
    storage: &dyn Storage,
    dir: &Path,
    segments: &[(u64, String)],
    damage: &Damage,
    names: &mut SalvageNames,
) -> Result<(Option<CutPiece>, u64)> {
    let (_, name) = &segments[damage.segment];
    let file = dir.join(name);
    let bytes = storage.read_all(&file).map_err(|e| Error::io(&file, e))?;
    let header = match SegmentHeader::parse(&bytes) {
        Ok(h) if damage.offset >= SEGMENT_HEADER_BYTES as u64 => h,
        // The whole segment goes aside: the log ends with the segment before, sealed.
        _ => return Ok((None, damage.first_lost_seq - 1)),
    };
    let prefix = &bytes[..(damage.offset as usize).min(bytes.len())];
    let mut next_seq = header.base_seq;
    let mut scan = FrameScan::new(prefix, header.salt, SEGMENT_HEADER_BYTES, prefix.len(), next_seq);
    for frame in scan.by_ref().map_while(|f| f.ok()) {
        next_seq = frame.header.next_seq();
    }
    let stop = scan.position();
    if stop as usize == prefix.len() {
        return Ok((None, next_seq - 1));
    }
    let piece = CutPiece {
        file,
        from_offset: stop,
        bytes: prefix.len() as u64 - stop,
        readable_seqs: readable_seqs(prefix, header.salt, stop as usize, next_seq, true),
        moved_to: dir.join(names.next(&format!("{name}.{stop}"))),
    };
    Ok((Some(piece), next_seq - 1))
}

/// What `recovery::cut` will move for `damage`, with the seqs still readable in each piece.
fn plan_cut(
    storage: &dyn Storage,
    dir: &Path,
    segments: &[(u64, String)],
    damage: &Damage,
    names: &mut SalvageNames,
) -> Result<Vec<CutPiece>> {
    let mut pieces = Vec::new();
    for (i, (_, name)) in segments.iter().enumerate().skip(damage.segment) {
        let file = dir.join(name);
        let bytes = storage.read_all(&file).map_err(|e| Error::io(&file, e))?;
        let header = SegmentHeader::parse(&bytes).ok();
        let from_offset = match i == damage.segment && damage.offset >= SEGMENT_HEADER_BYTES as u64 {
            true => damage.offset.min(bytes.len() as u64),
            false => 0,
        };
        // As `recovery::cut` does, the last segment's reserved space is not kept aside.
        let end = if i + 1 == segments.len() && from_offset > 0 { recovery::salvage_end(&bytes) as u64 } else { bytes.len() as u64 };
        let len = end.saturating_sub(from_offset);
        if len == 0 && from_offset > 0 {
            continue; // nothing after the offset: the cut only drops later segments
        }
        let moved_to = dir.join(match from_offset {
            0 => names.next(name),
            at => names.next(&format!("{name}.{at}")),
        });
        let readable_seqs = header.and_then(|h| {
            let (start, min_seq) = match from_offset {
                0 => (SEGMENT_HEADER_BYTES, h.base_seq),
                at => (usize::try_from(at).ok()?, damage.first_lost_seq),
            };
            readable_seqs(&bytes, h.salt, start, min_seq, from_offset > 0)
        });
        pieces.push(CutPiece { file, from_offset, bytes: len, readable_seqs, moved_to });
    }
    Ok(pieces)
}

/// The first and last seq of the frames with a valid CRC found from `start` on, skipping
/// over damage (the frame at `start` itself is known bad when `start_is_bad`).
fn readable_seqs(bytes: &[u8], salt: u64, start: usize, min_seq: u64, start_is_bad: bool) -> Option<(u64, u64)> {
    let mut at = match start_is_bad {
        true => usize::try_from(segment::find_valid_frame_after(bytes, salt, start, min_seq)?).ok()?,
        false => start,
    };
    let (mut first, mut last) = (None, None);
    loop {
        let base = FrameHeader::parse(bytes.get(at..)?).ok()?.base_seq;
        let mut scan = FrameScan::new(bytes, salt, at, bytes.len(), base);
        for frame in scan.by_ref().map_while(|f| f.ok()) {
            first = first.or(Some(frame.header.base_seq));
            last = Some(frame.header.next_seq() - 1);
        }
        let stop = scan.position() as usize;
        match segment::find_valid_frame_after(bytes, salt, stop, last.map_or(min_seq, |l| l + 1)) {
            Some(next) if (next as usize) > stop => at = next as usize,
            _ => break,
        }
    }
    first.zip(last)
}
