//! Listing events: by entity, by type (exact or with `*` wildcards), by actor, by time range,
//! with seq cursors for paging.

use crate::error::Result;
use crate::event::Event;
use crate::timestamp::{AsTimestamp, Timestamp};

/// A filter over the log, in seq order. Every condition is optional; all that are set must
/// hold.
///
/// ```
/// use strata::{EventQuery, Timestamp};
/// let q = EventQuery::new()
///     .entity("contact_1")
///     .event_type("Deal.*")
///     .actor("agent_1")
///     .after(Timestamp::parse("2026-01-01T00:00:00Z")?)
///     .before("2026-02-01T00:00:00Z")?
///     .after_seq(100)
///     .limit(50);
/// assert!(q.matches_type("Deal.Won") && !q.matches_type("Contact.Created"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
pub struct EventQuery {
    pub(crate) entity: Option<String>,
    pub(crate) event_type: Option<String>,
    pub(crate) actor: Option<String>,
    pub(crate) after: Option<Timestamp>,
    pub(crate) before: Option<Timestamp>,
    pub(crate) after_seq: u64,
    pub(crate) limit: Option<usize>,
}

impl EventQuery {
    /// Matches every event.
    ///
    /// ```
    /// let q = strata::EventQuery::new();
    /// assert!(q.matches_type("Anything.Goes"));
    /// ```
    pub fn new() -> Self {
        Self::default()
    }

    /// Only events of this entity.
    ///
    /// ```
    /// let q = strata::EventQuery::new().entity("contact_1");
    /// # let _ = q;
    /// ```
    pub fn entity(mut self, id: impl Into<String>) -> Self {
        self.entity = Some(id.into());
        self
    }

    /// Only events whose type matches: exact (`Contact.Qualified`) or with `*` standing for
    /// any run of characters (`Deal.*`, `*.Qualified`, `*`).
    ///
    /// ```
    /// let q = strata::EventQuery::new().event_type("*.Qualified");
    /// assert!(q.matches_type("Contact.Qualified"));
    /// ```
    pub fn event_type(mut self, pattern: impl Into<String>) -> Self {
        self.event_type = Some(pattern.into());
        self
    }

    /// Only events by this actor.
    ///
    /// ```
    /// let q = strata::EventQuery::new().actor("agent_1");
    /// # let _ = q;
    /// ```
    pub fn actor(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// Only events at or after `ts` (the range is half-open: `[after, before)`).
    ///
    /// ```
    /// let q = strata::EventQuery::new().after(strata::Timestamp::from_micros(0));
    /// # let _ = q;
    /// ```
    pub fn after(mut self, ts: Timestamp) -> Self {
        self.after = Some(ts);
        self
    }

    /// Only events before `ts` (a [`Timestamp`] or an RFC 3339 string).
    ///
    /// ```
    /// let q = strata::EventQuery::new().before("2026-02-01T00:00:00Z")?;
    /// # let _ = q;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn before(mut self, ts: impl AsTimestamp) -> Result<Self> {
        self.before = Some(ts.as_timestamp()?);
        Ok(self)
    }

    /// Only events with a seq greater than `cursor`: pass the last seq of a page to get the
    /// next page.
    ///
    /// ```
    /// let q = strata::EventQuery::new().after_seq(42).limit(100);
    /// # let _ = q;
    /// ```
    pub fn after_seq(mut self, cursor: u64) -> Self {
        self.after_seq = cursor;
        self
    }

    /// At most `n` events.
    ///
    /// ```
    /// let q = strata::EventQuery::new().limit(10);
    /// # let _ = q;
    /// ```
    pub fn limit(mut self, n: usize) -> Self {
        self.limit = Some(n);
        self
    }

    /// Whether an event type matches this query's type pattern (true when there is none).
    ///
    /// ```
    /// let q = strata::EventQuery::new().event_type("Deal.*");
    /// assert!(q.matches_type("Deal.Won"));
    /// assert!(!q.matches_type("Dealer.Won"));
    /// ```
    pub fn matches_type(&self, event_type: &str) -> bool {
        self.event_type.as_deref().is_none_or(|p| wildcard_match(p, event_type))
    }

    /// Whether a timestamp falls in the query's range.
    pub(crate) fn matches_time(&self, ts: i64) -> bool {
        self.after.is_none_or(|a| ts >= a.as_micros()) && self.before.is_none_or(|b| ts < b.as_micros())
    }

    /// Whether a frame spanning `[min_ts, max_ts]` can hold a match.
    pub(crate) fn frame_may_match(&self, min_ts: i64, max_ts: i64) -> bool {
        self.after.is_none_or(|a| max_ts >= a.as_micros()) && self.before.is_none_or(|b| min_ts < b.as_micros())
    }

    /// Whether an event passes every condition.
    ///
    /// ```
    /// # let ev = strata::Event { seq: 5, id: "x".into(), event_type: "Deal.Won".into(), entity: "d".into(), actor: None,
    /// #   timestamp: strata::Timestamp::from_micros(0), version: 1, data: serde_json::json!({}),
    /// #   metadata: serde_json::json!({}), batch: 1, store: strata::StoreId(0) };
    /// assert!(strata::EventQuery::new().event_type("Deal.*").after_seq(4).matches(&ev));
    /// ```
    pub fn matches(&self, ev: &Event) -> bool {
        ev.seq > self.after_seq
            && self.entity.as_deref().is_none_or(|e| e == ev.entity)
            && self.actor.as_deref().is_none_or(|a| Some(a) == ev.actor.as_deref())
            && self.matches_time(ev.timestamp.as_micros())
            && self.matches_type(&ev.event_type)
    }
}

/// Glob matching where `*` matches any run of characters (including none).
pub(crate) fn wildcard_match(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    if parts.len() == 1 {
        return pattern == text;
    }
    let (first, last) = (parts[0], parts[parts.len() - 1]);
    if !text.starts_with(first) || text.len() < first.len() + last.len() || !text.ends_with(last) {
        return false;
    }
    let mut rest = &text[first.len()..text.len() - last.len()];
    for part in &parts[1..parts.len() - 1] {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::wildcard_match;

    #[test]
    fn wildcards() {
        assert!(wildcard_match("Deal.*", "Deal.Created"));
        assert!(wildcard_match("*.Qualified", "Contact.Qualified"));
        assert!(wildcard_match("*", "X.Y"));
        assert!(wildcard_match("C*t.*d", "Contact.Created"));
        assert!(!wildcard_match("Deal.*", "Contact.Created"));
        assert!(!wildcard_match("Contact.Created", "Contact.Create"));
        assert!(!wildcard_match("a*a", "a"));
    }
}
