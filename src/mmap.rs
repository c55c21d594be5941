//! The one module allowed to use `unsafe`: read-only memory maps of files that no longer
//! change (sealed segments, checkpoints, dictionaries).
#![allow(unsafe_code)]

use std::fs::File;
use std::io;

use bytes::Bytes;

/// Maps `file` read-only and hands the mapping out as `Bytes` (zero-copy; the map lives as
/// long as any slice of it).
pub(crate) fn map_read_only(file: &File) -> io::Result<Bytes> {
    if file.metadata()?.len() == 0 {
        return Ok(Bytes::new());
    }
    // SAFETY: strata maps only files it never writes again (sealed segments, checkpoints,
    // dictionaries) or reads only below the length it has already made durable; the store
    // directory is held under an exclusive writer lock, and the format documents that other
    // programs must not modify its files in place. Under that contract the mapped bytes do not
    // change while mapped, which is what `Mmap` requires.
    let map = unsafe { memmap2::Mmap::map(file)? };
    Ok(Bytes::from_owner(map))
}
