//! Read-only inspection of a store directory: the library side of the `strata-dump` tool.
//!
//! Everything here reads the store's files through the parsers that recovery and reads use
//! (segment headers and trailers, `FrameScan`, frame and chunk decoding, the record codec
//! and the entity index's consistency checks), so the format is parsed in one place; this
//! module only decides what to walk and what to report.
//!
//! Invariants:
//! - Nothing here takes the writer lock or writes a byte, except [`repair`], which takes the
//!   lock (so it never runs beside a live writer) and reuses recovery's cut.
//! - It works while another process appends. Each segment is read as it is at that moment,
//!   one segment at a time, into memory of its own ([`Storage::read_copy`]; the follower
//!   reads only what follows the frames it has handed over, [`Storage::read_copy_at`]). A
//!   partial frame at the end of the newest segment is a write in flight: the read commands
//!   treat it as "not yet committed" and stop there quietly; [`Inspector::verify`] reports
//!   it as a torn tail only if the bytes from it on are unchanged on a second look
//!   [`TORN_TAIL_RECHECK_MS`] later (a writer finishes a frame in one write call, far faster
//!   than that).
//! - It maps no file (only [`repair`], which holds the writer lock, reads through recovery's
//!   maps). The newest segment of a live store changes under its readers: the writer
//!   overwrites the zeros of its reserved space with frames, and cuts the reserved space off
//!   with a truncation when it seals the segment and when the store closes. A map of a file
//!   truncated underneath raises SIGBUS on access past the new end, killing the reader, and
//!   bytes changing under a mapped slice break the contract of `os::map_read_only`. A copy
//!   is the file as the read found it, and nothing the writer does afterwards touches it.
//! - A read racing a write may see part of it. The part the write had reached is a partial
//!   frame, a write in flight as above. But a write can also overtake the read (neither
//!   waits for the other), which then sees the write's later frames and misses its earlier
//!   bytes: a bad frame followed by a good one, damage by recovery's rule. So damage in the
//!   newest segment is believed only when the next read shows the same bytes there
//!   (`live_read`); a write moves on and never comes back to a page it has passed.
//! - Older segments are copied too, although a segment that is not the newest of a listing
//!   was sealed (trailer written, reserved space cut, synced) before the next one was
//!   created, and no longer changes under a live writer. But the inspector takes no lock, so
//!   nothing stops `Store::open` with `Recovery::SalvagePrefix` or [`repair`] in another
//!   process from truncating a damaged segment anywhere in the log while it reads it (and
//!   damage is when `verify` gets run); an [`Inspector`] may outlive its listing by far; and
//!   [`Inspector::frame`] reads any file it is given. One rule for every file is easier to
//!   keep than a list of the files that are safe to map. The copy costs a `memcpy` from the
//!   page cache, and no more memory at a time than the newest segment's copy needs anyway:
//!   walks hold one segment at a time, and the follower only its segment's unread tail.
//!
//! ```
//! use strata::inspect::Inspector;
//! use strata::{EventQuery, NewEvent, Options, Store};
//! use serde_json::json;
//!
//! let dir = tempfile::tempdir()?;
//! let store = Store::open(dir.path(), Options::default())?;
//! store.append(NewEvent::create("Contact", "c1", json!({"name": "Alice"})))?;
//! // No need to close the store: inspection never takes the writer lock.
//! let inspector = Inspector::open(dir.path())?;
//! assert!(inspector.verify(None)?.is_clean());
//! let mut seen = Vec::new();
//! inspector.events(&EventQuery::new(), None, &mut |ev| {
//!     seen.push(ev.event_type);
//!     Ok(std::ops::ControlFlow::Continue(()))
//! })?;
//! assert_eq!(seen, ["Contact.Created"]);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod follow;
mod frame_dump;
mod live_read;
mod repair;
mod stats;
mod verify;
mod walk;

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::dictionary::{self, Dictionaries};
use crate::error::{Error, Result};
use crate::recovery::{self, Listing};
use crate::storage::{FsStorage, Storage};

pub use follow::Follower;
pub use frame_dump::{ChunkFields, FrameDump, FrameFields, FrameLocator};
pub use repair::{CutPiece, RepairReport, repair};
pub use stats::{CheckpointInfo, DeepEntity, Stats};
pub use verify::{TORN_TAIL_RECHECK_MS, VerifyReport};
pub use walk::{AsOf, Progress, SegmentState, SegmentSummary};

/// One problem found in a store file: which file, where, and what check failed.
///
/// ```
/// use strata::inspect::Problem;
/// let p = Problem { file: "s/00000000000000000001.seg".into(), offset: 64, reason: "frame CRC mismatch".into(), torn_tail: false };
/// assert_eq!(p.to_string(), "s/00000000000000000001.seg: offset 64: frame CRC mismatch");
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The damaged file.
    pub file: PathBuf,
    /// The byte offset in that file where the damage starts.
    pub offset: u64,
    /// What check failed.
    pub reason: String,
    /// True for a torn tail: a partial frame at the very end of the newest segment with
    /// nothing valid after it, what a crash mid-write leaves (`Store::open` cuts it).
    pub torn_tail: bool,
}

impl Problem {
    pub(crate) fn new(file: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Problem { file: file.into(), offset, reason: reason.into(), torn_tail: false }
    }

    pub(crate) fn into_error(self) -> Error {
        Error::corruption(self.file, self.offset, self.reason)
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let torn = if self.torn_tail { "torn tail: " } else { "" };
        write!(f, "{}: offset {}: {torn}{}", self.file.display(), self.offset, self.reason)
    }
}

/// The files of a store directory, by role, in seq (or id) order.
///
/// ```
/// use strata::{NewEvent, Options, Store};
/// let dir = tempfile::tempdir()?;
/// Store::open(dir.path(), Options::default())?.append(NewEvent::create("K", "e", serde_json::json!({})))?;
/// let files = strata::inspect::Inspector::open(dir.path())?.files();
/// assert_eq!(files.segments.len(), 1);
/// assert!(files.checkpoints.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoreFiles {
    /// Segment files (`{base_seq:020}.seg`).
    pub segments: Vec<PathBuf>,
    /// zstd dictionary files (`dict-{id:010}.zdict`).
    pub dictionaries: Vec<PathBuf>,
    /// Checkpoint files (`checkpoint-{seq:020}.ckpt`).
    pub checkpoints: Vec<PathBuf>,
    /// Files being written (`*.tmp`); `Store::open` removes them.
    pub temporary: Vec<PathBuf>,
    /// Files that are not strata's.
    pub other: Vec<PathBuf>,
}

/// A read-only view of one store directory. Opening it lists the files and loads the
/// dictionaries; it takes no lock and never writes.
///
/// ```
/// use strata::inspect::Inspector;
/// let dir = tempfile::tempdir()?;
/// // An empty directory is not a store.
/// assert!(matches!(Inspector::open(dir.path()), Err(strata::Error::NotAStore { .. })));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Inspector {
    dir: PathBuf,
    storage: Arc<dyn Storage>,
    listing: Listing,
    dicts: Dictionaries,
    /// Dictionary files that failed their checks (reported by `verify`).
    dictionary_problems: Vec<Problem>,
}

impl fmt::Debug for Inspector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inspector").field("dir", &self.dir).field("segments", &self.listing.segments.len()).finish()
    }
}

impl Inspector {
    /// Opens the store in `dir` for inspection: [`Error::NotAStore`] when it holds no
    /// segment files or none of them carries strata's magic number, [`Error::Io`] when it
    /// cannot be listed.
    ///
    /// ```
    /// use strata::{NewEvent, Options, Store};
    /// let dir = tempfile::tempdir()?;
    /// let _writer = Store::open(dir.path(), Options::default())?;
    /// let inspector = strata::inspect::Inspector::open(dir.path())?;
    /// assert_eq!(inspector.dir(), dir.path());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(dir: impl AsRef<Path>) -> Result<Inspector> {
        Self::open_with_storage(dir, Arc::new(FsStorage))
    }

    /// Opens the store in `dir` through another [`Storage`].
    ///
    /// ```
    /// use std::sync::Arc;
    /// let dir = tempfile::tempdir()?;
    /// drop(strata::Store::open(dir.path(), strata::Options::default())?);
    /// let inspector = strata::inspect::Inspector::open_with_storage(dir.path(), Arc::new(strata::FsStorage))?;
    /// assert_eq!(inspector.files().segments.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_with_storage(dir: impl AsRef<Path>, storage: Arc<dyn Storage>) -> Result<Inspector> {
        let dir = dir.as_ref().to_path_buf();
        let listing = recovery::list(storage.as_ref(), &dir)?;
        check_is_store(storage.as_ref(), &dir, &listing)?;
        let dicts = Dictionaries::default();
        let mut dictionary_problems = Vec::new();
        for (id, name) in &listing.dictionaries {
            match recovery::load_dictionary(storage.as_ref(), &dir, *id, name) {
                Ok(bytes) => dicts.insert(*id, bytes),
                Err(Error::Corruption { path, offset, reason }) => dictionary_problems.push(Problem::new(path, offset, reason)),
                Err(e) => return Err(e),
            }
        }
        Ok(Inspector { dir, storage, listing, dicts, dictionary_problems })
    }

    /// The store directory.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// drop(strata::Store::open(dir.path(), strata::Options::default())?);
    /// assert_eq!(strata::inspect::Inspector::open(dir.path())?.dir(), dir.path());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The store's files by role, as listed when the inspector was opened.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// drop(strata::Store::open(dir.path(), strata::Options::default())?);
    /// std::fs::write(dir.path().join("notes.txt"), "hello")?;
    /// let files = strata::inspect::Inspector::open(dir.path())?.files();
    /// assert_eq!(files.other, [dir.path().join("notes.txt")]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn files(&self) -> StoreFiles {
        let paths = |names: &mut dyn Iterator<Item = &String>| names.map(|n| self.dir.join(n)).collect();
        StoreFiles {
            segments: paths(&mut self.listing.segments.iter().map(|(_, n)| n)),
            dictionaries: paths(&mut self.listing.dictionaries.iter().map(|(_, n)| n)),
            checkpoints: paths(&mut self.listing.checkpoints.iter().map(|(_, n)| n)),
            temporary: paths(&mut self.listing.temporary.iter()),
            other: paths(&mut self.listing.foreign.iter()),
        }
    }

    /// Makes sure dictionary `id` is loaded: a writer may have trained it after the
    /// inspector was opened (it is always on disk before the first frame that uses it).
    fn ensure_dictionary(&self, id: u32) {
        if id == 0 || self.dicts.bytes(id).is_some() {
            return;
        }
        if let Ok(bytes) = recovery::load_dictionary(self.storage.as_ref(), &self.dir, id, &dictionary::dict_file_name(id)) {
            self.dicts.insert(id, bytes);
        }
    }
}

/// A directory without segment files is not a store for inspection (`Store::open` would
/// create one in an empty directory); otherwise the store test is recovery's.
fn check_is_store(storage: &dyn Storage, dir: &Path, listing: &Listing) -> Result<()> {
    if !listing.segments.is_empty() {
        return recovery::check_is_store(storage, dir, listing);
    }
    let reason = match listing.foreign.is_empty() {
        true => "it holds no strata segment files".to_string(),
        false => format!("it holds no strata segment files, only {}", listing.foreign.join(", ")),
    };
    Err(Error::NotAStore { path: dir.to_path_buf(), reason })
}
