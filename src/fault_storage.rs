//! A testing tool: an in-memory [`Storage`] that loses un-synced data in a simulated power
//! loss and fails chosen I/O operations on purpose. strata's crash, bit-flip and I/O-error
//! tests run the real engine on it; it is not meant for storing data.
//!
//! The durability model and the faults are described on [`FaultStorage`].

use std::any::Any;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use parking_lot::Mutex;

use crate::storage::{Storage, StorageFile};

/// A kind of storage operation, for counting and for [`FaultStorage::fail`].
///
/// ```
/// use strata::FaultOp;
/// assert!(FaultOp::SyncData.is_mutation());
/// assert!(!FaultOp::Read.is_mutation());
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FaultOp {
    /// `create_dir_all`.
    CreateDir,
    /// `list_dir`.
    List,
    /// `open` of an existing file.
    Open,
    /// `create_new`.
    Create,
    /// `read_all`, `read_copy`, `read_copy_at`, `file_len` (and `read_exact_at`).
    Read,
    /// `append` (a write at the end of a file).
    Append,
    /// `write_at` (a positioned write).
    WriteAt,
    /// `allocate` (space reserved at the end of a file).
    Allocate,
    /// `sync_data` (fsync of a file's data).
    SyncData,
    /// `set_len` (truncation).
    SetLen,
    /// `rename`.
    Rename,
    /// `remove_file`.
    Remove,
    /// `sync_dir` (fsync of a directory).
    SyncDir,
    /// `try_lock`.
    Lock,
}

impl FaultOp {
    /// Every kind, in declaration order.
    ///
    /// ```
    /// assert_eq!(strata::FaultOp::ALL.len(), 14);
    /// ```
    pub const ALL: [FaultOp; 14] = [
        FaultOp::CreateDir,
        FaultOp::List,
        FaultOp::Open,
        FaultOp::Create,
        FaultOp::Read,
        FaultOp::Append,
        FaultOp::WriteAt,
        FaultOp::Allocate,
        FaultOp::SyncData,
        FaultOp::SetLen,
        FaultOp::Rename,
        FaultOp::Remove,
        FaultOp::SyncDir,
        FaultOp::Lock,
    ];

    /// Whether the operation changes what is stored (these are the operations counted by
    /// [`FaultStorage::mutations`] and [`FaultStorage::cut_power_after`]).
    ///
    /// ```
    /// assert!(strata::FaultOp::Rename.is_mutation());
    /// ```
    pub fn is_mutation(self) -> bool {
        matches!(
            self,
            FaultOp::Create
                | FaultOp::Append
                | FaultOp::WriteAt
                | FaultOp::Allocate
                | FaultOp::SyncData
                | FaultOp::SetLen
                | FaultOp::Rename
                | FaultOp::Remove
                | FaultOp::SyncDir
        )
    }
}

/// Whether an injected fault fires once or keeps firing.
///
/// ```
/// use strata::{FaultMode, FaultOp, FaultStorage};
/// let storage = FaultStorage::new(1);
/// storage.fail(FaultOp::SyncData, 2, FaultMode::Persistent);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultMode {
    /// Only the k-th operation fails.
    Once,
    /// The k-th operation and every later one of its kind fail.
    Persistent,
}

/// One file's content: what reads see, and what would survive a crash.
#[derive(Debug, Clone, Default)]
struct FileData {
    current: Arc<Vec<u8>>,
    durable: Arc<Vec<u8>>,
    /// `current[..stable_len]` is durable and cannot change in a crash: the lowest offset an
    /// un-synced write (append, positioned write) or truncation has touched. Reserving space
    /// (`allocate`) touches nothing below the old end.
    stable_len: usize,
    /// The end of the highest un-synced write (0 when none): a crash keeps un-synced writes
    /// up to some offset in `[stable_len, written_end]`.
    written_end: usize,
}

impl FileData {
    fn is_synced(&self) -> bool {
        Arc::ptr_eq(&self.current, &self.durable) || self.current == self.durable
    }

    fn sync(&mut self) {
        self.durable = self.current.clone();
        self.stable_len = self.current.len();
        self.written_end = 0;
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FaultRule {
    op: FaultOp,
    nth: u64,
    mode: FaultMode,
}

/// A small deterministic generator (SplitMix64): the crash outcomes and torn writes of a
/// seed are the same on every run.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[low, high]` (inclusive).
    fn between(&mut self, low: usize, high: usize) -> usize {
        if high <= low {
            return low;
        }
        low + (self.next() % (high - low + 1) as u64) as usize
    }
}

#[derive(Debug, Clone)]
struct State {
    dirs: BTreeSet<PathBuf>,
    /// The namespace as reads see it: path to inode.
    entries: BTreeMap<PathBuf, u64>,
    /// The namespace as a crash would leave it.
    durable_entries: BTreeMap<PathBuf, u64>,
    files: HashMap<u64, FileData>,
    next_inode: u64,
    /// Bumped by every crash: handles and lock guards from before it stop working.
    generation: u64,
    locks: HashMap<PathBuf, u64>,
    next_lock_token: u64,
    counts: BTreeMap<FaultOp, u64>,
    mutations: u64,
    power_cut_after: Option<u64>,
    power_off: bool,
    faults: Vec<FaultRule>,
    rng: Rng,
}

/// Why an operation was refused.
enum Refusal {
    /// An injected fault: the operation may have partly happened (a torn append).
    Injected(io::Error),
    /// Power is off or the handle is stale: nothing happens.
    Dead(io::Error),
}

impl Refusal {
    fn into_error(self) -> io::Error {
        match self {
            Refusal::Injected(e) | Refusal::Dead(e) => e,
        }
    }
}

impl State {
    /// Counts `op` and decides whether it may proceed.
    fn begin(&mut self, op: FaultOp, path: &Path, generation: Option<u64>) -> Result<(), Refusal> {
        if generation.is_some_and(|g| g != self.generation) {
            return Err(Refusal::Dead(io::Error::other(format!("{op:?} on {}: handle from before a crash", path.display()))));
        }
        if self.power_off {
            return Err(Refusal::Dead(io::Error::other(format!("{op:?} on {}: power lost", path.display()))));
        }
        let count = self.counts.entry(op).or_insert(0);
        *count += 1;
        let n = *count;
        let fires = |r: &FaultRule| r.op == op && (n == r.nth || (r.mode == FaultMode::Persistent && n > r.nth));
        if self.faults.iter().any(fires) {
            return Err(Refusal::Injected(io::Error::other(format!("injected fault: {op:?} #{n} on {}", path.display()))));
        }
        if op.is_mutation() {
            if self.power_cut_after.is_some_and(|limit| self.mutations >= limit) {
                self.power_off = true;
                return Err(Refusal::Dead(io::Error::other(format!("{op:?} on {}: power lost", path.display()))));
            }
            self.mutations += 1;
        }
        Ok(())
    }

    fn inode(&self, path: &Path) -> io::Result<u64> {
        self.entries.get(path).copied().ok_or_else(|| not_found(path))
    }

    fn file_mut(&mut self, inode: u64) -> &mut FileData {
        self.files.entry(inode).or_default()
    }

    fn new_inode(&mut self) -> u64 {
        self.next_inode += 1;
        self.files.insert(self.next_inode, FileData::default());
        self.next_inode
    }

    fn check_parent(&self, path: &Path) -> io::Result<()> {
        match path.parent() {
            Some(parent) if !parent.as_os_str().is_empty() && !self.dirs.contains(parent) => Err(not_found(parent)),
            _ => Ok(()),
        }
    }

    /// The state after a power loss; `out_of_order` persists un-synced data page by page in
    /// any order ([`crash_file_pages`]) instead of as a prefix ([`crash_file`]).
    fn crash(&mut self, out_of_order: bool) -> String {
        let mut report = Vec::new();
        let names: BTreeSet<&PathBuf> = self.entries.keys().chain(self.durable_entries.keys()).collect();
        let reverted = names.into_iter().filter(|p| self.entries.get(*p) != self.durable_entries.get(*p)).count();
        if reverted > 0 {
            report.push(format!("{reverted} un-synced directory entries reverted"));
        }
        self.entries = self.durable_entries.clone();
        let live: BTreeSet<u64> = self.entries.values().copied().collect();
        self.files.retain(|inode, _| live.contains(inode));
        let mut inodes: Vec<u64> = live.into_iter().collect();
        inodes.sort_unstable();
        for inode in inodes {
            let name = self.entries.iter().find(|(_, i)| **i == inode).map(|(p, _)| p.display().to_string()).unwrap_or_default();
            let Some(mut file) = self.files.remove(&inode) else { continue };
            if !file.is_synced() {
                let what = if out_of_order { crash_file_pages(&mut file, &mut self.rng) } else { crash_file(&mut file, &mut self.rng) };
                report.push(format!("{name}: {what}"));
            }
            file.sync();
            self.files.insert(inode, file);
        }
        self.generation += 1;
        self.locks.clear();
        self.power_off = false;
        self.power_cut_after = None;
        if report.is_empty() { "nothing un-synced".into() } else { report.join("; ") }
    }
}

/// Decides what of one file's un-synced data survives a crash.
///
/// The un-synced writes cover `[stable_len, written_end)`: a crash keeps them up to some
/// offset in that range (then, maybe, garbage), and past that the file holds what it
/// durably held. Its length: where space was reserved past the writes, either the new length
/// (the reservation survived) or the durable one; where a truncation is un-synced, either.
fn crash_file(file: &mut FileData, rng: &mut Rng) -> String {
    let current = file.current.as_slice();
    let durable = file.durable.as_slice();
    let stable = file.stable_len.min(current.len());
    let written_end = file.written_end.clamp(stable, current.len());
    let choice = rng.next() % 3;
    if choice == 0 {
        file.current = file.durable.clone();
        return "un-synced data dropped".into();
    }
    let keep = rng.between(stable, written_end);
    let mut bytes = current[..keep].to_vec();
    let mut what = format!("un-synced writes kept up to {keep} (of {stable}..{written_end})");
    if choice == 2 && written_end > keep {
        let garbage = rng.between(1, written_end - keep);
        let zeros = rng.next().is_multiple_of(2);
        bytes.extend((0..garbage).map(|_| if zeros { 0 } else { rng.next() as u8 }));
        what.push_str(&format!(" then {garbage} bytes of {}", if zeros { "zeros" } else { "random bytes" }));
    }
    let end = bytes.len();
    let len = if current.len() > written_end {
        // Space reserved past the writes: it survives whole, or the file keeps its durable length.
        if rng.next().is_multiple_of(2) { current.len() } else { durable.len().max(end) }
    } else if durable.len() > end && rng.next().is_multiple_of(2) {
        durable.len() // an un-synced truncation that did not reach the disk
    } else {
        end
    };
    // Past the kept writes, the file holds what it durably held there, else zeros.
    if len > end {
        bytes.extend_from_slice(durable.get(end..len).unwrap_or_default());
        bytes.resize(len, 0);
    }
    if len != end {
        what.push_str(&format!(", length {len}"));
    }
    file.current = Arc::new(bytes);
    what
}

/// The size of a page for [`crash_file_pages`]: the unit a disk persists as a whole.
const PAGE_BYTES: usize = 4096;

/// Decides what of one file's un-synced data survives a crash when the disk persists pages in
/// any order (out-of-order writeback): each page that an un-synced write touched holds, at
/// random, its new content or what it durably held (zeros past the durable end). The length
/// is the new one or, where that is shorter (an un-synced truncation), either.
fn crash_file_pages(file: &mut FileData, rng: &mut Rng) -> String {
    let current = file.current.as_slice();
    let durable = file.durable.as_slice();
    let stable = file.stable_len.min(current.len());
    let written_end = file.written_end.clamp(stable, current.len());
    let len = if durable.len() > current.len() && rng.next().is_multiple_of(2) { durable.len() } else { current.len() };
    let mut bytes: Vec<u8> = (0..len).map(|i| if i < current.len() { current[i] } else { durable[i] }).collect();
    let (mut kept, mut lost) = (0, 0);
    let mut page = stable / PAGE_BYTES * PAGE_BYTES;
    while page < written_end.min(len) {
        let end = (page + PAGE_BYTES).min(len);
        // Bytes below `stable` are durable and the same in both versions.
        if rng.next().is_multiple_of(2) {
            kept += 1;
        } else {
            lost += 1;
            for (i, b) in bytes[page..end].iter_mut().enumerate() {
                *b = durable.get(page + i).copied().unwrap_or(0);
            }
        }
        page = end;
    }
    file.current = Arc::new(bytes);
    format!("out of order: {kept} un-synced pages kept, {lost} lost (of {stable}..{written_end}), length {len}")
}

/// Writes `data` at `start` of a file's current content (zero-filling any gap) and records
/// that bytes from `start` on are no longer stable.
fn write_into(file: &mut FileData, start: usize, data: &[u8]) {
    let current = Arc::make_mut(&mut file.current);
    let end = start + data.len();
    if current.len() < end {
        current.resize(end, 0);
    }
    current[start..end].copy_from_slice(data);
    file.stable_len = file.stable_len.min(start);
    file.written_end = file.written_end.max(end);
}

fn not_found(path: &Path) -> io::Error {
    io::Error::new(io::ErrorKind::NotFound, format!("{} does not exist", path.display()))
}

type MutationHook = Arc<dyn Fn(u64) + Send + Sync>;

struct Inner {
    state: Mutex<State>,
    hook: Mutex<Option<MutationHook>>,
}

/// A testing tool: an in-memory [`Storage`] that loses un-synced data in a simulated power
/// loss and fails chosen I/O operations on purpose (strata's crash, bit-flip and I/O-error
/// tests run on it; it is not for storing data). Cloning it is cheap and shares the same
/// files; [`fork`](FaultStorage::fork) makes an independent copy.
///
/// The durability model follows POSIX, pessimistically:
/// - every file has *current* content (what reads see) and *durable* content (what survives a
///   crash); `sync_data` makes the current content durable;
/// - creating, renaming and removing a file changes the directory at once, but the change
///   survives a crash only after `sync_dir` on its directory; directories themselves
///   (`create_dir_all`) are durable at once;
/// - [`FaultStorage::crash`] is a power loss: every un-synced directory operation is lost (a
///   created file disappears, a rename reverts, a removed file comes back) and each file's
///   un-synced data is, by a seeded random choice, dropped whole, kept up to some offset, or
///   kept up to some offset followed by garbage (random bytes or zeros); past that, the file
///   holds what it durably held before (for a positioned write into reserved space, the
///   reserved zeros), or ends. Bytes below the lowest offset an un-synced write or truncation
///   touched are never changed. Space reserved with `allocate` and not yet synced may survive
///   whole, in part or not at all.
///
/// Faults: [`FaultStorage::fail`] makes the k-th operation of a kind fail, once or from then
/// on; [`FaultStorage::cut_power_after`] makes every operation after the k-th mutation fail,
/// as if the machine stopped there. A failed append or positioned write may have written part
/// of its data, a failed `allocate` reserves nothing; a
/// failed `sync_data` makes nothing durable, and the data stays readable until a crash (as
/// Linux keeps it in the page cache). Operations are counted per kind so that a test can run
/// a workload once, read the counts, and enumerate every k.
///
/// ```
/// use std::sync::Arc;
/// use serde_json::json;
/// use strata::{FaultStorage, NewEvent, Options, Store};
///
/// let storage = FaultStorage::new(7);
/// let store = Store::open_with_storage("/db", Options::default(), Arc::new(storage.clone()))?;
/// store.append(NewEvent::create("Contact", "c1", json!({"name": "Alice"})))?;
/// drop(store);
/// storage.crash();
/// let store = Store::open_with_storage("/db", Options::default(), Arc::new(storage.clone()))?;
/// assert_eq!(store.get("c1")?.unwrap().state["name"], "Alice");
/// # Ok::<(), strata::Error>(())
/// ```
///
/// ```
/// use std::sync::Arc;
/// use serde_json::json;
/// use strata::{Error, FaultMode, FaultOp, FaultStorage, NewEvent, Options, Store};
///
/// let storage = FaultStorage::new(1);
/// let store = Store::open_with_storage("/db", Options::default(), Arc::new(storage.clone()))?;
/// storage.fail(FaultOp::SyncData, storage.count(FaultOp::SyncData) + 1, FaultMode::Once);
/// assert!(store.append(NewEvent::create("Contact", "c1", json!({}))).is_err());
/// assert!(matches!(store.append(NewEvent::create("Contact", "c2", json!({}))), Err(Error::Poisoned { .. })));
/// # Ok::<(), strata::Error>(())
/// ```
pub struct FaultStorage {
    inner: Arc<Inner>,
    /// The crash generation this handle was made in: after a crash, the `Storage` calls of
    /// handles made before it fail (the process that held them died), so a `Store` left open
    /// across a crash cannot write into the rebooted storage. Clone the storage again to
    /// use it after a crash.
    generation: u64,
}

impl Clone for FaultStorage {
    /// A handle to the same files, valid from the current crash generation on.
    fn clone(&self) -> Self {
        let generation = self.inner.state.lock().generation;
        FaultStorage { inner: self.inner.clone(), generation }
    }
}

impl fmt::Debug for FaultStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.inner.state.lock();
        f.debug_struct("FaultStorage").field("files", &st.entries.len()).field("mutations", &st.mutations).finish()
    }
}

impl FaultStorage {
    /// An empty storage whose random choices (crash outcomes, torn writes) follow `seed`.
    ///
    /// ```
    /// let storage = strata::FaultStorage::new(42);
    /// assert_eq!(storage.mutations(), 0);
    /// ```
    pub fn new(seed: u64) -> FaultStorage {
        let state = State {
            dirs: BTreeSet::new(),
            entries: BTreeMap::new(),
            durable_entries: BTreeMap::new(),
            files: HashMap::new(),
            next_inode: 0,
            generation: 0,
            locks: HashMap::new(),
            next_lock_token: 0,
            counts: BTreeMap::new(),
            mutations: 0,
            power_cut_after: None,
            power_off: false,
            faults: Vec::new(),
            rng: Rng(seed),
        };
        FaultStorage { inner: Arc::new(Inner { state: Mutex::new(state), hook: Mutex::new(None) }), generation: 0 }
    }

    /// An independent copy of the files, their durability state, the counters and the
    /// random generator, without faults, power cut, locks or hook. Cheap: file contents are
    /// shared until written.
    ///
    /// ```
    /// use strata::{FaultStorage, Storage};
    /// let a = FaultStorage::new(1);
    /// a.create_dir_all("/d".as_ref())?;
    /// let b = a.fork();
    /// b.create_new("/d/x".as_ref())?;
    /// assert!(a.paths().is_empty());
    /// assert_eq!(b.paths().len(), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn fork(&self) -> FaultStorage {
        let mut state = self.inner.state.lock().clone();
        state.faults.clear();
        state.power_cut_after = None;
        state.power_off = false;
        state.locks.clear();
        state.generation += 1;
        let generation = state.generation;
        FaultStorage { inner: Arc::new(Inner { state: Mutex::new(state), hook: Mutex::new(None) }), generation }
    }

    /// Reseeds the random generator behind crash outcomes and torn writes.
    ///
    /// ```
    /// let storage = strata::FaultStorage::new(1);
    /// storage.set_seed(2);
    /// ```
    pub fn set_seed(&self, seed: u64) {
        self.inner.state.lock().rng = Rng(seed);
    }

    /// Simulates a power loss and reboot (see [`FaultStorage`] for what survives), and
    /// returns a one-line description of what was lost. Afterwards the power is on, faults
    /// stay configured, every lock is released, and file handles, lock guards and clones of
    /// the storage from before the crash fail every `Storage` call (the process that held
    /// them is gone): clone the storage again and open the store again to go on.
    ///
    /// ```
    /// use strata::{FaultStorage, Storage};
    /// let storage = FaultStorage::new(3);
    /// storage.create_dir_all("/d".as_ref())?;
    /// let file = storage.create_new("/d/a".as_ref())?;
    /// file.append(b"hello")?;
    /// file.sync_data()?;
    /// storage.crash(); // the directory was never synced: the file is gone
    /// assert!(storage.paths().is_empty());
    /// assert!(storage.list_dir("/d".as_ref()).is_err()); // a handle from before the crash
    /// assert!(storage.clone().list_dir("/d".as_ref())?.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn crash(&self) -> String {
        self.inner.state.lock().crash(false)
    }

    /// A power loss on a disk that writes pages back in any order: like
    /// [`crash`](FaultStorage::crash), except that of each 4 KiB page an un-synced write
    /// touched, the new content or the durable one survives, at random, whatever the other
    /// pages do. A later page can so survive without an earlier one.
    ///
    /// ```
    /// use strata::{FaultStorage, Storage};
    /// let storage = FaultStorage::new(5);
    /// storage.create_dir_all("/d".as_ref())?;
    /// let file = storage.create_new("/d/a".as_ref())?;
    /// file.sync_data()?;
    /// storage.sync_dir("/d".as_ref())?;
    /// file.append(&[7u8; 3 * 4096])?; // never synced
    /// let mut outcomes = std::collections::BTreeSet::new();
    /// for seed in 0..32 {
    ///     let crashed = storage.fork();
    ///     crashed.set_seed(seed);
    ///     crashed.crash_out_of_order();
    ///     let bytes = crashed.file_bytes("/d/a".as_ref()).unwrap();
    ///     // Each page is whole: its new bytes or the durable ones (none: zeros).
    ///     let pages: Vec<bool> = bytes.chunks(4096).map(|p| p.iter().all(|&b| b == 7)).collect();
    ///     assert!(bytes.chunks(4096).zip(&pages).all(|(p, &kept)| kept || p.iter().all(|&b| b == 0)));
    ///     outcomes.insert(pages);
    /// }
    /// // Among them, a lost first page with a later page kept.
    /// assert!(outcomes.iter().any(|p| !p[0] && p[1..].iter().any(|&kept| kept)));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn crash_out_of_order(&self) -> String {
        self.inner.state.lock().crash(true)
    }

    /// Whether a crash now could lose or change anything (un-synced data or directory
    /// entries).
    ///
    /// ```
    /// let storage = strata::FaultStorage::new(1);
    /// assert!(!storage.has_unsynced());
    /// ```
    pub fn has_unsynced(&self) -> bool {
        let st = self.inner.state.lock();
        st.entries != st.durable_entries || st.files.values().any(|f| !f.is_synced())
    }

    /// Cuts the power after `mutations` mutating operations in all (counted by
    /// [`mutations`](FaultStorage::mutations)): every later operation of any kind fails until
    /// [`crash`](FaultStorage::crash).
    ///
    /// ```
    /// use strata::{FaultStorage, Storage};
    /// let storage = FaultStorage::new(1);
    /// storage.create_dir_all("/d".as_ref())?;
    /// storage.cut_power_after(0);
    /// assert!(storage.create_new("/d/a".as_ref()).is_err());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn cut_power_after(&self, mutations: u64) {
        self.inner.state.lock().power_cut_after = Some(mutations);
    }

    /// Makes the `nth` (1-based, counted as [`count`](FaultStorage::count) counts)
    /// operation of kind `op` fail, once or from then on. A failed append may have written a
    /// random prefix of its data, as a failed `write` may.
    ///
    /// ```
    /// use strata::{FaultMode, FaultOp, FaultStorage, Storage};
    /// let storage = FaultStorage::new(1);
    /// storage.create_dir_all("/d".as_ref())?;
    /// storage.fail(FaultOp::Create, 2, FaultMode::Once);
    /// assert!(storage.create_new("/d/a".as_ref()).is_ok());
    /// assert!(storage.create_new("/d/b".as_ref()).is_err());
    /// assert!(storage.create_new("/d/c".as_ref()).is_ok());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn fail(&self, op: FaultOp, nth: u64, mode: FaultMode) {
        self.inner.state.lock().faults.push(FaultRule { op, nth, mode });
    }

    /// Removes every injected fault (the power cut too).
    ///
    /// ```
    /// let storage = strata::FaultStorage::new(1);
    /// storage.fail(strata::FaultOp::Read, 1, strata::FaultMode::Persistent);
    /// storage.clear_faults();
    /// ```
    pub fn clear_faults(&self) {
        let mut st = self.inner.state.lock();
        st.faults.clear();
        st.power_cut_after = None;
    }

    /// How many operations of kind `op` were attempted since creation or the last
    /// [`reset_counts`](FaultStorage::reset_counts).
    ///
    /// ```
    /// use strata::{FaultOp, FaultStorage, Storage};
    /// let storage = FaultStorage::new(1);
    /// storage.create_dir_all("/d".as_ref())?;
    /// storage.list_dir("/d".as_ref())?;
    /// assert_eq!(storage.count(FaultOp::List), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn count(&self, op: FaultOp) -> u64 {
        self.inner.state.lock().counts.get(&op).copied().unwrap_or(0)
    }

    /// Zeroes every per-kind count and the mutation count.
    ///
    /// ```
    /// let storage = strata::FaultStorage::new(1);
    /// storage.reset_counts();
    /// assert_eq!(storage.mutations(), 0);
    /// ```
    pub fn reset_counts(&self) {
        let mut st = self.inner.state.lock();
        st.counts.clear();
        st.mutations = 0;
    }

    /// How many mutating operations (see [`FaultOp::is_mutation`]) have succeeded or been
    /// attempted past their fault checks.
    ///
    /// ```
    /// use strata::{FaultStorage, Storage};
    /// let storage = FaultStorage::new(1);
    /// storage.create_dir_all("/d".as_ref())?;
    /// storage.create_new("/d/a".as_ref())?;
    /// assert_eq!(storage.mutations(), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn mutations(&self) -> u64 {
        self.inner.state.lock().mutations
    }

    /// Calls `hook` with the mutation's number after every successful mutating operation,
    /// outside the storage's internal lock (so the hook may [`fork`](FaultStorage::fork) the
    /// storage to capture every intermediate state). `None` removes it.
    ///
    /// ```
    /// use std::sync::{Arc, Mutex};
    /// use strata::{FaultStorage, Storage};
    /// let storage = FaultStorage::new(1);
    /// let states = Arc::new(Mutex::new(Vec::new()));
    /// let (s, st) = (storage.clone(), states.clone());
    /// storage.set_mutation_hook(Some(Arc::new(move |_n| st.lock().unwrap().push(s.fork()))));
    /// storage.create_dir_all("/d".as_ref())?;
    /// storage.create_new("/d/a".as_ref())?;
    /// assert_eq!(states.lock().unwrap().len(), 1);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_mutation_hook(&self, hook: Option<Arc<dyn Fn(u64) + Send + Sync>>) {
        *self.inner.hook.lock() = hook;
    }

    /// Every file, sorted.
    ///
    /// ```
    /// assert!(strata::FaultStorage::new(1).paths().is_empty());
    /// ```
    pub fn paths(&self) -> Vec<PathBuf> {
        self.inner.state.lock().entries.keys().cloned().collect()
    }

    /// A file's current content.
    ///
    /// ```
    /// use strata::{FaultStorage, Storage};
    /// let storage = FaultStorage::new(1);
    /// storage.create_dir_all("/d".as_ref())?;
    /// storage.create_new("/d/a".as_ref())?.append(b"xy")?;
    /// assert_eq!(storage.file_bytes("/d/a".as_ref()), Some(b"xy".to_vec()));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let st = self.inner.state.lock();
        let inode = st.entries.get(path)?;
        st.files.get(inode).map(|f| f.current.as_ref().clone())
    }

    /// Replaces a file's content, durably, bypassing fault checks and counters: damage done
    /// "on disk" (bit rot, a truncated copy). An error if the file does not exist.
    ///
    /// ```
    /// use strata::{FaultStorage, Storage};
    /// let storage = FaultStorage::new(1);
    /// storage.create_dir_all("/d".as_ref())?;
    /// storage.create_new("/d/a".as_ref())?;
    /// storage.set_file_bytes("/d/a".as_ref(), b"zz".to_vec())?;
    /// assert_eq!(storage.file_bytes("/d/a".as_ref()), Some(b"zz".to_vec()));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn set_file_bytes(&self, path: &Path, bytes: Vec<u8>) -> io::Result<()> {
        let mut st = self.inner.state.lock();
        let inode = st.inode(path)?;
        let file = st.file_mut(inode);
        file.current = Arc::new(bytes);
        file.sync();
        Ok(())
    }

    /// Flips bit `bit` (0-7) of byte `offset` of a file, durably (see
    /// [`set_file_bytes`](FaultStorage::set_file_bytes)).
    ///
    /// ```
    /// use strata::{FaultStorage, Storage};
    /// let storage = FaultStorage::new(1);
    /// storage.create_dir_all("/d".as_ref())?;
    /// storage.create_new("/d/a".as_ref())?.append(&[0])?;
    /// storage.flip_bit("/d/a".as_ref(), 0, 3)?;
    /// assert_eq!(storage.file_bytes("/d/a".as_ref()), Some(vec![8]));
    /// # Ok::<(), std::io::Error>(())
    /// ```
    pub fn flip_bit(&self, path: &Path, offset: usize, bit: u8) -> io::Result<()> {
        let mut bytes = self.file_bytes(path).ok_or_else(|| not_found(path))?;
        let byte = bytes.get_mut(offset).ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "offset past the end"))?;
        *byte ^= 1 << (bit & 7);
        self.set_file_bytes(path, bytes)
    }

    /// Runs one counted, fault-checked operation on the state; calls the mutation hook
    /// afterwards when it was a successful mutation.
    fn run<T>(&self, op: FaultOp, path: &Path, generation: Option<u64>, body: impl FnOnce(&mut State) -> io::Result<T>) -> io::Result<T> {
        let (result, mutation) = {
            let mut st = self.inner.state.lock();
            st.begin(op, path, generation).map_err(Refusal::into_error)?;
            let result = body(&mut st);
            (result, st.mutations)
        };
        if op.is_mutation() && result.is_ok() {
            let hook = self.inner.hook.lock().clone();
            if let Some(hook) = hook {
                hook(mutation);
            }
        }
        result
    }

    /// A clone made while the state lock is held (`clone` takes the lock itself).
    fn clone_in(&self, st: &State) -> FaultStorage {
        FaultStorage { inner: self.inner.clone(), generation: st.generation }
    }

    fn handle(&self, st: &State, inode: u64, path: &Path) -> Arc<dyn StorageFile> {
        Arc::new(FaultFile { storage: self.clone_in(st), inode, generation: st.generation, path: path.to_path_buf() })
    }
}

impl Storage for FaultStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.run(FaultOp::CreateDir, dir, Some(self.generation), |st| {
            let mut at = Some(dir);
            while let Some(d) = at.filter(|d| !d.as_os_str().is_empty()) {
                if st.entries.contains_key(d) {
                    return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} is a file", d.display())));
                }
                st.dirs.insert(d.to_path_buf());
                at = d.parent();
            }
            Ok(())
        })
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        self.run(FaultOp::List, dir, Some(self.generation), |st| {
            if !st.dirs.contains(dir) {
                return Err(not_found(dir));
            }
            let children = st.entries.keys().chain(st.dirs.iter()).filter(|p| p.parent() == Some(dir));
            let mut names: Vec<String> = children.filter_map(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned()).collect();
            names.sort();
            Ok(names)
        })
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        self.run(FaultOp::Open, path, Some(self.generation), |st| {
            let inode = st.inode(path)?;
            Ok(self.handle(st, inode, path))
        })
    }

    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        self.run(FaultOp::Create, path, Some(self.generation), |st| {
            st.check_parent(path)?;
            if st.entries.contains_key(path) || st.dirs.contains(path) {
                return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", path.display())));
            }
            let inode = st.new_inode();
            st.entries.insert(path.to_path_buf(), inode);
            Ok(self.handle(st, inode, path))
        })
    }

    fn read_all(&self, path: &Path) -> io::Result<Bytes> {
        self.run(FaultOp::Read, path, Some(self.generation), |st| {
            let inode = st.inode(path)?;
            Ok(Bytes::copy_from_slice(&st.file_mut(inode).current))
        })
    }

    fn read_copy(&self, path: &Path) -> io::Result<Bytes> {
        // `read_all` copies already: files live in memory here and are never mapped.
        self.read_all(path)
    }

    fn read_copy_at(&self, path: &Path, offset: u64, len: u64) -> io::Result<Bytes> {
        self.run(FaultOp::Read, path, Some(self.generation), |st| {
            let inode = st.inode(path)?;
            let current = &st.file_mut(inode).current;
            let start = usize::try_from(offset).unwrap_or(usize::MAX).min(current.len());
            let end = start.saturating_add(usize::try_from(len).unwrap_or(usize::MAX)).min(current.len());
            Ok(Bytes::copy_from_slice(&current[start..end]))
        })
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        self.run(FaultOp::Read, path, Some(self.generation), |st| {
            let inode = st.inode(path)?;
            Ok(st.file_mut(inode).current.len() as u64)
        })
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.run(FaultOp::Rename, from, Some(self.generation), |st| {
            let inode = st.inode(from)?;
            st.check_parent(to)?;
            st.entries.remove(from);
            st.entries.insert(to.to_path_buf(), inode);
            Ok(())
        })
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.run(FaultOp::Remove, path, Some(self.generation), |st| {
            st.inode(path)?;
            st.entries.remove(path);
            Ok(())
        })
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.run(FaultOp::SyncDir, dir, Some(self.generation), |st| {
            if !st.dirs.contains(dir) {
                return Err(not_found(dir));
            }
            let in_dir = |p: &PathBuf| p.parent() == Some(dir);
            st.durable_entries.retain(|p, _| !in_dir(p));
            let current: Vec<(PathBuf, u64)> = st.entries.iter().filter(|(p, _)| in_dir(p)).map(|(p, i)| (p.clone(), *i)).collect();
            st.durable_entries.extend(current);
            Ok(())
        })
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn Any + Send + Sync>>> {
        self.run(FaultOp::Lock, path, Some(self.generation), |st| {
            st.check_parent(path)?;
            if !st.entries.contains_key(path) {
                // Like the real lock file, created on first use; its directory entry is durable
                // at once (nothing depends on it surviving a crash).
                let inode = st.new_inode();
                st.entries.insert(path.to_path_buf(), inode);
                st.durable_entries.insert(path.to_path_buf(), inode);
            }
            if st.locks.contains_key(path) {
                return Ok(None);
            }
            st.next_lock_token += 1;
            let token = st.next_lock_token;
            st.locks.insert(path.to_path_buf(), token);
            let guard = LockGuard { storage: self.clone_in(st), path: path.to_path_buf(), token };
            Ok(Some(Box::new(guard) as Box<dyn Any + Send + Sync>))
        })
    }
}

/// Holds a lock of a [`FaultStorage`] until dropped.
struct LockGuard {
    storage: FaultStorage,
    path: PathBuf,
    token: u64,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let mut st = self.storage.inner.state.lock();
        if st.locks.get(&self.path) == Some(&self.token) {
            st.locks.remove(&self.path);
        }
    }
}

/// An open file of a [`FaultStorage`]: it follows its inode through renames and removals.
struct FaultFile {
    storage: FaultStorage,
    inode: u64,
    generation: u64,
    path: PathBuf,
}

impl fmt::Debug for FaultFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FaultFile").field("path", &self.path).field("inode", &self.inode).finish()
    }
}

impl StorageFile for FaultFile {
    fn len(&self) -> io::Result<u64> {
        let mut st = self.storage.inner.state.lock();
        if st.generation != self.generation || st.power_off {
            return Err(io::Error::other(format!("len of {}: handle from before a crash or power lost", self.path.display())));
        }
        Ok(st.file_mut(self.inode).current.len() as u64)
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.storage.run(FaultOp::Read, &self.path, Some(self.generation), |st| {
            let current = &st.file_mut(self.inode).current;
            let start = usize::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            let end = start.checked_add(buf.len()).ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            let src = current.get(start..end).ok_or_else(|| io::Error::from(io::ErrorKind::UnexpectedEof))?;
            buf.copy_from_slice(src);
            Ok(())
        })
    }

    fn append(&self, data: &[u8]) -> io::Result<()> {
        let torn = {
            let mut st = self.storage.inner.state.lock();
            match st.begin(FaultOp::Append, &self.path, Some(self.generation)) {
                Ok(()) => None,
                Err(Refusal::Dead(e)) => return Err(e),
                Err(Refusal::Injected(e)) => {
                    // A failed write may have written part of its data.
                    let keep = if st.rng.next().is_multiple_of(2) { 0 } else { st.rng.between(0, data.len().saturating_sub(1)) };
                    let file = st.file_mut(self.inode);
                    let end = file.current.len();
                    write_into(file, end, &data[..keep]);
                    Some(e)
                }
            }
        };
        if let Some(e) = torn {
            return Err(e);
        }
        // Counted above: apply without counting again.
        let mutation = {
            let mut st = self.storage.inner.state.lock();
            let file = st.file_mut(self.inode);
            let end = file.current.len();
            write_into(file, end, data);
            st.mutations
        };
        let hook = self.storage.inner.hook.lock().clone();
        if let Some(hook) = hook {
            hook(mutation);
        }
        Ok(())
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        let start = usize::try_from(offset).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))?;
        let torn = {
            let mut st = self.storage.inner.state.lock();
            match st.begin(FaultOp::WriteAt, &self.path, Some(self.generation)) {
                Ok(()) => None,
                Err(Refusal::Dead(e)) => return Err(e),
                Err(Refusal::Injected(e)) => {
                    // A failed write may have written part of its data.
                    let keep = if st.rng.next().is_multiple_of(2) { 0 } else { st.rng.between(0, data.len().saturating_sub(1)) };
                    write_into(st.file_mut(self.inode), start, &data[..keep]);
                    Some(e)
                }
            }
        };
        if let Some(e) = torn {
            return Err(e);
        }
        // Counted above: apply without counting again.
        let mutation = {
            let mut st = self.storage.inner.state.lock();
            write_into(st.file_mut(self.inode), start, data);
            st.mutations
        };
        let hook = self.storage.inner.hook.lock().clone();
        if let Some(hook) = hook {
            hook(mutation);
        }
        Ok(())
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        self.storage.run(FaultOp::Allocate, &self.path, Some(self.generation), |st| {
            let len = usize::try_from(len).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
            let file = st.file_mut(self.inode);
            if len > file.current.len() {
                // The new zeros lie past the old end: nothing durable below it is touched, and a
                // crash before the next sync may keep any part of the new length, or none.
                Arc::make_mut(&mut file.current).resize(len, 0);
            }
            Ok(())
        })
    }

    fn sync_data(&self) -> io::Result<()> {
        self.storage.run(FaultOp::SyncData, &self.path, Some(self.generation), |st| {
            st.file_mut(self.inode).sync();
            Ok(())
        })
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.storage.run(FaultOp::SetLen, &self.path, Some(self.generation), |st| {
            let len = usize::try_from(len).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "length too large"))?;
            let file = st.file_mut(self.inode);
            Arc::make_mut(&mut file.current).resize(len, 0);
            file.stable_len = file.stable_len.min(len);
            file.written_end = file.written_end.min(len);
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (FaultStorage, PathBuf) {
        let s = FaultStorage::new(9);
        s.create_dir_all(Path::new("/d")).unwrap();
        (s, PathBuf::from("/d"))
    }

    #[test]
    fn synced_data_and_entries_survive_a_crash() {
        let (s, d) = setup();
        let f = s.create_new(&d.join("a")).unwrap();
        f.append(b"durable").unwrap();
        f.sync_data().unwrap();
        s.sync_dir(&d).unwrap();
        f.append(b" maybe").unwrap();
        for seed in 0..50 {
            let c = s.fork();
            c.set_seed(seed);
            c.crash();
            let bytes = c.file_bytes(&d.join("a")).unwrap();
            assert!(bytes.starts_with(b"durable"), "seed {seed}: {bytes:?}");
            assert!(bytes.len() <= b"durable maybe".len(), "seed {seed}");
        }
    }

    #[test]
    fn unsynced_rename_reverts_and_unsynced_create_disappears() {
        let (s, d) = setup();
        let f = s.create_new(&d.join("a.tmp")).unwrap();
        f.append(b"x").unwrap();
        f.sync_data().unwrap();
        s.sync_dir(&d).unwrap();
        s.rename(&d.join("a.tmp"), &d.join("a")).unwrap();
        s.create_new(&d.join("b")).unwrap();
        s.crash();
        assert_eq!(s.paths(), vec![d.join("a.tmp")]);
        assert!(f.append(b"y").is_err(), "a handle from before the crash must be dead");
    }

    #[test]
    fn unsynced_truncation_may_revert() {
        let (s, d) = setup();
        let f = s.create_new(&d.join("a")).unwrap();
        f.append(b"0123456789").unwrap();
        f.sync_data().unwrap();
        s.sync_dir(&d).unwrap();
        f.set_len(4).unwrap();
        let mut outcomes = BTreeSet::new();
        for seed in 0..64 {
            let c = s.fork();
            c.set_seed(seed);
            c.crash();
            let bytes = c.file_bytes(&d.join("a")).unwrap();
            assert!(bytes.starts_with(b"0123"), "seed {seed}: {bytes:?}");
            outcomes.insert(bytes.len());
        }
        assert!(outcomes.contains(&10) && outcomes.contains(&4), "{outcomes:?}");
    }

    #[test]
    fn faults_fire_once_or_persistently_and_power_cuts_stop_everything() {
        let (s, d) = setup();
        let f = s.create_new(&d.join("a")).unwrap();
        s.sync_dir(&d).unwrap();
        s.fail(FaultOp::SyncData, 2, FaultMode::Persistent);
        assert!(f.sync_data().is_ok());
        assert!(f.sync_data().is_err());
        assert!(f.sync_data().is_err());
        s.clear_faults();
        assert!(f.sync_data().is_ok());
        s.cut_power_after(s.mutations());
        assert!(f.append(b"x").is_err());
        assert!(s.read_all(&d.join("a")).is_err());
        s.crash();
        assert!(s.read_all(&d.join("a")).is_err(), "a handle from before the crash is dead");
        assert!(s.clone().read_all(&d.join("a")).is_ok());
    }

    #[test]
    fn a_store_left_open_across_a_crash_writes_nothing_after_it() {
        use crate::{NewEvent, Options, Store};
        let s = FaultStorage::new(5);
        let old = Store::open_with_storage("/db", Options::default(), Arc::new(s.clone())).unwrap();
        old.append(NewEvent::create("K", "a", serde_json::json!({}))).unwrap();
        s.crash();
        let before = s.paths();
        assert!(old.append(NewEvent::create("K", "b", serde_json::json!({}))).is_err());
        assert!(old.checkpoint().is_err());
        assert_eq!(s.paths(), before, "the old store created or removed files after the crash");
        let new = Store::open_with_storage("/db", Options::default(), Arc::new(s.clone())).unwrap();
        assert_eq!(new.last_seq(), 1);
    }

    #[test]
    fn lock_has_one_holder() {
        let (s, d) = setup();
        let g = s.try_lock(&d.join("LOCK")).unwrap();
        assert!(g.is_some());
        assert!(s.try_lock(&d.join("LOCK")).unwrap().is_none());
        drop(g);
        assert!(s.try_lock(&d.join("LOCK")).unwrap().is_some());
    }
}
