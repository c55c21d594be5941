//! The real file system with a count of `sync_data` calls and of the bytes written, for
//! tests of group commit and of space reservation.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use strata::{FsStorage, Storage, StorageFile};

/// Wraps the real file system and counts `sync_data` calls and bytes written.
#[derive(Debug, Default)]
pub struct CountingStorage {
    /// `sync_data` calls so far.
    pub syncs: Arc<AtomicU64>,
    /// Bytes passed to `append` and `write_at` so far.
    pub written: Arc<AtomicU64>,
}

#[derive(Debug)]
struct CountingFile {
    inner: Arc<dyn StorageFile>,
    syncs: Arc<AtomicU64>,
    written: Arc<AtomicU64>,
}

impl StorageFile for CountingFile {
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn read_exact_at(&self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.inner.read_exact_at(offset, buf)
    }
    fn append(&self, data: &[u8]) -> io::Result<()> {
        self.written.fetch_add(data.len() as u64, Ordering::Relaxed);
        self.inner.append(data)
    }
    fn write_at(&self, offset: u64, data: &[u8]) -> io::Result<()> {
        self.written.fetch_add(data.len() as u64, Ordering::Relaxed);
        self.inner.write_at(offset, data)
    }
    fn allocate(&self, len: u64) -> io::Result<()> {
        self.inner.allocate(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        self.syncs.fetch_add(1, Ordering::Relaxed);
        self.inner.sync_data()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
}

impl CountingStorage {
    fn wrap(&self, inner: Arc<dyn StorageFile>) -> Arc<dyn StorageFile> {
        Arc::new(CountingFile { inner, syncs: self.syncs.clone(), written: self.written.clone() })
    }
}

impl Storage for CountingStorage {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        FsStorage.create_dir_all(dir)
    }
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        FsStorage.list_dir(dir)
    }
    fn read_prefix(&self, path: &Path, len: u64) -> io::Result<Bytes> {
        FsStorage.read_prefix(path, len)
    }
    fn open(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        Ok(self.wrap(FsStorage.open(path)?))
    }
    fn create_new(&self, path: &Path) -> io::Result<Arc<dyn StorageFile>> {
        Ok(self.wrap(FsStorage.create_new(path)?))
    }
    fn read_all(&self, path: &Path) -> io::Result<Bytes> {
        FsStorage.read_all(path)
    }
    fn read_copy(&self, path: &Path) -> io::Result<Bytes> {
        FsStorage.read_copy(path)
    }
    fn read_copy_at(&self, path: &Path, offset: u64, len: u64) -> io::Result<Bytes> {
        FsStorage.read_copy_at(path, offset, len)
    }
    fn file_len(&self, path: &Path) -> io::Result<u64> {
        FsStorage.file_len(path)
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        FsStorage.rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        FsStorage.remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        FsStorage.sync_dir(dir)
    }
    fn try_lock(&self, path: &Path) -> io::Result<Option<Box<dyn std::any::Any + Send + Sync>>> {
        FsStorage.try_lock(path)
    }
}
