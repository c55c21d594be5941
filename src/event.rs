//! Events: what the log stores, and what callers ask to append.

use std::fmt;

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::timestamp::Timestamp;

/// The longest entity id, in bytes.
pub const MAX_ENTITY_ID_BYTES: usize = 256;
/// The longest kind or verb, in bytes.
pub const MAX_IDENTIFIER_BYTES: usize = 64;
/// The longest actor or caller-supplied event id, in bytes.
pub const MAX_ACTOR_BYTES: usize = 256;

/// Metadata keys the engine writes itself (undo and rollback links); callers cannot set them.
pub(crate) const RESERVED_METADATA_KEYS: [&str; 3] = ["undoOf", "undoType", "rollbackTo"];

/// The random id of a store, chosen when it is created. Generated event ids embed it, so
/// they are unique across stores (for merging the logs of two replicas).
///
/// ```
/// let id = strata::StoreId(0x2a);
/// assert_eq!(id.to_string(), "000000000000002a");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct StoreId(pub u64);

impl fmt::Display for StoreId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

impl StoreId {
    /// The id the store generates for the event at `seq`: `{store}-{seq}`.
    ///
    /// ```
    /// assert_eq!(strata::StoreId(1).event_id(7), "0000000000000001-7");
    /// ```
    pub fn event_id(self, seq: u64) -> String {
        // Hand-rolled into a fixed buffer: this runs for every appended and every read event.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        let mut buf = [0u8; 37];
        for (i, b) in buf[..16].iter_mut().enumerate() {
            *b = HEX[((self.0 >> ((15 - i) * 4)) & 0xf) as usize];
        }
        buf[16] = b'-';
        let mut n = seq;
        let mut end = buf.len();
        loop {
            end -= 1;
            buf[end] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        let digits = buf.len() - end;
        buf.copy_within(end.., 17);
        // Only ASCII digits, hex letters and '-' were written.
        std::str::from_utf8(&buf[..17 + digits]).map(str::to_owned).unwrap_or_default()
    }

    /// The seq of an id this store generated, if `id` is one.
    ///
    /// ```
    /// let s = strata::StoreId(1);
    /// assert_eq!(s.parse_event_id(&s.event_id(9)), Some(9));
    /// assert_eq!(s.parse_event_id("0000000000000002-9"), None);
    /// ```
    pub fn parse_event_id(self, id: &str) -> Option<u64> {
        let (store, seq) = id.split_once('-')?;
        if store.len() != 16 || u64::from_str_radix(store, 16).ok()? != self.0 || seq.starts_with('+') {
            return None;
        }
        seq.parse().ok().filter(|&s| s > 0)
    }
}

/// One immutable entry of the log.
///
/// ```
/// use strata::{NewEvent, Options, Store};
/// use serde_json::json;
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path(), Options::default())?;
/// let ev = store.append(NewEvent::create("Contact", "contact_1", json!({"name": "Alice"})).actor("agent_1"))?;
/// assert_eq!((ev.seq, ev.version, ev.event_type.as_str()), (1, 1, "Contact.Created"));
/// assert_eq!((ev.kind(), ev.verb()), ("Contact", "Created"));
/// assert_eq!(ev.actor.as_deref(), Some("agent_1"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// Position in the store's log: dense, starting at 1.
    pub seq: u64,
    /// Globally unique id: caller-supplied, or `{store id}-{seq}`.
    pub id: String,
    /// `Kind.Verb`: `Created`, `Updated`, `Deleted`, `Restored` or a custom verb.
    pub event_type: String,
    /// The entity the event changed.
    pub entity: String,
    /// Who made the change, if recorded.
    pub actor: Option<String>,
    /// When the event was committed (strictly increasing from batch to batch).
    pub timestamp: Timestamp,
    /// The entity's version after this event.
    pub version: u64,
    /// The full object for `Created`; a JSON Merge Patch otherwise.
    pub data: Value,
    /// A JSON object: caller metadata, plus `undoOf`, `undoType` or `rollbackTo` for
    /// compensating events.
    pub metadata: Value,
    /// The atomic batch this event was committed in: the seq of the batch's first event.
    pub batch: u64,
    /// The store that wrote the event.
    pub store: StoreId,
}

impl Event {
    /// The kind part of `event_type`.
    ///
    /// ```
    /// # let ev = strata::Event { seq: 1, id: "x".into(), event_type: "Deal.Won".into(), entity: "d".into(), actor: None,
    /// #   timestamp: strata::Timestamp::from_micros(0), version: 1, data: serde_json::json!({}),
    /// #   metadata: serde_json::json!({}), batch: 1, store: strata::StoreId(0) };
    /// assert_eq!(ev.kind(), "Deal");
    /// ```
    pub fn kind(&self) -> &str {
        self.event_type.split_once('.').map_or(self.event_type.as_str(), |(k, _)| k)
    }

    /// The verb part of `event_type`.
    ///
    /// ```
    /// # let ev = strata::Event { seq: 1, id: "x".into(), event_type: "Deal.Won".into(), entity: "d".into(), actor: None,
    /// #   timestamp: strata::Timestamp::from_micros(0), version: 1, data: serde_json::json!({}),
    /// #   metadata: serde_json::json!({}), batch: 1, store: strata::StoreId(0) };
    /// assert_eq!(ev.verb(), "Won");
    /// ```
    pub fn verb(&self) -> &str {
        self.event_type.split_once('.').map_or("", |(_, v)| v)
    }

    /// The event as one JSON object, with the timestamp in RFC 3339 (the shape strata-dump
    /// prints with `--json`).
    ///
    /// ```
    /// # let ev = strata::Event { seq: 1, id: "x".into(), event_type: "Deal.Won".into(), entity: "d".into(), actor: None,
    /// #   timestamp: strata::Timestamp::from_micros(0), version: 1, data: serde_json::json!({}),
    /// #   metadata: serde_json::json!({}), batch: 1, store: strata::StoreId(0) };
    /// assert_eq!(ev.to_json()["timestamp"], "1970-01-01T00:00:00Z");
    /// ```
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "seq": self.seq,
            "id": self.id,
            "type": self.event_type,
            "entity": self.entity,
            "version": self.version,
            "timestamp": self.timestamp.to_rfc3339(),
            "actor": self.actor,
            "data": self.data,
            "metadata": self.metadata,
            "batch": self.batch,
        })
    }
}

/// What an event does to its entity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Operation {
    Create,
    Update,
    Delete,
    Restore,
}

/// An event to append, built with [`NewEvent::create`], [`update`](NewEvent::update),
/// [`delete`](NewEvent::delete) or [`restore`](NewEvent::restore) and refined with the
/// builder methods.
///
/// ```
/// use strata::NewEvent;
/// use serde_json::json;
/// let ev = NewEvent::update("contact_1", json!({"stage": "Qualified"}))
///     .verb("Qualified")
///     .actor("agent_1")
///     .expect_version(1);
/// # let _ = ev;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    pub(crate) op: Operation,
    pub(crate) kind: Option<String>,
    pub(crate) entity: String,
    pub(crate) data: Value,
    pub(crate) verb: Option<String>,
    pub(crate) actor: Option<String>,
    pub(crate) id: Option<String>,
    pub(crate) timestamp: Option<Timestamp>,
    pub(crate) expected_version: Option<u64>,
    pub(crate) metadata: Map<String, Value>,
    /// Set by the engine for compensating events, which may carry reserved metadata.
    pub(crate) internal: bool,
}

impl NewEvent {
    fn new(op: Operation, kind: Option<String>, entity: String, data: Value) -> Self {
        NewEvent {
            op,
            kind,
            entity,
            data,
            verb: None,
            actor: None,
            id: None,
            timestamp: None,
            expected_version: None,
            metadata: Map::new(),
            internal: false,
        }
    }

    /// Creates entity `entity` of kind `kind` with `data` (a JSON object) as its state.
    ///
    /// ```
    /// let ev = strata::NewEvent::create("Contact", "contact_1", serde_json::json!({"name": "Alice"}));
    /// # let _ = ev;
    /// ```
    pub fn create(kind: impl Into<String>, entity: impl Into<String>, data: Value) -> Self {
        Self::new(Operation::Create, Some(kind.into()), entity.into(), data)
    }

    /// Updates `entity` with a JSON Merge Patch (RFC 7396): `null` removes a field.
    ///
    /// ```
    /// let ev = strata::NewEvent::update("contact_1", serde_json::json!({"stage": "Qualified", "tmp": null}));
    /// # let _ = ev;
    /// ```
    pub fn update(entity: impl Into<String>, patch: Value) -> Self {
        Self::new(Operation::Update, None, entity.into(), patch)
    }

    /// Soft-deletes `entity`: its state is kept and it reads back with `deleted = true`.
    ///
    /// ```
    /// let ev = strata::NewEvent::delete("contact_1");
    /// # let _ = ev;
    /// ```
    pub fn delete(entity: impl Into<String>) -> Self {
        Self::new(Operation::Delete, None, entity.into(), Value::Object(Map::new()))
    }

    /// Restores a soft-deleted `entity`.
    ///
    /// ```
    /// let ev = strata::NewEvent::restore("contact_1");
    /// # let _ = ev;
    /// ```
    pub fn restore(entity: impl Into<String>) -> Self {
        Self::new(Operation::Restore, None, entity.into(), Value::Object(Map::new()))
    }

    /// A custom verb for an update (`Qualified` gives `Contact.Qualified`).
    ///
    /// ```
    /// let ev = strata::NewEvent::update("c1", serde_json::json!({})).verb("Qualified");
    /// # let _ = ev;
    /// ```
    pub fn verb(mut self, verb: impl Into<String>) -> Self {
        self.verb = Some(verb.into());
        self
    }

    /// Records who made the change.
    ///
    /// ```
    /// let ev = strata::NewEvent::delete("c1").actor("agent_1");
    /// # let _ = ev;
    /// ```
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Supplies the event id, for idempotent retries: appending an id that is already
    /// stored returns the stored event and writes nothing.
    ///
    /// ```
    /// let ev = strata::NewEvent::delete("c1").id("req-42");
    /// # let _ = ev;
    /// ```
    pub fn id(mut self, id: impl Into<String>) -> Self {
        self.id = Some(id.into());
        self
    }

    /// Supplies the timestamp; accepted only if later than the last one in the log.
    ///
    /// ```
    /// let ev = strata::NewEvent::delete("c1").timestamp(strata::Timestamp::parse("2030-01-01T00:00:00Z")?);
    /// # let _ = ev;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn timestamp(mut self, timestamp: Timestamp) -> Self {
        self.timestamp = Some(timestamp);
        self
    }

    /// Appends only if the entity is at this version (0: the entity must not exist);
    /// otherwise `Error::VersionConflict` and nothing is written.
    ///
    /// ```
    /// let ev = strata::NewEvent::delete("c1").expect_version(3);
    /// # let _ = ev;
    /// ```
    pub fn expect_version(mut self, version: u64) -> Self {
        self.expected_version = Some(version);
        self
    }

    /// Attaches metadata (a JSON object). The keys `undoOf`, `undoType` and `rollbackTo`
    /// are reserved for the engine.
    ///
    /// ```
    /// let ev = strata::NewEvent::delete("c1").metadata(serde_json::json!({"reason": "GDPR request"}));
    /// # let _ = ev;
    /// ```
    pub fn metadata(mut self, metadata: Value) -> Self {
        match metadata {
            Value::Object(map) => self.metadata = map,
            other => {
                // Kept so that validation reports it instead of silently dropping it.
                self.metadata = Map::new();
                self.metadata.insert("\u{0}invalid".into(), other);
            }
        }
        self
    }

    /// The entity this event is for.
    ///
    /// ```
    /// assert_eq!(strata::NewEvent::delete("c1").entity(), "c1");
    /// ```
    pub fn entity(&self) -> &str {
        &self.entity
    }
}

/// Checks an entity id: 1..=256 bytes of UTF-8, no control characters.
pub(crate) fn validate_entity_id(id: &str) -> Result<()> {
    if id.is_empty() || id.len() > MAX_ENTITY_ID_BYTES {
        return Err(Error::invalid("entity id", format!("{id:?} must be 1 to {MAX_ENTITY_ID_BYTES} bytes")));
    }
    if id.chars().any(char::is_control) {
        return Err(Error::invalid("entity id", format!("{id:?} contains a control character")));
    }
    Ok(())
}

/// Checks a kind or verb: an ASCII letter, then letters, digits or underscores.
pub(crate) fn validate_identifier(what: &'static str, name: &str) -> Result<()> {
    let mut chars = name.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    if !first_ok || name.len() > MAX_IDENTIFIER_BYTES || !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(Error::invalid(
            what,
            format!(
                "{name:?} must start with an ASCII letter, hold only letters, digits and '_', and be at most {MAX_IDENTIFIER_BYTES} bytes"
            ),
        ));
    }
    Ok(())
}

/// Checks an actor or caller-supplied event id.
pub(crate) fn validate_label(what: &'static str, text: &str) -> Result<()> {
    if text.is_empty() || text.len() > MAX_ACTOR_BYTES || text.chars().any(char::is_control) {
        return Err(Error::invalid(what, format!("{text:?} must be 1 to {MAX_ACTOR_BYTES} bytes without control characters")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_match_their_display_form() {
        for (store, seq) in [(0u64, 1u64), (0x2a, 7), (u64::MAX, u64::MAX), (0x0123_4567_89ab_cdef, 1_000_000)] {
            assert_eq!(StoreId(store).event_id(seq), format!("{:016x}-{seq}", store));
        }
    }

    #[test]
    fn identifiers_are_checked() {
        assert!(validate_identifier("kind", "Contact").is_ok());
        assert!(validate_identifier("kind", "Deal_2").is_ok());
        for bad in ["", "1Deal", "Deal.X", "De al", "Déal"] {
            assert!(validate_identifier("kind", bad).is_err(), "{bad:?}");
        }
        assert!(validate_entity_id("contact_1").is_ok());
        assert!(validate_entity_id("").is_err());
        assert!(validate_entity_id("a\nb").is_err());
        assert!(validate_entity_id(&"x".repeat(257)).is_err());
    }
}
