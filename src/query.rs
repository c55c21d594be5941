//! Queries over entity state, now or as of a past time: filters on top-level and dotted
//! nested fields, combined with AND, in a stable order (by entity id).

use std::cmp::Ordering;

use serde_json::{Map, Value};

use crate::entity::Entity;
use crate::error::{Error, Result};
use crate::timestamp::{AsTimestamp, Timestamp};

/// How a filter compares a field with its operand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Eq,
    Ne,
    Lt,
    Lte,
    Gt,
    Gte,
    In,
    Exists,
}

#[derive(Debug, Clone, PartialEq)]
struct Filter {
    path: String,
    op: Op,
    operand: Value,
}

/// A query over entities: a kind (or all kinds), filters combined with AND, an optional
/// point in time, a limit. Results come in entity-id order.
///
/// A filter only matches a field that exists and has the operand's JSON type (numbers
/// compare as numbers, strings by bytes): a field of the wrong type simply does not match.
///
/// ```
/// use strata::Query;
/// let q = Query::kind("Contact").eq("stage", "Lead").gte("score", 50).exists("address.city").limit(10);
/// # let _ = q;
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    kind: Option<String>,
    filters: Vec<Filter>,
    as_of: Option<std::result::Result<Timestamp, String>>,
    include_deleted: bool,
    limit: Option<usize>,
}

impl Query {
    /// Entities of one kind.
    ///
    /// ```
    /// let q = strata::Query::kind("Deal");
    /// # let _ = q;
    /// ```
    pub fn kind(kind: impl Into<String>) -> Self {
        Query { kind: Some(kind.into()), ..Self::all() }
    }

    /// Entities of every kind.
    ///
    /// ```
    /// let q = strata::Query::all().eq("owner", "agent_1");
    /// # let _ = q;
    /// ```
    pub fn all() -> Self {
        Query { kind: None, filters: Vec::new(), as_of: None, include_deleted: false, limit: None }
    }

    fn filter(mut self, path: impl Into<String>, op: Op, operand: Value) -> Self {
        self.filters.push(Filter { path: path.into(), op, operand });
        self
    }

    /// The field equals `value`.
    ///
    /// ```
    /// let q = strata::Query::kind("Contact").eq("stage", "Lead");
    /// # let _ = q;
    /// ```
    pub fn eq(self, path: impl Into<String>, value: impl Into<Value>) -> Self {
        self.filter(path, Op::Eq, value.into())
    }

    /// The field exists, has `value`'s type, and differs from it.
    ///
    /// ```
    /// let q = strata::Query::kind("Contact").ne("stage", "Lost");
    /// # let _ = q;
    /// ```
    pub fn ne(self, path: impl Into<String>, value: impl Into<Value>) -> Self {
        self.filter(path, Op::Ne, value.into())
    }

    /// The field is less than `value` (a number or a string).
    ///
    /// ```
    /// let q = strata::Query::kind("Deal").lt("amount", 1000);
    /// # let _ = q;
    /// ```
    pub fn lt(self, path: impl Into<String>, value: impl Into<Value>) -> Self {
        self.filter(path, Op::Lt, value.into())
    }

    /// The field is at most `value`.
    ///
    /// ```
    /// let q = strata::Query::kind("Deal").lte("amount", 1000);
    /// # let _ = q;
    /// ```
    pub fn lte(self, path: impl Into<String>, value: impl Into<Value>) -> Self {
        self.filter(path, Op::Lte, value.into())
    }

    /// The field is greater than `value`.
    ///
    /// ```
    /// let q = strata::Query::kind("Deal").gt("amount", 1000);
    /// # let _ = q;
    /// ```
    pub fn gt(self, path: impl Into<String>, value: impl Into<Value>) -> Self {
        self.filter(path, Op::Gt, value.into())
    }

    /// The field is at least `value`.
    ///
    /// ```
    /// let q = strata::Query::kind("Deal").gte("amount", 1000);
    /// # let _ = q;
    /// ```
    pub fn gte(self, path: impl Into<String>, value: impl Into<Value>) -> Self {
        self.filter(path, Op::Gte, value.into())
    }

    /// The field equals one of `values`.
    ///
    /// ```
    /// let q = strata::Query::kind("Contact").is_in("stage", ["Lead", "Qualified"]);
    /// # let _ = q;
    /// ```
    pub fn is_in<V: Into<Value>>(self, path: impl Into<String>, values: impl IntoIterator<Item = V>) -> Self {
        let list = Value::Array(values.into_iter().map(Into::into).collect());
        self.filter(path, Op::In, list)
    }

    /// The field exists (with any value, `null` included).
    ///
    /// ```
    /// let q = strata::Query::kind("Contact").exists("address.city");
    /// # let _ = q;
    /// ```
    pub fn exists(self, path: impl Into<String>) -> Self {
        self.filter(path, Op::Exists, Value::Null)
    }

    /// Evaluates the query as of `ts` (a [`Timestamp`] or RFC 3339 text; default: now).
    ///
    /// ```
    /// let q = strata::Query::kind("Contact").eq("stage", "Lead").as_of("2026-01-15T10:00:00Z");
    /// # let _ = q;
    /// ```
    pub fn as_of(mut self, ts: impl AsTimestamp) -> Self {
        self.as_of = Some(ts.as_timestamp().map_err(|e| e.to_string()));
        self
    }

    /// Includes soft-deleted entities (skipped by default).
    ///
    /// ```
    /// let q = strata::Query::kind("Contact").include_deleted();
    /// # let _ = q;
    /// ```
    pub fn include_deleted(mut self) -> Self {
        self.include_deleted = true;
        self
    }

    /// At most `n` entities.
    ///
    /// ```
    /// let q = strata::Query::kind("Contact").limit(100);
    /// # let _ = q;
    /// ```
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Checks the query is well formed: a valid kind, non-empty field paths without empty
    /// segments, range operands that are numbers or strings, an `is_in` list, a valid time.
    pub(crate) fn validate(&self) -> Result<()> {
        if let Some(kind) = &self.kind {
            crate::event::validate_identifier("kind", kind).map_err(|e| Error::invalid("query", e.to_string()))?;
        }
        if let Some(Err(reason)) = &self.as_of {
            return Err(Error::invalid("query", reason.clone()));
        }
        for f in &self.filters {
            if f.path.is_empty() || f.path.split('.').any(str::is_empty) {
                return Err(Error::invalid("query", format!("field path {:?} is empty or has an empty segment", f.path)));
            }
            let range = matches!(f.op, Op::Lt | Op::Lte | Op::Gt | Op::Gte);
            if range && !(f.operand.is_number() || f.operand.is_string()) {
                return Err(Error::invalid("query", format!("{:?} on {:?} needs a number or a string, not {}", f.op, f.path, f.operand)));
            }
        }
        Ok(())
    }

    pub(crate) fn kind_name(&self) -> Option<&str> {
        self.kind.as_deref()
    }

    pub(crate) fn time(&self) -> Option<Timestamp> {
        self.as_of.as_ref().and_then(|t| t.as_ref().ok().copied())
    }

    pub(crate) fn wants_deleted(&self) -> bool {
        self.include_deleted
    }

    pub(crate) fn max(&self) -> usize {
        self.limit.unwrap_or(usize::MAX)
    }

    /// Whether an entity's state passes every filter (kind and deleted are checked by the
    /// caller).
    pub fn matches(&self, entity: &Entity) -> bool {
        self.filters.iter().all(|f| f.matches(&entity.state))
    }
}

/// Follows a dotted path into nested objects.
fn lookup<'a>(state: &'a Map<String, Value>, path: &str) -> Option<&'a Value> {
    let mut parts = path.split('.');
    let mut cur = state.get(parts.next()?)?;
    for part in parts {
        cur = cur.as_object()?.get(part)?;
    }
    Some(cur)
}

/// Compares two JSON values of the same type (numbers numerically, strings by bytes,
/// booleans, null); `None` for different types or for arrays and objects (which only
/// compare for equality).
fn compare(a: &Value, b: &Value) -> Option<Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => match (x.as_i64(), y.as_i64()) {
            (Some(i), Some(j)) => Some(i.cmp(&j)),
            _ => x.as_f64()?.partial_cmp(&y.as_f64()?),
        },
        (Value::String(x), Value::String(y)) => Some(x.cmp(y)),
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(Ordering::Equal),
        _ => None,
    }
}

fn equal(a: &Value, b: &Value) -> Option<bool> {
    match (a, b) {
        (Value::Array(_), Value::Array(_)) | (Value::Object(_), Value::Object(_)) => Some(a == b),
        _ => compare(a, b).map(|o| o == Ordering::Equal),
    }
}

impl Filter {
    fn matches(&self, state: &Map<String, Value>) -> bool {
        let Some(field) = lookup(state, &self.path) else { return false };
        match self.op {
            Op::Exists => true,
            Op::Eq => equal(field, &self.operand) == Some(true),
            Op::Ne => equal(field, &self.operand) == Some(false),
            Op::Lt => compare(field, &self.operand) == Some(Ordering::Less),
            Op::Lte => matches!(compare(field, &self.operand), Some(Ordering::Less | Ordering::Equal)),
            Op::Gt => compare(field, &self.operand) == Some(Ordering::Greater),
            Op::Gte => matches!(compare(field, &self.operand), Some(Ordering::Greater | Ordering::Equal)),
            Op::In => self.operand.as_array().is_some_and(|list| list.iter().any(|v| equal(field, v) == Some(true))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entity(state: Value) -> Entity {
        Entity {
            id: "e".into(),
            kind: "K".into(),
            version: 1,
            state: std::sync::Arc::new(state.as_object().cloned().unwrap()),
            deleted: false,
            created_at: Timestamp::from_micros(0),
            updated_at: Timestamp::from_micros(0),
        }
    }

    #[test]
    fn filters_follow_types_and_paths() {
        let e = entity(json!({"stage": "Lead", "score": 70, "amount": 12.5, "address": {"city": "Paris"}, "tags": ["a"]}));
        assert!(Query::all().eq("stage", "Lead").matches(&e));
        assert!(Query::all().eq("score", 70.0).matches(&e));
        assert!(Query::all().gt("score", 69).lt("amount", 13).matches(&e));
        assert!(Query::all().eq("address.city", "Paris").exists("address").matches(&e));
        assert!(Query::all().is_in("stage", ["Won", "Lead"]).matches(&e));
        assert!(Query::all().eq("tags", json!(["a"])).matches(&e));
        // Wrong types and missing fields never match, not even `ne`.
        assert!(!Query::all().gt("stage", 1).matches(&e));
        assert!(!Query::all().ne("score", "70").matches(&e));
        assert!(!Query::all().ne("missing", 1).matches(&e));
        assert!(!Query::all().exists("address.zip").matches(&e));
        assert!(Query::all().ne("stage", "Won").matches(&e));
    }

    #[test]
    fn malformed_queries_are_errors() {
        assert!(Query::all().eq("", 1).validate().is_err());
        assert!(Query::all().eq("a..b", 1).validate().is_err());
        assert!(Query::all().lt("a", json!({})).validate().is_err());
        assert!(Query::kind("not a kind").validate().is_err());
        assert!(Query::all().as_of("yesterday").validate().is_err());
        assert!(Query::kind("Contact").gte("n", 1).validate().is_ok());
    }
}
