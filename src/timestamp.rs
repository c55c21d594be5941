//! Event timestamps: microseconds since the Unix epoch, UTC, shown as RFC 3339.

use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::{Error, Result};

/// A point in time: microseconds since the Unix epoch, UTC.
///
/// Every event carries one. Within a store they only grow: each committed batch gets a
/// timestamp later than the previous batch's, even if the wall clock steps back.
///
/// ```
/// use strata::Timestamp;
/// let t = Timestamp::parse("2026-01-15T10:00:00Z")?;
/// assert_eq!(t.to_string(), "2026-01-15T10:00:00Z");
/// assert_eq!(Timestamp::from_micros(t.as_micros() + 1_500_000).to_string(), "2026-01-15T10:00:01.5Z");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The earliest representable timestamp.
    pub const MIN: Timestamp = Timestamp(i64::MIN);
    /// The latest representable timestamp.
    pub const MAX: Timestamp = Timestamp(i64::MAX);

    /// A timestamp from microseconds since the Unix epoch.
    ///
    /// ```
    /// assert_eq!(strata::Timestamp::from_micros(0).to_string(), "1970-01-01T00:00:00Z");
    /// ```
    pub const fn from_micros(micros: i64) -> Self {
        Timestamp(micros)
    }

    /// Microseconds since the Unix epoch.
    ///
    /// ```
    /// assert_eq!(strata::Timestamp::from_micros(42).as_micros(), 42);
    /// ```
    pub const fn as_micros(self) -> i64 {
        self.0
    }

    /// The wall clock now.
    ///
    /// ```
    /// assert!(strata::Timestamp::now() > strata::Timestamp::from_micros(0));
    /// ```
    pub fn now() -> Self {
        let micros = match SystemTime::now().duration_since(UNIX_EPOCH) {
            Ok(d) => i64::try_from(d.as_micros()).unwrap_or(i64::MAX),
            Err(before) => -i64::try_from(before.duration().as_micros()).unwrap_or(i64::MAX),
        };
        Timestamp(micros)
    }

    /// Parses an RFC 3339 date-time such as `2026-01-15T10:00:00Z` or
    /// `2026-01-15T11:00:00.25+01:00`.
    ///
    /// ```
    /// use strata::Timestamp;
    /// assert_eq!(Timestamp::parse("1970-01-01T00:00:01Z")?.as_micros(), 1_000_000);
    /// assert!(Timestamp::parse("yesterday").is_err());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn parse(text: &str) -> Result<Self> {
        let dt =
            OffsetDateTime::parse(text, &Rfc3339).map_err(|e| Error::invalid("timestamp", format!("{text:?} is not RFC 3339: {e}")))?;
        let micros = dt.unix_timestamp_nanos() / 1_000;
        i64::try_from(micros).map(Timestamp).map_err(|_| Error::invalid("timestamp", format!("{text:?} is out of range")))
    }

    /// The timestamp as RFC 3339 in UTC, with as many fractional digits as it needs.
    ///
    /// ```
    /// assert_eq!(strata::Timestamp::from_micros(1).to_rfc3339(), "1970-01-01T00:00:00.000001Z");
    /// ```
    pub fn to_rfc3339(self) -> String {
        let nanos = i128::from(self.0) * 1_000;
        match OffsetDateTime::from_unix_timestamp_nanos(nanos).ok().and_then(|dt| dt.format(&Rfc3339).ok()) {
            Some(text) => text,
            None => format!("@{}us", self.0),
        }
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_rfc3339())
    }
}

impl From<i64> for Timestamp {
    fn from(micros: i64) -> Self {
        Timestamp(micros)
    }
}

/// Anything that names a point in time: a [`Timestamp`] or an RFC 3339 string.
///
/// ```
/// use strata::{AsTimestamp, Timestamp};
/// assert_eq!("1970-01-01T00:00:00Z".as_timestamp()?, Timestamp::from_micros(0));
/// assert_eq!(Timestamp::from_micros(5).as_timestamp()?, Timestamp::from_micros(5));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub trait AsTimestamp {
    /// The point in time, or an error if the text does not parse.
    fn as_timestamp(&self) -> Result<Timestamp>;
}

impl AsTimestamp for Timestamp {
    fn as_timestamp(&self) -> Result<Timestamp> {
        Ok(*self)
    }
}

impl AsTimestamp for &str {
    fn as_timestamp(&self) -> Result<Timestamp> {
        Timestamp::parse(self)
    }
}

impl AsTimestamp for String {
    fn as_timestamp(&self) -> Result<Timestamp> {
        Timestamp::parse(self)
    }
}

impl AsTimestamp for &String {
    fn as_timestamp(&self) -> Result<Timestamp> {
        Timestamp::parse(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_with_offsets_and_fractions() {
        let t = Timestamp::parse("2026-01-15T11:00:00.123456+01:00").unwrap();
        assert_eq!(t.to_string(), "2026-01-15T10:00:00.123456Z");
        assert_eq!(Timestamp::parse(&t.to_string()).unwrap(), t);
    }

    #[test]
    fn negative_timestamps_format() {
        assert_eq!(Timestamp::from_micros(-1_000_000).to_string(), "1969-12-31T23:59:59Z");
    }
}
