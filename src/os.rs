//! The one module allowed to use `unsafe`: the operating-system calls the standard library
//! does not wrap. Read-only memory maps of files (sealed segments, checkpoints and the
//! committed prefix of the active segment, mapped only by the process that holds the store's
//! writer lock) and space reservation (`fallocate`) for the active segment.
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

use bytes::Bytes;

/// Maps the first `len` bytes of `file` (all of it when `len` is `None`) read-only and hands
/// the mapping out as `Bytes` (zero-copy; the map lives as long as any slice of it). A file
/// shorter than `len` is mapped whole.
pub(crate) fn map_read_only(file: &File, len: Option<u64>) -> io::Result<Bytes> {
    let file_len = file.metadata()?.len();
    let len = len.map_or(file_len, |l| l.min(file_len));
    if len == 0 {
        return Ok(Bytes::new());
    }
    let len = usize::try_from(len).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "file too large to map"))?;
    // SAFETY: `Mmap` requires that the mapped bytes do not change while mapped, and a file cut
    // short under its map raises SIGBUS on access past the new end. Store files are mapped
    // (`Storage::read_all`, `read_prefix`) only by the process that holds the store's exclusive
    // writer lock: `Store` (recovery at open, the writer, reads) and `inspect::repair` (whose
    // dry run of a store without a lock file, which no writer has opened, takes none). That
    // process maps whole only files it never writes again: sealed segments (its writer seals a
    // segment before it maps it whole; recovery truncates a segment only after dropping its
    // maps) and checkpoints (written under a temporary name and renamed; removing one leaves a
    // map intact). Of the active segment, which its writer still fills, it maps (or, for
    // recovery's map of it, keeps a slice of) only a prefix the writer has committed: frames
    // are never rewritten, and the reserved zero space after them, which the writer overwrites
    // with frames and truncates at a seal and at close, is left out. No other strata code maps
    // a store file: code that runs without the lock (the inspector behind `strata-dump`, the
    // store check `Store::open` makes before it locks) reads copies (`read_copy`,
    // `read_copy_at`), since a writer in another process may be changing them. Other programs
    // must not modify the files of an open store (format-spec.md, section 1). Under that
    // contract the mapped bytes do not change while mapped.
    let map = unsafe { memmap2::MmapOptions::new().len(len).map(file)? };
    Ok(Bytes::from_owner(map))
}

/// Reserves space so that `file` is at least `len` bytes long, the new bytes reading as
/// zeros, without writing them (`fallocate` mode 0: the file size grows to cover the
/// reservation). Where the file system cannot reserve space (it does not support
/// `fallocate`), nothing happens: the file then simply grows as it is written.
#[cfg(any(target_os = "linux", target_os = "android"))]
pub(crate) fn allocate(file: &File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let current = file.metadata()?.len();
    if len <= current {
        return Ok(());
    }
    let (Ok(offset), Ok(extra)) = (libc::off_t::try_from(current), libc::off_t::try_from(len - current)) else {
        return Err(io::Error::new(io::ErrorKind::InvalidInput, "allocation past the largest file offset"));
    };
    loop {
        // SAFETY: `fallocate` only reads its integer arguments; the descriptor is valid for the
        // duration of the call because `file` is borrowed. Mode 0 allocates and extends the
        // size; it never changes existing bytes.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, offset, extra) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            Some(libc::EOPNOTSUPP) | Some(libc::ENOSYS) => return Ok(()),
            _ => return Err(err),
        }
    }
}

/// Where `fallocate` does not exist, nothing is reserved: the file grows as it is written.
#[cfg(not(any(target_os = "linux", target_os = "android")))]
pub(crate) fn allocate(_file: &File, _len: u64) -> io::Result<()> {
    Ok(())
}
