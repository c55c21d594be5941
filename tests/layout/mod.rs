//! A minimal reader of the on-disk layout, written from format-spec.md rather than from the
//! library, so that tests can find frames and segments to cut, flip or inspect.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

/// Bytes in a segment header.
pub const SEGMENT_HEADER_BYTES: usize = 64;
/// Bytes in a sealed segment's footer.
pub const FOOTER_BYTES: usize = 64;
/// Bytes in a frame header.
pub const FRAME_HEADER_BYTES: usize = 48;
/// Bytes in one chunk-table entry.
pub const CHUNK_ENTRY_BYTES: usize = 16;

/// One frame as found in a segment file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Byte offset of the frame in its segment.
    pub offset: usize,
    /// The frame's length in bytes.
    pub len: usize,
    pub base_seq: u64,
    pub record_count: u32,
    pub dict_id: u32,
    pub raw_len: u32,
    /// The codec of every chunk.
    pub codecs: Vec<u8>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// The segment files of a store, in seq order.
pub fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().ends_with(".seg"))
        .collect();
    out.sort();
    out
}

/// Where the frames of a sealed segment end (its trailer's index offset), or `None` when
/// the segment has no trailer.
pub fn trailer_index_offset(bytes: &[u8]) -> Option<usize> {
    if bytes.len() < SEGMENT_HEADER_BYTES + FOOTER_BYTES {
        return None;
    }
    let footer = &bytes[bytes.len() - FOOTER_BYTES..];
    (&footer[..8] == b"STRATEND").then(|| u64_at(footer, 8) as usize)
}

/// The frames of a segment's bytes, walking the length fields from the header on.
pub fn frames_in(bytes: &[u8]) -> Vec<Frame> {
    // A file shorter than a header is a segment whose creation was cut short: no frames.
    if bytes.len() < SEGMENT_HEADER_BYTES {
        return Vec::new();
    }
    assert_eq!(&bytes[..8], b"STRATSEG", "not a segment");
    let end = trailer_index_offset(bytes).unwrap_or(bytes.len());
    let mut out = Vec::new();
    let mut at = SEGMENT_HEADER_BYTES;
    while at + FRAME_HEADER_BYTES <= end {
        let len = u32_at(bytes, at) as usize;
        if len < FRAME_HEADER_BYTES || at + len > end {
            break;
        }
        let chunk_count = u16::from_le_bytes([bytes[at + 20], bytes[at + 21]]) as usize;
        let codecs = (0..chunk_count).map(|i| bytes[at + FRAME_HEADER_BYTES + i * CHUNK_ENTRY_BYTES + 2]).collect();
        out.push(Frame {
            offset: at,
            len,
            base_seq: u64_at(bytes, at + 8),
            record_count: u32_at(bytes, at + 16),
            dict_id: u32_at(bytes, at + 40),
            raw_len: u32_at(bytes, at + 44),
            codecs,
        });
        at += len;
    }
    out
}

/// The frames of a segment file.
pub fn frames(path: &Path) -> Vec<Frame> {
    frames_in(&std::fs::read(path).unwrap())
}

/// Copies every regular file of `from` into `to` (a fresh directory).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        if entry.file_type().unwrap().is_file() {
            std::fs::copy(entry.path(), to.join(entry.file_name())).unwrap();
        }
    }
}

/// File names and sizes in a directory, sorted.
pub fn dir_sizes(dir: &Path) -> Vec<(String, u64)> {
    let mut out: Vec<(String, u64)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (e.file_name().to_string_lossy().into_owned(), e.metadata().unwrap().len())
        })
        .collect();
    out.sort();
    out
}
