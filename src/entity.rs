//! An entity as of some point in its history: the fold of its events.

use std::sync::Arc;

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
    /// The fields at this version (a JSON object), shared and immutable.
    ///
    /// Reading an entity does not copy its fields: `get` of an entity read before hands
    /// out the store's own materialized state, and two reads of an unchanged entity share
    /// one allocation. The map is a snapshot of the state at `version`: later appends
    /// build a new map for the store and never change one already handed out. Read it
    /// through `Deref` (`e.state["stage"]`, `e.state.get("name")`); to own or change it,
    /// take it out with [`Arc::unwrap_or_clone`], which copies only when the map is still
    /// shared.
    ///
    /// ```
    /// use strata::{NewEvent, Options, Store};
    /// use serde_json::json;
    /// let dir = tempfile::tempdir()?;
    /// let store = Store::open(dir.path(), Options::default())?;
    /// store.append(NewEvent::create("Contact", "c1", json!({"name": "Alice"})))?;
    /// let e = store.get("c1")?.expect("just created");
    /// assert_eq!(e.state.get("name"), Some(&json!("Alice")));
    /// let mut fields = std::sync::Arc::unwrap_or_clone(e.state); // an owned copy
    /// fields.insert("stage".into(), json!("Lead"));
    /// assert_eq!(store.get("c1")?.expect("stored").state.get("stage"), None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub state: Arc<Map<String, Value>>,
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
        let mut obj = (*self.state).clone();
        obj.insert("$id".into(), Value::from(self.id.clone()));
        obj.insert("$kind".into(), Value::from(self.kind.clone()));
        obj.insert("$version".into(), Value::from(self.version));
        obj.insert("$deleted".into(), Value::from(self.deleted));
        obj.insert("$createdAt".into(), Value::from(self.created_at.to_rfc3339()));
        obj.insert("$updatedAt".into(), Value::from(self.updated_at.to_rfc3339()));
        Value::Object(obj)
    }
}
