//! JSON Merge Patch (RFC 7396), the data of every update event.

use serde_json::{Map, Value};

/// Applies `patch` to the object `target`: `null` removes a field, an object merges
/// recursively, anything else replaces.
///
/// ```
/// use serde_json::json;
/// let mut state = json!({"name": "Alice", "address": {"city": "Paris", "zip": "75001"}});
/// let patch = json!({"address": {"zip": null}, "stage": "Lead"});
/// strata::merge_patch(state.as_object_mut().unwrap(), patch.as_object().unwrap());
/// assert_eq!(state, json!({"name": "Alice", "address": {"city": "Paris"}, "stage": "Lead"}));
/// ```
pub fn merge_patch(target: &mut Map<String, Value>, patch: &Map<String, Value>) {
    for (key, value) in patch {
        match value {
            Value::Null => {
                target.remove(key);
            }
            Value::Object(inner) => {
                if !target.get(key).is_some_and(Value::is_object) {
                    target.insert(key.clone(), Value::Object(Map::new()));
                }
                if let Some(Value::Object(obj)) = target.get_mut(key) {
                    merge_patch(obj, inner);
                }
            }
            // Replacing a member in place keeps its key: no new key string to allocate.
            other => match target.get_mut(key) {
                Some(slot) => *slot = other.clone(),
                None => {
                    target.insert(key.clone(), other.clone());
                }
            },
        }
    }
}

/// The merge patch that turns `from` into `to` (the inverse of [`merge_patch`]): fields
/// missing in `to` become `null`, changed nested objects recurse.
///
/// ```
/// use serde_json::json;
/// let from = json!({"a": 1, "b": {"c": 2, "d": 3}});
/// let to = json!({"b": {"c": 2, "d": 4}, "e": 5});
/// let patch = strata::diff_patch(from.as_object().unwrap(), to.as_object().unwrap());
/// assert_eq!(serde_json::Value::Object(patch), json!({"a": null, "b": {"d": 4}, "e": 5}));
/// ```
pub fn diff_patch(from: &Map<String, Value>, to: &Map<String, Value>) -> Map<String, Value> {
    let mut patch = Map::new();
    for key in from.keys() {
        if !to.contains_key(key) {
            patch.insert(key.clone(), Value::Null);
        }
    }
    for (key, new) in to {
        match (from.get(key), new) {
            (Some(old), new) if old == new => {}
            (Some(Value::Object(old)), Value::Object(new)) => {
                patch.insert(key.clone(), Value::Object(diff_patch(old, new)));
            }
            // A merge patch cannot set a field to null or write an object over a scalar
            // without merging; an object replacing a non-object is written whole (merge into
            // an empty object gives exactly it), and nulls inside objects are not
            // representable (RFC 7396 section 1).
            _ => {
                patch.insert(key.clone(), new.clone());
            }
        }
    }
    patch
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(v: Value) -> Map<String, Value> {
        v.as_object().cloned().unwrap()
    }

    #[test]
    fn rfc7396_examples() {
        let cases = [
            (json!({"a": "b"}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": "b"}), json!({"b": "c"}), json!({"a": "b", "b": "c"})),
            (json!({"a": "b"}), json!({"a": null}), json!({})),
            (json!({"a": "b", "b": "c"}), json!({"a": null}), json!({"b": "c"})),
            (json!({"a": ["b"]}), json!({"a": "c"}), json!({"a": "c"})),
            (json!({"a": {"b": "c"}}), json!({"a": {"b": "d", "c": null}}), json!({"a": {"b": "d"}})),
            (json!({"a": "foo"}), json!({"a": {"bb": {"ccc": null}}}), json!({"a": {"bb": {}}})),
        ];
        for (target, patch, want) in cases {
            let mut t = obj(target);
            merge_patch(&mut t, &obj(patch));
            assert_eq!(Value::Object(t), want);
        }
    }

    #[test]
    fn diff_then_patch_reaches_target() {
        let from = obj(json!({"a": 1, "n": {"x": 1, "y": [1, 2]}, "s": "k"}));
        let to = obj(json!({"n": {"y": [3]}, "s": {"deep": true}, "z": false}));
        let mut t = from.clone();
        merge_patch(&mut t, &diff_patch(&from, &to));
        assert_eq!(t, to);
    }
}
