//! An entity as of some point in its history: the fold of its events.

use serde_json::{Map, Value};

use crate::timestamp::Timestamp;

/// An entity's state as of some version: the projection of its events.
///
/// ```
/// use strata::{NewEvent, Options, Store};
/// use serde_json::json;
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path(), Options::default())?;
/// store.append(NewEvent::create("Contact", "contact_1", json!({"name": "Alice"})))?;
/// let e = store.get("contact_1")?.expect("just created");
/// assert_eq!((e.kind.as_str(), e.version, e.deleted), ("Contact", 1, false));
/// assert_eq!(e.state["name"], "Alice");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Entity {
    /// The entity id.
    pub id: String,
    /// The entity's kind, fixed at creation (`Contact`).
    pub kind: String,
    /// 1 after create, +1 for every event; never goes back.
    pub version: u64,
    /// The current fields (a JSON object).
    pub state: Map<String, Value>,
    /// Soft-deleted: a `Deleted` event was the last delete/restore.
    pub deleted: bool,
    /// When the `Created` event was committed.
    pub created_at: Timestamp,
    /// When the latest event was committed.
    pub updated_at: Timestamp,
}

impl Entity {
    /// The entity as one JSON object: its fields plus `$id`, `$kind`, `$version`,
    /// `$deleted`, `$createdAt` and `$updatedAt`.
    ///
    /// ```
    /// # use strata::{Entity, Timestamp};
    /// let e = Entity { id: "c1".into(), kind: "Contact".into(), version: 2, state: Default::default(),
    ///     deleted: false, created_at: Timestamp::from_micros(0), updated_at: Timestamp::from_micros(0) };
    /// assert_eq!(e.to_json()["$version"], 2);
    /// ```
    pub fn to_json(&self) -> Value {
        let mut obj = self.state.clone();
        obj.insert("$id".into(), Value::from(self.id.clone()));
        obj.insert("$kind".into(), Value::from(self.kind.clone()));
        obj.insert("$version".into(), Value::from(self.version));
        obj.insert("$deleted".into(), Value::from(self.deleted));
        obj.insert("$createdAt".into(), Value::from(self.created_at.to_rfc3339()));
        obj.insert("$updatedAt".into(), Value::from(self.updated_at.to_rfc3339()));
        Value::Object(obj)
    }
}
