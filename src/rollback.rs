//! Rollback of one entity to a point in time, by appending one compensating event.
//!
//! The rollback event is an ordinary event: its type is `{Kind}.Updated`, or `Deleted` /
//! `Restored` when the deleted flag changes; its data is the merge patch from the current
//! state to the state at the target time; its `metadata.rollbackTo` is that time in
//! RFC 3339. The entity's version goes up by one (it never goes back). Rolling back to
//! before the entity existed soft-deletes it and keeps its fields, like any delete.

use serde_json::{Map, Value};

use crate::error::{Error, Result};
use crate::event::{Event, NewEvent};
use crate::merge_patch::diff_patch;
use crate::store::Store;
use crate::timestamp::{AsTimestamp, Timestamp};
use crate::undo::{self, Change};

/// What [`Store::rollback`] did.
///
/// ```
/// use serde_json::json;
/// use strata::RollbackOutcome;
/// let dir = tempfile::tempdir()?;
/// let store = strata::Store::open(dir.path(), strata::Options::default())?;
/// let created = store.append(strata::NewEvent::create("Contact", "c1", json!({"stage": "Lead"})))?;
/// assert_eq!(store.rollback("c1", created.timestamp)?, RollbackOutcome::Unchanged);
/// store.append(strata::NewEvent::update("c1", json!({"stage": "Lost"})))?;
/// let outcome = store.rollback("c1", created.timestamp)?;
/// assert_eq!(outcome.event().map(|e| e.version), Some(3));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, PartialEq)]
pub enum RollbackOutcome {
    /// The entity differed from its state at the target time; this event was appended.
    Appended(Event),
    /// The entity already had its state at the target time (same fields, same deleted
    /// flag); nothing was appended.
    Unchanged,
}

impl RollbackOutcome {
    /// The appended event, if any.
    ///
    /// ```
    /// assert_eq!(strata::RollbackOutcome::Unchanged.event(), None);
    /// ```
    pub fn event(&self) -> Option<&Event> {
        match self {
            RollbackOutcome::Appended(event) => Some(event),
            RollbackOutcome::Unchanged => None,
        }
    }
}

impl Store {
    /// Rolls entity `id` back to its state at `ts` (a [`Timestamp`] or an RFC 3339 string)
    /// by appending one event that makes its fields and deleted flag equal to
    /// [`get_as_of(id, ts)`](Store::get_as_of); to before its creation, the entity is
    /// soft-deleted. Returns [`RollbackOutcome::Unchanged`] and appends nothing when the
    /// entity is already in that state, and [`Error::NotFound`] for an unknown entity.
    /// The event goes through the validators like any other.
    ///
    /// ```
    /// use serde_json::json;
    /// use strata::NewEvent;
    /// let dir = tempfile::tempdir()?;
    /// let store = strata::Store::open(dir.path(), strata::Options::default())?;
    /// let good = store.append(NewEvent::create("Contact", "c1", json!({"name": "Alice", "stage": "Lead"})))?;
    /// store.append(NewEvent::update("c1", json!({"stage": "Lost", "name": null})))?;
    ///
    /// let rollback = store.rollback("c1", good.timestamp)?;
    /// let event = rollback.event().expect("the state changed");
    /// assert_eq!(event.event_type, "Contact.Updated");
    /// assert_eq!(event.metadata["rollbackTo"], good.timestamp.to_rfc3339());
    /// let now = store.get("c1")?.unwrap();
    /// assert_eq!((now.version, now.state.clone()), (3, store.get_as_of("c1", good.timestamp)?.unwrap().state));
    /// assert!(matches!(store.rollback("nobody", good.timestamp), Err(strata::Error::NotFound { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rollback(&self, id: &str, ts: impl AsTimestamp) -> Result<RollbackOutcome> {
        self.rollback_with(id, ts.as_timestamp()?, None)
    }

    /// [`rollback`](Store::rollback), recording `actor` as who rolled back.
    ///
    /// ```
    /// use serde_json::json;
    /// let dir = tempfile::tempdir()?;
    /// let store = strata::Store::open(dir.path(), strata::Options::default())?;
    /// store.append(strata::NewEvent::create("Contact", "c1", json!({})))?;
    /// // Rolling back to before the entity existed soft-deletes it.
    /// let outcome = store.rollback_by("c1", "2000-01-01T00:00:00Z", "agent_7")?;
    /// let event = outcome.event().expect("deleted");
    /// assert_eq!((event.event_type.as_str(), event.actor.as_deref()), ("Contact.Deleted", Some("agent_7")));
    /// assert!(store.get("c1")?.unwrap().deleted);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn rollback_by(&self, id: &str, ts: impl AsTimestamp, actor: &str) -> Result<RollbackOutcome> {
        self.rollback_with(id, ts.as_timestamp()?, Some(actor))
    }

    fn rollback_with(&self, id: &str, ts: Timestamp, actor: Option<&str>) -> Result<RollbackOutcome> {
        let mut events = undo::append_planned(self, || self.plan_rollback(id, ts, actor))?;
        Ok(events.pop().map_or(RollbackOutcome::Unchanged, RollbackOutcome::Appended))
    }

    /// The rollback event, or nothing if the entity already has its state at `ts`.
    fn plan_rollback(&self, id: &str, ts: Timestamp, actor: Option<&str>) -> Result<Vec<NewEvent>> {
        let current = self.get(id)?.ok_or_else(|| Error::NotFound { entity: id.to_string() })?;
        let (patch, deleted) = match self.get_as_of(id, ts)? {
            None => (Map::new(), true),
            Some(target) => {
                let patch = diff_patch(&current.state, &target.state);
                if let Some(field) = undo::unreachable_field(&current.state, &patch, &target.state) {
                    return Err(Error::invalid(
                        "rollback",
                        format!(
                            "the state of {id:?} at {ts} holds null in field {:?}, which a merge patch cannot write back",
                            field.join(".")
                        ),
                    ));
                }
                (patch, target.deleted)
            }
        };
        if patch.is_empty() && deleted == current.deleted {
            return Ok(Vec::new());
        }
        let mut metadata = Map::new();
        metadata.insert("rollbackTo".into(), Value::from(ts.to_rfc3339()));
        let change = Change::between(current.deleted, deleted);
        Ok(vec![undo::compensating_event(change, id, patch, metadata, actor, current.version)])
    }
}
