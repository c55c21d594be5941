//! All file I/O goes through [`Storage`], so that tests can swap the real file system for
//! one that loses un-synced writes, tears writes and fails the k-th operation.
//!
//! The contract mirrors POSIX: data written to a file (appended, written at an offset, or
//! space reserved with `allocate`) is durable only after `sync_data`; a newly created,
//! renamed or removed directory entry is durable only after `sync_dir` on its directory.

use std::any::Any;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

/// A file handle from a [`Storage`].
#[allow(clippy::len_without_is_empty)] // A file's length is what callers need; emptiness never is.
pub trait StorageFile: Send + Sync + Debug {
    /// The file's current length in bytes.
    fn len(&self) -> io::Result<u64>;
    /// Fills `buf` from `offset`; an error if the file ends first.
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Appends `data` at the end of the file.
    fn append(&self, data: &[u8]) -> io::Result<()>;
    /// Writes `data` at `offset` (a positioned write; the file grows if it ends before
    /// `offset + data.len()`).
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()>;
    /// Reserves space so that the file is at least `len` bytes long, the new bytes reading as
    /// zeros (`fallocate` mode 0). Where the file system cannot reserve space, this does
    /// nothing and the file grows as it is written. Like a write, the new length is durable
    /// only after `sync_data`.
    fn allocate(&self, len: u64) -> io::Result<()>;
    /// Makes everything written so far durable (fdatasync).
    fn sync_data(&self) -> io::Result<()>;
    /// Truncates (or extends with zeros) the file to `len` bytes.
    fn set_len(&self, len: u64) -> io::Result<()>;
}

/// A file system: the real one ([`FsStorage`]) or a fault-injecting one in tests.
pub trait Storage: Send + Sync + Debug + 'static {
    /// Creates `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the entries in `dir`.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Opens an existing file for reading and writing.
    fn open(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>>;
    /// Creates a new, empty file (an error if it exists).
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>>;
    /// The whole content of a file that no longer changes (memory-mapped where possible).
    ///
    /// Only for files nothing else writes or truncates while the bytes are in use: a mapped
    /// file cut short underneath its map raises SIGBUS on access. A file another process may
    /// still change is read with [`read_copy`](Storage::read_copy) instead.
    fn read_all(&self, path: &Path) -> io::Result<Bytes>;
    /// The whole content of a file, read into memory of its own (never mapped): a snapshot
    /// of the file as the read found it, which stays valid whatever happens to the file
    /// afterwards. For files another process may be writing or truncating (the active
    /// segment of a store someone else has open). A file that changes during the read may
    /// give a mix of old and new bytes, never an error for that alone.
    ///
    /// The default copies what [`read_all`](Storage::read_all) returns, which is right for a
    /// storage that holds its files in memory; one whose `read_all` maps files (as
    /// [`FsStorage`] does) must override it with a read.
    ///
    /// ```
    /// use strata::{FsStorage, Storage};
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("f");
    /// std::fs::write(&path, b"hello")?;
    /// let copy = FsStorage.read_copy(&path)?;
    /// std::fs::write(&path, b"")?; // truncating the file leaves the copy alone
    /// assert_eq!(&copy[..], b"hello");
    /// # Ok::<(), std::io::Error>(())
    /// ```
    fn read_copy(&self, path: &Path) -> io::Result<Bytes> {
        Ok(Bytes::copy_from_slice(&self.read_all(path)?))
    }
    /// Up to `len` bytes of a file from `offset` on, read into memory of its own like
    /// [`read_copy`](Storage::read_copy): fewer when the file ends first, none when it ends
    /// at or before `offset`. Never allocates more than the file holds, so `len` may be
    /// `u64::MAX` (everything from `offset` on).
    ///
    /// The default copies the range out of [`read_all`](Storage::read_all); see
    /// `read_copy` for when to override it.
    ///
    /// ```
    /// use strata::{FsStorage, Storage};
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("f");
    /// std::fs::write(&path, b"hello world")?;
    /// assert_eq!(&FsStorage.read_copy_at(&path, 6, 3)?[..], b"wor");
    /// assert_eq!(&FsStorage.read_copy_at(&path, 6, u64::MAX)?[..], b"world");
    /// assert!(FsStorage.read_copy_at(&path, 20, 3)?.is_empty());
    /// # Ok::<(), std::io::Error>(())
    /// ```
    fn read_copy_at(&self, path: &Path, offset: u64, len: u64) -> io::Result<Bytes> {
        let all = self.read_all(path)?;
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(all.len());
        let end = start.saturating_add(usize::try_from(len).unwrap_or(usize::MAX)).min(all.len());
        Ok(Bytes::copy_from_slice(&all[start..end]))
    }
    /// The current length of a file in bytes, without reading it.
    ///
    /// The default is the length of what [`read_all`](Storage::read_all) returns.
    ///
    /// ```
    /// use strata::{FsStorage, Storage};
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("f");
    /// std::fs::write(&path, b"hello")?;
    /// assert_eq!(FsStorage.file_len(&path)?, 5);
    /// # Ok::<(), std::io::Error>(())
    /// ```
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        Ok(self.read_all(path)?.len() as u64)
    }
    /// The first `len` bytes of a file (all of it if shorter) whose prefix no longer changes
    /// while the rest may still be written (the committed part of the active segment).
    fn read_prefix(&self, path: &Path, len: u64) -> io::Result<Bytes> {
        let all = self.read_all(path)?;
        let len = usize::try_from(len).unwrap_or(usize::MAX).min(all.len());
        Ok(all.slice(..len))
    }
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Makes a file's data durable (`fdatasync`) without writing to it: what a previous
    /// writer may have left only in the page cache. The default opens the file for writing
    /// and syncs it; [`FsStorage`] opens it read-only, so that files made read-only (sealed
    /// segments, say) can be synced too.
    ///
    /// ```
    /// use strata::{FsStorage, Storage};
    /// let dir = tempfile::tempdir()?;
    /// let path = dir.path().join("f");
    /// std::fs::write(&path, b"hello")?;
    /// FsStorage.sync_file(&path)?;
    /// # Ok::<(), std::io::Error>(())
    /// ```
    fn sync_file(&self, path: &Path) -> io::Result<()> {
        self.open(path)?.sync_data()
    }
    /// Takes an exclusive lock on `path` (created if missing) until the returned guard is
    /// dropped; `Ok(None)` when another holder has it.
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn Any + Send + Sync>>>;
}

/// The real file system.
///
/// ```
/// use strata::{FsStorage, Storage};
/// let dir = tempfile::tempdir()?;
/// FsStorage.create_dir_all(&dir.path().join("a/b"))?;
/// assert_eq!(FsStorage.list_dir(&dir.path().join("a"))?, vec!["b".to_string()]);
/// # Ok::<(), std::io::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct FsStorage;

#[derive(Debug)]
struct FsFile(File);

impl StorageFile for FsFile {
    fn len(&self) -> io::Result<u64> {
        Ok(self.0.metadata()?.len())
    }

    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.0.read_exact_at(buf, offset)
    }

    fn append(&self, data: &[u8]) -> io::Result<()> {
        // Files are opened without O_APPEND (Linux ignores the offset of a positioned write to
        // such a file), so an append is a positioned write at the current end.
        let end = self.0.metadata()?.len();
        self.0.write_all_at(data, end)
    }

    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.0.write_all_at(data, offset)
    }

    fn allocate(&self, len: u64) -> io::Result<()> {
        crate::os::allocate(&self.0, len)
    }

    fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data()
    }

    fn set_len(&self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
}

impl Storage for FsStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(dir)? {
            names.push(entry?.file_name().to_string_lossy().into_owned());
        }
        names.sort();
        Ok(names)
    }

    fn open(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        Ok(Arc::new(FsFile(file)))
    }

    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        let file = OpenOptions::new().read(true).write(true).create_new(true).open(path)?;
        Ok(Arc::new(FsFile(file)))
    }

    fn read_all(&self, path: &Path) -> io::Result<Bytes> {
        let file = File::open(path)?;
        crate::os::map_read_only(&file, None)
    }

    fn read_prefix(&self, path: &Path, len: u64) -> io::Result<Bytes> {
        let file = File::open(path)?;
        crate::os::map_read_only(&file, Some(len))
    }

    fn read_copy(&self, path: &Path) -> io::Result<Bytes> {
        Ok(Bytes::from(std::fs::read(path)?))
    }

    fn read_copy_at(&self, path: &Path, offset: u64, len: u64) -> io::Result<Bytes> {
        let file = File::open(path)?;
        // Sized by what the file holds now, never by `len` alone; the file may still grow
        // or shrink while it is read, so the read stops at the end it meets.
        let available = file.metadata()?.len().saturating_sub(offset).min(len);
        let capacity = usize::try_from(available).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "range too large to read"))?;
        let mut buf = vec![0u8; capacity];
        let mut filled = 0;
        while filled < buf.len() {
            match file.read_at(&mut buf[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        buf.truncate(filled);
        Ok(Bytes::from(buf))
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        Ok(std::fs::metadata(path)?.len())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn sync_file(&self, path: &Path) -> io::Result<()> {
        File::open(path)?.sync_data()
    }

    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn Any + Send + Sync>>> {
        let file = OpenOptions::new().read(true).write(true).create(true).truncate(false).open(path)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(Box::new(LockGuard(file)))),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(e),
        }
    }
}

/// The writer lock of [`FsStorage`]: an exclusive `flock` on the store's `LOCK` file, released
/// explicitly when the guard is dropped. Closing the descriptor alone would not be enough:
/// the lock belongs to the open file description, which a child process forked by any thread
/// of this process shares until it execs (or for as long as it lives, if it never does), so a
/// store closed and reopened at that moment would find itself `Locked`. An explicit unlock
/// releases it for every holder of the description.
struct LockGuard(File);

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Err(e) = self.0.unlock() {
            tracing::warn!(error = %e, "could not release the store's writer lock; it is released when every process sharing it closes it");
        }
    }
}
