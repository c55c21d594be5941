//! zstd dictionaries: trained from the first records so that small commits compress well.
//!
//! ```text
//! Dictionary file dict-{id:010}.zdict:
//!   0 magic [u8; 8] = "STRATDIC"
//!   8 format_version u32
//!  12 dict_id u32       > 0, matches the file name
//!  16 len u32           dictionary bytes that follow
//!  20 crc u32           CRC-32 of bytes [0, 20) then the dictionary bytes
//!  24 dictionary bytes  (zstd dictionary format)
//! ```
//! A dictionary is written (to a temporary file, fsynced, renamed, directory fsynced) before
//! any frame that uses it, and never changes or goes away afterwards. It only makes frames
//! smaller: failing to write one fails no append (the writer goes on without it).
//! Each file name holds one id, and no id is given to two dictionaries.

use std::collections::HashMap;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use crate::frame::read_u32;

/// The magic number at the start of a dictionary file.
pub const DICT_MAGIC: &[u8; 8] = b"STRATDIC";
/// Bytes before the dictionary itself.
pub const DICT_HEADER_BYTES: usize = 24;
/// The largest dictionary accepted.
pub const MAX_DICT_BYTES: u32 = 1 << 20;
/// The size a trained dictionary aims for.
pub(crate) const DICT_TARGET_BYTES: usize = 16 << 10;
/// Train once this many records have been sampled.
pub(crate) const DICT_TRAIN_RECORDS: usize = 2000;
/// Train once this many bytes have been sampled. Training time grows with the samples
/// (about 70 ms for 500 KiB here, on the write path), while the dictionary stops improving
/// well before: capped at 128 KiB, a bulk-loaded CRM store took 23.9 bytes per event, the
/// same as with 500 KiB of samples, and training cost 0.4x the time.
pub(crate) const DICT_TRAIN_MAX_SAMPLE_BYTES: usize = 128 << 10;

/// The file name of dictionary `id`.
pub fn dict_file_name(id: u32) -> String {
    format!("dict-{id:010}.zdict")
}

/// Parses a dictionary file name back to its id. Only the name [`dict_file_name`] makes is
/// one (ten digits, id 1 or more), so that no two files can claim the same id.
pub fn parse_dict_file_name(name: &str) -> Option<u32> {
    let digits = name.strip_prefix("dict-")?.strip_suffix(".zdict")?;
    if digits.len() != 10 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&id| id > 0)
}

/// Encodes a dictionary file.
pub(crate) fn encode_file(id: u32, dict: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(DICT_HEADER_BYTES + dict.len());
    out.extend_from_slice(DICT_MAGIC);
    out.extend_from_slice(&crate::format::FORMAT_VERSION.to_le_bytes());
    out.extend_from_slice(&id.to_le_bytes());
    out.extend_from_slice(&(dict.len() as u32).to_le_bytes());
    let mut h = crc32fast::Hasher::new();
    h.update(&out[..20]);
    h.update(dict);
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(dict);
    out
}

/// Checks a dictionary file and returns its id and dictionary bytes, or the offset and
/// reason of the first failed check.
pub fn decode_file(bytes: &[u8]) -> Result<(u32, &[u8]), (u64, String)> {
    if bytes.len() < DICT_HEADER_BYTES {
        return Err((0, "dictionary file is shorter than its header".into()));
    }
    if &bytes[..8] != DICT_MAGIC {
        return Err((0, "bad dictionary magic".into()));
    }
    let version = read_u32(bytes, 8);
    if version == 0 || version > crate::format::FORMAT_VERSION {
        return Err((8, format!("unsupported dictionary format version {version}")));
    }
    let id = read_u32(bytes, 12);
    let len = read_u32(bytes, 16);
    if len > MAX_DICT_BYTES || bytes.len() - DICT_HEADER_BYTES != len as usize {
        return Err((16, format!("dictionary length {len} does not match the file")));
    }
    let dict = &bytes[DICT_HEADER_BYTES..];
    let mut h = crc32fast::Hasher::new();
    h.update(&bytes[..20]);
    h.update(dict);
    if h.finalize() != read_u32(bytes, 20) {
        return Err((20, "dictionary CRC mismatch".into()));
    }
    Ok((id, dict))
}

/// The format version of a dictionary file that is intact (magic, length and CRC check
/// out) but newer than this build reads; `None` for anything else, which
/// [`decode_file`] then judges.
pub fn newer_version(bytes: &[u8]) -> Option<u32> {
    if bytes.len() < DICT_HEADER_BYTES || &bytes[..8] != DICT_MAGIC {
        return None;
    }
    let version = read_u32(bytes, 8);
    let len = read_u32(bytes, 16) as usize;
    if version <= crate::format::FORMAT_VERSION || bytes.len() - DICT_HEADER_BYTES != len {
        return None;
    }
    let mut h = crc32fast::Hasher::new();
    h.update(&bytes[..20]);
    h.update(&bytes[DICT_HEADER_BYTES..]);
    (h.finalize() == read_u32(bytes, 20)).then_some(version)
}

/// Trains a dictionary from concatenated samples; `None` when zstd cannot build one.
pub(crate) fn train(samples: &[u8], sizes: &[usize]) -> Option<Vec<u8>> {
    zstd::dict::from_continuous(samples, sizes, DICT_TARGET_BYTES).ok().filter(|d| d.len() >= 256)
}

struct Loaded {
    bytes: Vec<u8>,
    pool: Mutex<Vec<zstd::bulk::Decompressor<'static>>>,
}

/// The dictionaries of a store, with a pool of ready decompression contexts for each
/// (id 0 is plain zstd). Shared by every reader.
#[derive(Default)]
pub struct Dictionaries {
    loaded: RwLock<HashMap<u32, Arc<Loaded>>>,
}

impl std::fmt::Debug for Dictionaries {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Dictionaries").field("ids", &self.ids()).finish()
    }
}

impl Dictionaries {
    /// Adds dictionary `id` (id 0 is reserved for plain zstd).
    pub fn insert(&self, id: u32, bytes: Vec<u8>) {
        self.loaded.write().insert(id, Arc::new(Loaded { bytes, pool: Mutex::new(Vec::new()) }));
    }

    /// The ids of the loaded dictionaries, ascending.
    pub fn ids(&self) -> Vec<u32> {
        let mut ids: Vec<u32> = self.loaded.read().keys().copied().collect();
        ids.sort_unstable();
        ids
    }

    /// The bytes of dictionary `id`.
    pub fn bytes(&self, id: u32) -> Option<Vec<u8>> {
        self.loaded.read().get(&id).map(|d| d.bytes.clone())
    }

    fn get(&self, id: u32) -> Result<Arc<Loaded>, String> {
        if let Some(d) = self.loaded.read().get(&id) {
            return Ok(d.clone());
        }
        if id == 0 {
            let mut map = self.loaded.write();
            return Ok(map.entry(0).or_insert_with(|| Arc::new(Loaded { bytes: Vec::new(), pool: Mutex::new(Vec::new()) })).clone());
        }
        Err(format!("chunk needs dictionary {id}, which the store does not have"))
    }

    /// Decompresses `stored` (at most `raw_len` bytes out) with dictionary `id`.
    pub(crate) fn decompress(&self, id: u32, stored: &[u8], raw_len: usize) -> Result<Vec<u8>, String> {
        let dict = self.get(id)?;
        let mut ctx = match dict.pool.lock().pop() {
            Some(ctx) => ctx,
            None if id == 0 => zstd::bulk::Decompressor::new().map_err(|e| format!("zstd: {e}"))?,
            None => zstd::bulk::Decompressor::with_dictionary(&dict.bytes).map_err(|e| format!("zstd dictionary {id}: {e}"))?,
        };
        let mut out = Vec::with_capacity(raw_len);
        let result = ctx.decompress_to_buffer(stored, &mut out);
        dict.pool.lock().push(ctx);
        result.map_err(|e| format!("zstd: {e}"))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dictionary_file_round_trips_and_detects_damage() {
        let file = encode_file(3, b"some dictionary bytes");
        assert_eq!(decode_file(&file).unwrap(), (3, &b"some dictionary bytes"[..]));
        for i in 0..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 0x10;
            assert!(decode_file(&bad).is_err(), "flip in byte {i} not detected");
        }
        assert!(decode_file(&file[..file.len() - 1]).is_err());
    }

    #[test]
    fn only_canonical_dictionary_file_names_parse() {
        assert_eq!(parse_dict_file_name(&dict_file_name(7)), Some(7));
        assert_eq!(parse_dict_file_name(&dict_file_name(u32::MAX)), Some(u32::MAX));
        for name in
            ["dict-7.zdict", "dict-+000000007.zdict", "dict-0000000000.zdict", "dict-00000000007.zdict", "dict-0000000007.zdict.tmp"]
        {
            assert_eq!(parse_dict_file_name(name), None, "{name}");
        }
    }
}
