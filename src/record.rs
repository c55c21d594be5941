//! The record codec: one event's bytes inside a frame chunk (before compression).
//!
//! ```text
//! Record: flags u8 | entity str | event_type str | version varint | ts_delta varint
//!         | [actor str] | [id str] | data bytes | [metadata bytes]
//! str / bytes = varint length, then that many bytes (UTF-8 / JSON text)
//! flags: 0x01 actor present, 0x02 caller-supplied id present, 0x04 metadata present
//! ts_delta = timestamp - frame.min_ts (never negative)
//! ```
//! Decoding borrows from the chunk buffer, so replay can read the index fields of a record
//! without parsing its JSON.

use crate::error::Result;

/// The hard upper bound on one encoded record (and on `Options::max_event_bytes`).
pub const MAX_RECORD_BYTES: usize = 64 << 20;

/// An upper bound on a record's bytes beyond its strings and JSON: the flags byte, six
/// length varints (at most 5 bytes each below 32 GiB) and two 10-byte varints.
pub(crate) const MAX_OVERHEAD_BYTES: usize = 1 + 6 * 5 + 2 * 10;

/// A record's actor field is present.
pub(crate) const FLAG_ACTOR: u8 = 0x01;
/// A record carries a caller-supplied event id.
pub(crate) const FLAG_ID: u8 = 0x02;
/// A record carries a metadata object.
pub(crate) const FLAG_METADATA: u8 = 0x04;
/// Every flag this version understands; any other bit set is corruption.
pub(crate) const KNOWN_FLAGS: u8 = FLAG_ACTOR | FLAG_ID | FLAG_METADATA;

/// The fields of one record, borrowed from a decoded chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordView<'a> {
    /// The entity id.
    pub entity: &'a str,
    /// `Kind.Verb`.
    pub event_type: &'a str,
    /// The entity's version after this event.
    pub version: u64,
    /// Microseconds since the Unix epoch.
    pub timestamp: i64,
    /// Who made the change, if recorded.
    pub actor: Option<&'a str>,
    /// The caller-supplied event id, if any.
    pub id: Option<&'a str>,
    /// The event data as JSON text.
    pub data: &'a [u8],
    /// The event metadata as JSON text, if any.
    pub metadata: Option<&'a [u8]>,
}

/// Appends `value` as an unsigned LEB128 varint.
pub(crate) fn put_varint(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// A cursor over a byte slice that never reads past its end.
pub(crate) struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub(crate) fn new(bytes: &'a [u8]) -> Self {
        Reader { bytes, pos: 0 }
    }

    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not read yet.
    pub(crate) fn remaining(&self) -> usize {
        self.bytes.len().saturating_sub(self.pos)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    pub(crate) fn u8(&mut self) -> Result<u8, &'static str> {
        let b = *self.bytes.get(self.pos).ok_or("record ends inside a field")?;
        self.pos += 1;
        Ok(b)
    }

    pub(crate) fn varint(&mut self) -> Result<u64, &'static str> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            let part = u64::from(b & 0x7f);
            if shift == 63 && part > 1 {
                return Err("varint overflows 64 bits");
            }
            value |= part << shift;
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("varint longer than 10 bytes")
    }

    pub(crate) fn bytes(&mut self) -> Result<&'a [u8], &'static str> {
        let len = self.varint()?;
        let len = usize::try_from(len).map_err(|_| "length field too large")?;
        let end = self.pos.checked_add(len).ok_or("length field too large")?;
        let slice = self.bytes.get(self.pos..end).ok_or("length field points past the chunk")?;
        self.pos = end;
        Ok(slice)
    }

    pub(crate) fn str(&mut self) -> Result<&'a str, &'static str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| "text field is not UTF-8")
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Encodes one record onto `out`. `min_ts` is the frame's smallest timestamp.
pub(crate) fn encode(out: &mut Vec<u8>, record: &RecordView<'_>, min_ts: i64) {
    debug_assert!(record.timestamp >= min_ts);
    let mut flags = 0;
    if record.actor.is_some() {
        flags |= FLAG_ACTOR;
    }
    if record.id.is_some() {
        flags |= FLAG_ID;
    }
    if record.metadata.is_some() {
        flags |= FLAG_METADATA;
    }
    out.push(flags);
    put_bytes(out, record.entity.as_bytes());
    put_bytes(out, record.event_type.as_bytes());
    put_varint(out, record.version);
    put_varint(out, record.timestamp.wrapping_sub(min_ts) as u64);
    if let Some(actor) = record.actor {
        put_bytes(out, actor.as_bytes());
    }
    if let Some(id) = record.id {
        put_bytes(out, id.as_bytes());
    }
    put_bytes(out, record.data);
    if let Some(metadata) = record.metadata {
        put_bytes(out, metadata);
    }
}

/// Decodes the next record from `reader`. Errors name the failed check; the caller adds
/// the file and offset.
pub(crate) fn decode<'a>(reader: &mut Reader<'a>, min_ts: i64, max_ts: i64) -> Result<RecordView<'a>, &'static str> {
    let flags = reader.u8()?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err("record has unknown flag bits");
    }
    let entity = reader.str()?;
    let event_type = reader.str()?;
    let version = reader.varint()?;
    let delta = reader.varint()?;
    let timestamp = i64::try_from(delta).ok().and_then(|d| min_ts.checked_add(d)).ok_or("record timestamp overflows")?;
    if timestamp > max_ts {
        return Err("record timestamp is after the frame's max timestamp");
    }
    let actor = if flags & FLAG_ACTOR != 0 { Some(reader.str()?) } else { None };
    let id = if flags & FLAG_ID != 0 { Some(reader.str()?) } else { None };
    let data = reader.bytes()?;
    let metadata = if flags & FLAG_METADATA != 0 { Some(reader.bytes()?) } else { None };
    Ok(RecordView { entity, event_type, version, timestamp, actor, id, data, metadata })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_round_trips() {
        let rec = RecordView {
            entity: "contact_1",
            event_type: "Contact.Created",
            version: 1,
            timestamp: 1_700_000_000_000_123,
            actor: Some("agent_1"),
            id: Some("evt-1"),
            data: br#"{"name":"Alice"}"#,
            metadata: Some(br#"{"undoOf":"x"}"#),
        };
        let mut buf = Vec::new();
        encode(&mut buf, &rec, 1_700_000_000_000_000);
        let mut r = Reader::new(&buf);
        let back = decode(&mut r, 1_700_000_000_000_000, i64::MAX).unwrap();
        assert_eq!(back, rec);
        assert!(r.is_empty());
    }

    #[test]
    fn truncated_records_are_errors_at_every_length() {
        let rec = RecordView {
            entity: "e",
            event_type: "K.Updated",
            version: 300,
            timestamp: 5,
            actor: None,
            id: None,
            data: b"{}",
            metadata: None,
        };
        let mut buf = Vec::new();
        encode(&mut buf, &rec, 0);
        for cut in 0..buf.len() {
            assert!(decode(&mut Reader::new(&buf[..cut]), 0, i64::MAX).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn hostile_varints_are_rejected() {
        let bytes = [0xffu8; 11];
        assert!(Reader::new(&bytes).varint().is_err());
        let mut huge = vec![0u8];
        put_varint(&mut huge, u64::MAX);
        assert!(Reader::new(&huge[1..]).bytes().is_err());
    }
}
