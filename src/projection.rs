//! Projection: how an event changes an entity. Every read of current or past state, the
//! writer's checks and the validators see the same fold.

use serde_json::{Map, Value};

use crate::entity::Entity;
use crate::timestamp::Timestamp;

/// What a verb does to the entity, beyond merging its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// `Created`: the data is the whole state.
    Create,
    /// `Deleted`: merge the data (usually empty), then mark deleted.
    Delete,
    /// `Restored`: merge the data (usually empty), then clear the deleted mark.
    Restore,
    /// `Updated` or a custom verb: merge the data.
    Patch,
}

/// Splits `Kind.Verb` at its dot (kinds and verbs never contain one). A byte scan: this
/// runs for every record replayed.
pub(crate) fn split_type(event_type: &str) -> (&str, &str) {
    match event_type.bytes().position(|b| b == b'.') {
        Some(i) => (&event_type[..i], &event_type[i + 1..]),
        None => (event_type, ""),
    }
}

/// The effect of an event type's verb.
pub(crate) fn effect_of(event_type: &str) -> Effect {
    effect_of_verb(split_type(event_type).1)
}

/// The effect of a verb.
pub(crate) fn effect_of_verb(verb: &str) -> Effect {
    match verb {
        "Created" => Effect::Create,
        "Deleted" => Effect::Delete,
        "Restored" => Effect::Restore,
        _ => Effect::Patch,
    }
}

/// Applies one event to `entity` (None before its creation).
pub(crate) fn apply(
    entity: &mut Option<Entity>,
    id: &str,
    event_type: &str,
    version: u64,
    timestamp: Timestamp,
    data: &Map<String, Value>,
) {
    let ts = timestamp;
    match (effect_of(event_type), entity.as_mut()) {
        (Effect::Create, _) | (_, None) => {
            let kind = split_type(event_type).0;
            *entity = Some(Entity {
                id: id.to_string(),
                kind: kind.to_string(),
                version,
                state: std::sync::Arc::new(data.clone()),
                deleted: false,
                created_at: ts,
                updated_at: ts,
            });
        }
        (effect, Some(e)) => {
            // A fold owns its state alone (no copy here) unless it started from a state the
            // index or a caller still holds; then the map is copied once, on its first event.
            crate::merge_patch::merge_patch(std::sync::Arc::make_mut(&mut e.state), data);
            match effect {
                Effect::Delete => e.deleted = true,
                Effect::Restore => e.deleted = false,
                Effect::Patch | Effect::Create => {}
            }
            e.version = version;
            e.updated_at = ts;
        }
    }
}

/// The data of an event as an object (an empty one for anything else: the writer never
/// stores non-object data).
pub(crate) fn data_object(data: &Value) -> &Map<String, Value> {
    static EMPTY: std::sync::OnceLock<Map<String, Value>> = std::sync::OnceLock::new();
    data.as_object().unwrap_or_else(|| EMPTY.get_or_init(Map::new))
}
