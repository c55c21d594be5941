//! The one error type of the crate.
//!
//! Every variant carries what a caller needs to act on it: the file and byte offset of
//! corruption, the entity and versions of a conflict, the reason an undo was refused.

use std::path::PathBuf;

/// The result type of every fallible strata call.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in strata.
///
/// ```
/// use strata::Error;
/// let err = Error::VersionConflict { entity: "contact_1".into(), expected: 1, actual: 2 };
/// assert_eq!(err.to_string(), "version conflict on contact_1: expected version 1, found 2");
/// ```
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system I/O call failed; `path` names the file or directory involved.
    #[error("I/O error on {path}: {source}")]
    Io {
        /// The file or directory the call was about.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// Another process (or another `Store` in this process) holds the store's writer lock.
    #[error("store {path} is locked by another writer")]
    Locked {
        /// The store directory.
        path: PathBuf,
    },
    /// A file of the store failed a check: a bad checksum, an impossible length, a broken
    /// sequence. Nothing from the damaged region is returned as data.
    #[error("corruption in {path} at offset {offset}: {reason}")]
    Corruption {
        /// The damaged file.
        path: PathBuf,
        /// The byte offset in that file where the damage was found.
        offset: u64,
        /// What check failed.
        reason: String,
    },
    /// The directory is not a strata store (its files do not carry strata's magic numbers).
    #[error("{path} is not a strata store: {reason}")]
    NotAStore {
        /// The directory or file that was expected to belong to a store.
        path: PathBuf,
        /// Why it was not recognised.
        reason: String,
    },
    /// The store was written by a newer strata with a format this version cannot read.
    #[error("{path} has format version {found}; this strata reads up to {supported}")]
    UnsupportedVersion {
        /// The file carrying the version.
        path: PathBuf,
        /// The version found on disk.
        found: u32,
        /// The newest version this build understands.
        supported: u32,
    },
    /// An earlier write or fsync failed, so the state of the log on disk is unknown; the
    /// store refuses further appends. Drop it and open it again to recover: open re-syncs
    /// every segment before appending. After a storage I/O error the kernel may already
    /// have dropped unsynced pages (format-spec.md, section 10), so a machine restart
    /// before reopening is the only sure recovery.
    #[error("the writer is poisoned by an earlier I/O failure ({cause}); reopen the store")]
    Poisoned {
        /// The failure that poisoned the writer.
        cause: String,
    },
    /// An append named an expected version that is not the entity's current version.
    #[error("version conflict on {entity}: expected version {expected}, found {actual}")]
    VersionConflict {
        /// The entity the append was for.
        entity: String,
        /// The version the caller expected.
        expected: u64,
        /// The entity's actual current version (0 when it does not exist).
        actual: u64,
    },
    /// The entity named by an update, delete, restore or rollback does not exist.
    #[error("entity {entity} does not exist")]
    NotFound {
        /// The entity id.
        entity: String,
    },
    /// A create named an entity that already exists.
    #[error("entity {entity} already exists (kind {kind}, version {version})")]
    AlreadyExists {
        /// The entity id.
        entity: String,
        /// The existing entity's kind.
        kind: String,
        /// The existing entity's current version.
        version: u64,
    },
    /// A caller-supplied value is malformed: an id, kind, verb, timestamp, data or query.
    #[error("invalid {what}: {reason}")]
    InvalidInput {
        /// Which input was rejected (`entity id`, `kind`, `data`, ...).
        what: &'static str,
        /// Why it was rejected.
        reason: String,
    },
    /// A caller-supplied timestamp is not later than the last timestamp in the log.
    #[error("timestamp {given} is not later than the last timestamp in the log ({last})")]
    TimestampRegression {
        /// The supplied timestamp (RFC 3339).
        given: String,
        /// The newest timestamp already in the log (RFC 3339).
        last: String,
    },
    /// An event is larger than `Options::max_event_bytes`.
    #[error("event for {entity} is {size} bytes encoded, over the limit of {limit}")]
    TooLarge {
        /// The entity the event was for.
        entity: String,
        /// The encoded size of the event.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// An undo, redo or batch undo cannot proceed; the reason says exactly why.
    #[error("cannot undo: {reason}")]
    CannotUndo {
        /// Why the undo was refused.
        reason: String,
    },
    /// A before-append validator rejected an event; nothing of its batch was written.
    #[error("rejected {event_type} on {entity}: {reason}")]
    Rejected {
        /// The entity the rejected event was for.
        entity: String,
        /// The rejected event's type.
        event_type: String,
        /// The validator's reason.
        reason: String,
    },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }

    /// A corruption error for `path` at `offset`.
    pub(crate) fn corruption(path: impl Into<PathBuf>, offset: u64, reason: impl Into<String>) -> Self {
        Error::Corruption { path: path.into(), offset, reason: reason.into() }
    }

    /// An invalid-input error.
    pub(crate) fn invalid(what: &'static str, reason: impl Into<String>) -> Self {
        Error::InvalidInput { what, reason: reason.into() }
    }
}
