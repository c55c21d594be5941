//! `verify`: every check the format allows, reported one problem per line, without stopping
//! at the first.
//!
//! What is checked: every dictionary file (magic, version, length, CRC, id against its name);
//! every segment header (magic, CRC, version, store id, first seq against the file name and
//! the previous segment); every frame (length, CRC, seq continuity, chunk table, chunk CRCs,
//! decompression, record decoding); every trailer against the frames it indexes; every
//! entity's version chain and kind (the index rebuilt from the log, as `Store::open` does);
//! every checkpoint against the log it claims to cover.

use std::ops::ControlFlow;
use std::time::Duration;

use super::walk::Walk;
use super::{Inspector, Problem};
use crate::checkpoint::{CHECKPOINT_HEADER_BYTES, Checkpoint};
use crate::entity_index::EntityIndex;
use crate::error::{Error, Result};
use crate::recovery;

/// How long `verify` waits before looking again at a torn tail, to tell a write in flight
/// (the bytes after it change in the meantime) from what a crash left behind.
pub const TORN_TAIL_RECHECK_MS: u64 = 250;

/// How many times `verify` looks again at a torn tail that keeps moving.
const TORN_TAIL_LOOKS: usize = 4;

/// What `verify` found.
///
/// ```
/// use strata::{NewEvent, Options, Store};
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path(), Options::default())?;
/// store.append(NewEvent::create("Contact", "c1", serde_json::json!({})))?;
/// let report = strata::inspect::Inspector::open(dir.path())?.verify(None)?;
/// assert!(report.is_clean());
/// assert_eq!((report.events, report.last_seq, report.entities), (1, 1, 1));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// Every problem, dictionaries first, then the log in seq order, then checkpoints.
    pub problems: Vec<Problem>,
    /// Things worth knowing that are not damage (leftover temporary files, foreign files).
    pub notes: Vec<String>,
    /// Segment files checked.
    pub segments: u64,
    /// Good frames.
    pub frames: u64,
    /// Events in good frames.
    pub events: u64,
    /// The last seq of the intact prefix of the log (what `Store::open` would keep).
    pub last_seq: u64,
    /// Entities in the intact prefix.
    pub entities: u64,
    /// Dictionary files checked.
    pub dictionaries: u64,
    /// Checkpoint files checked.
    pub checkpoints: u64,
    /// Reserved space at the end of the active segment (zeros the writer reserved ahead for
    /// the next frames): not data and not damage.
    pub reserved_bytes: u64,
}

impl VerifyReport {
    /// True when no problem was found.
    ///
    /// ```
    /// assert!(strata::inspect::VerifyReport::default().is_clean());
    /// ```
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

impl Inspector {
    /// Checks the whole store, calling `progress` as it goes, and reports every problem
    /// with its file and offset. An error is returned only when the store cannot be read
    /// at all (not a store, I/O error, a newer format).
    ///
    /// With a live writer, the newest segment may end in a frame being written: a torn tail
    /// is reported only if the bytes from it on have not changed when looked at again
    /// [`TORN_TAIL_RECHECK_MS`] later. Reserved space (zeros at the end of the newest
    /// segment) is not a problem; it is counted in [`VerifyReport::reserved_bytes`].
    ///
    /// ```
    /// use strata::{NewEvent, Options, Store};
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path(), Options::default())?;
    /// store.append(NewEvent::create("Contact", "c1", serde_json::json!({})))?;
    /// let segment = dir.path().join("00000000000000000001.seg");
    /// let mut bytes = std::fs::read(&segment)?;
    /// bytes[70] ^= 0x01; // inside the first frame, which starts at offset 64
    /// std::fs::write(&segment, &bytes)?;
    /// let report = strata::inspect::Inspector::open(dir.path())?.verify(None)?;
    /// assert_eq!((report.problems[0].file.clone(), report.problems[0].offset), (segment, 64));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn verify(&self, mut progress: Option<&mut dyn FnMut(super::Progress)>) -> Result<VerifyReport> {
        let mut looks = 0;
        loop {
            let report = self.verify_once(progress.as_mut().map(|p| &mut **p as &mut dyn FnMut(super::Progress)))?;
            looks += 1;
            let Some(torn) = report.problems.iter().find(|p| p.torn_tail) else { return Ok(report) };
            if looks >= TORN_TAIL_LOOKS {
                return Ok(report);
            }
            // The writer fills reserved space without growing the file: compare what follows
            // the torn frame, not the length (read as a copy: the writer may cut it short).
            let tail_now =
                |inspector: &Self| inspector.storage.read_copy_at(&torn.file, torn.offset, u64::MAX).map_err(|e| Error::io(&torn.file, e));
            let before = tail_now(self)?;
            std::thread::sleep(Duration::from_millis(TORN_TAIL_RECHECK_MS));
            if tail_now(self)? == before {
                return Ok(report);
            }
            // The segment changed after the torn frame: that was a write in flight. Look again.
        }
    }

    fn verify_once(&self, progress: Option<&mut dyn FnMut(super::Progress)>) -> Result<VerifyReport> {
        let mut report = VerifyReport {
            problems: self.dictionary_problems.clone(),
            dictionaries: self.listing.dictionaries.len() as u64,
            checkpoints: self.listing.checkpoints.len() as u64,
            ..VerifyReport::default()
        };
        let (mut frames, mut events) = (0u64, 0u64);
        // Every good frame as (base seq, segment position, offset): checkpoints list them too.
        let mut frame_list: Vec<(u64, usize, u64)> = Vec::new();
        let walk = Walk { decode: true, index: true, keep_going: true, progress, ..Walk::default() };
        let walked = self.walk(walk, &mut |v| {
            frames += 1;
            events += u64::from(v.frame.header.record_count);
            frame_list.push((v.frame.header.base_seq, v.segment, v.frame.offset));
            Ok(ControlFlow::Continue(()))
        })?;
        report.segments = walked.segments.len() as u64;
        report.reserved_bytes = walked.segments.iter().map(|s| s.reserved_bytes).sum();
        report.frames = frames;
        report.events = events;
        report.last_seq = walked.next_seq - 1;
        report.entities = walked.index.as_ref().map_or(0, |i| i.entities.len() as u64);
        report.problems.extend(walked.problems);
        let last_seq_seen = walked.segments.iter().filter(|s| s.records > 0).map(|s| s.next_seq - 1).max().unwrap_or(0);
        let log = LogFacts { last_seq: report.last_seq, last_seq_seen, index: walked.index.as_ref(), frames: &frame_list };
        for (seq, name) in &self.listing.checkpoints {
            match self.check_checkpoint(*seq, name, &log)? {
                Some(Ok(problem)) => report.problems.push(problem),
                Some(Err(note)) => report.notes.push(note),
                None => {}
            }
        }
        for name in &self.listing.temporary {
            report.notes.push(format!("{}: a file left half-written by a crash; Store::open removes it", self.dir.join(name).display()));
        }
        for name in &self.listing.foreign {
            report.notes.push(format!("{}: not a strata file; ignored", self.dir.join(name).display()));
        }
        Ok(report)
    }

    /// Checks one checkpoint file: its own checks (header, CRCs, body), that it fits the log
    /// the way `Store::open` requires, and its index against the one rebuilt from the log.
    /// Gives a problem, or a note when damage in the log before its seq leaves nothing to
    /// compare it with.
    fn check_checkpoint(&self, seq: u64, name: &str, log: &LogFacts<'_>) -> Result<Option<std::result::Result<Problem, String>>> {
        let path = self.dir.join(name);
        let bytes = match self.storage.read_copy(&path) {
            Ok(b) => b,
            // Removed by the writer's rotation since the listing: nothing to check.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(&path, e)),
        };
        let problem = |offset: u64, reason: String| Ok(Some(Ok(Problem::new(&path, offset, reason))));
        let cp = match Checkpoint::decode(&bytes) {
            Ok(cp) => cp,
            Err((offset, reason)) => return problem(offset, reason),
        };
        if cp.seq != seq {
            return problem(16, format!("checkpoint covers seq {} but its file name says {seq}", cp.seq));
        }
        if cp.seq > log.last_seq_seen {
            return problem(16, format!("checkpoint covers the log up to seq {}, but the log ends at seq {}", cp.seq, log.last_seq_seen));
        }
        if cp.seq > log.last_seq {
            let note = format!("{}: covers seqs past the damage in the log; repair moves it aside", path.display());
            return Ok(Some(Err(note)));
        }
        if let Err((offset, reason)) = recovery::checkpoint_fits(&self.storage, &self.dir, &self.listing, &cp) {
            return problem(offset, format!("checkpoint does not fit the log: {reason}"));
        }
        match log.index_mismatch(&cp) {
            Some(reason) => problem(CHECKPOINT_HEADER_BYTES as u64, format!("checkpoint disagrees with the log: {reason}")),
            None => Ok(None),
        }
    }
}

/// What the walk learnt about the log, to check checkpoints against.
struct LogFacts<'a> {
    /// The last seq of the intact prefix.
    last_seq: u64,
    /// The last seq of any good frame, damage or not before it.
    last_seq_seen: u64,
    index: Option<&'a EntityIndex>,
    frames: &'a [(u64, usize, u64)],
}

impl LogFacts<'_> {
    /// The first way the checkpoint's frame index or entity index differs from the log's
    /// (the log's cut at the checkpoint's seq).
    fn index_mismatch(&self, cp: &Checkpoint) -> Option<String> {
        let covered: Vec<&(u64, usize, u64)> = self.frames.iter().filter(|(base, _, _)| *base <= cp.seq).collect();
        if covered.len() != cp.frames.len() {
            return Some(format!("it lists {} frames, the log has {} up to seq {}", cp.frames.len(), covered.len(), cp.seq));
        }
        for (f, (base, segment, offset)) in cp.frames.iter().zip(&covered) {
            if f.base_seq != *base || f.segment() != *segment || f.offset() != *offset {
                return Some(format!("its frame at seq {} is not where the log has it", f.base_seq));
            }
        }
        let index = self.index?;
        let in_log = index.entities.values().filter(|e| e.versions.first().is_some_and(|v| v.seq <= cp.seq)).count();
        if in_log != cp.entities.len() {
            return Some(format!("it holds {} entities, the log has {in_log} up to seq {}", cp.entities.len(), cp.seq));
        }
        for (id, e) in &cp.entities {
            let Some(log) = index.entities.get(id) else { return Some(format!("entity {id} is not in the log")) };
            let versions: Vec<_> = log.versions.iter().take_while(|v| v.seq <= cp.seq).copied().collect();
            if *log.kind != *e.kind || versions != e.versions {
                return Some(format!("entity {id} has other versions or another kind in the log"));
            }
        }
        None
    }
}
