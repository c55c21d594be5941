//! Tuning knobs for a store, with defaults chosen by measurement (see format-spec.md).

/// When an append is made durable.
///
/// ```
/// use strata::{Durability, Options};
/// let opts = Options { durability: Durability::Interval(5), ..Options::default() };
/// assert_eq!(opts.durability, Durability::Interval(5));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// `append` returns only after its data is on stable storage (fdatasync). Concurrent
    /// appenders share one fsync (group commit).
    Always,
    /// Appends return once written to the operating system; a background thread syncs every
    /// this many milliseconds. A crash can lose up to that window of acknowledged events.
    Interval(u64),
    /// Never sync on append (only when a segment is sealed and when the store is closed).
    /// For bulk loads and tests; a crash can lose anything since the last seal.
    Never,
}

/// What `Store::open` does with a damaged log.
///
/// ```
/// use strata::{Options, Recovery};
/// let opts = Options { recovery: Recovery::Strict, ..Options::default() };
/// assert_eq!(opts.recovery, Recovery::Strict);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recovery {
    /// A torn or unchecksummed frame at the very end of the last segment, with nothing valid
    /// after it, is what a crash mid-write leaves: it is cut off (and logged). Any other
    /// damage fails `open` with [`Error::Corruption`](crate::Error::Corruption).
    TolerateTornTail,
    /// Any damage, even a torn tail, fails `open` with `Error::Corruption`.
    Strict,
    /// Keep every event before the first bad frame; everything from it on is moved aside into
    /// a `*.salvaged` file next to the segment (never deleted) and the store opens.
    SalvagePrefix,
}

/// Options for [`Store::open`](crate::Store::open).
///
/// ```
/// use strata::Options;
/// let opts = Options { segment_size_bytes: 8 << 20, ..Options::default() };
/// assert_eq!(opts.max_event_bytes, 4 << 20);
/// ```
#[derive(Debug, Clone)]
pub struct Options {
    /// When appends are made durable. Default: [`Durability::Always`].
    pub durability: Durability,
    /// What open does with a damaged log. Default: [`Recovery::TolerateTornTail`].
    pub recovery: Recovery,
    /// A segment is sealed and a new one started once it reaches this size. Default: 64 MiB.
    pub segment_size_bytes: u64,
    /// The largest encoded event accepted, in bytes. Default: 4 MiB (at most 64 MiB).
    pub max_event_bytes: usize,
    /// zstd compression level for frames. Default: 3.
    pub compression_level: i32,
    /// Train a zstd dictionary from the first events so that small commits compress well.
    /// Default: true.
    pub train_dictionary: bool,
    /// Keep a snapshot of an entity's state every this many versions so that a read as of
    /// any past time replays fewer than this many events. Smaller is faster to read
    /// and costs more memory (one state per K versions). Default: 4 (see format-spec.md).
    pub snapshot_every_versions: u64,
    /// Write a checkpoint after this many events since the last one (0: never by count).
    /// Default: 1,000,000.
    pub checkpoint_every_events: u64,
    /// Write a checkpoint after this many log bytes since the last one (0: never by size).
    /// Default: 256 MiB.
    pub checkpoint_every_bytes: u64,
    /// How many checkpoint files to keep; older ones are removed once a newer one is
    /// durable. Default: 2.
    pub checkpoints_kept: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            durability: Durability::Always,
            recovery: Recovery::TolerateTornTail,
            segment_size_bytes: 64 << 20,
            max_event_bytes: 4 << 20,
            compression_level: 3,
            train_dictionary: true,
            snapshot_every_versions: 4,
            checkpoint_every_events: 1_000_000,
            checkpoint_every_bytes: 256 << 20,
            checkpoints_kept: 2,
        }
    }
}
