//! The SQLite baseline: an event store built the way a careful user would build one.
//!
//! One table of events in a WAL-mode database with `synchronous=FULL`, so that every
//! committed transaction is durable (the WAL is fsynced at each commit):
//!
//! ```sql
//! events(seq INTEGER PRIMARY KEY, entity TEXT NOT NULL, version INTEGER NOT NULL,
//!        ts INTEGER NOT NULL, type TEXT NOT NULL, actor TEXT, data TEXT NOT NULL)
//! ```
//!
//! with indexes on `(entity, version)` and `(entity, ts)`. Creates store the entity's
//! data, updates their merge patch, deletes and restores `{}`; reads fold the rows
//! with the reference fold of [`super::workload`]. The entity kind is not stored (the
//! schema has no column for it; the id carries it).
//!
//! Timestamps are microseconds since the Unix epoch, strictly increasing in commit
//! order, from a monotonic counter seeded from the wall clock. Per-entity versions are
//! tracked in memory. Both live in state shared by every connection of a store (see
//! [`SqliteStore::connect`]) and are assigned while the connection holds SQLite's
//! write lock (`BEGIN IMMEDIATE`), so several threads, each with its own connection,
//! can append concurrently.

#![allow(dead_code)]

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rusqlite::{Connection, TransactionBehavior, params};
use serde_json::Value;

use super::workload::{EntityState, EventKind, Op};

/// The database file inside the store's directory.
pub const DB_FILE: &str = "events.db";

/// How long a connection waits for another's write lock before giving up.
pub const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

/// Anything that can go wrong: SQLite, JSON, the file system, or an invalid op.
pub type Error = Box<dyn std::error::Error + Send + Sync>;
/// A result with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS events (
        seq     INTEGER PRIMARY KEY,
        entity  TEXT    NOT NULL,
        version INTEGER NOT NULL,
        ts      INTEGER NOT NULL,
        type    TEXT    NOT NULL,
        actor   TEXT,
        data    TEXT    NOT NULL
    );
    CREATE INDEX IF NOT EXISTS events_entity_version ON events (entity, version);
    CREATE INDEX IF NOT EXISTS events_entity_ts ON events (entity, ts);
";

const INSERT: &str = "INSERT INTO events (entity, version, ts, type, actor, data) VALUES (?1, ?2, ?3, ?4, NULL, ?5)";

/// What the store remembers about an entity between appends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Head {
    /// The entity's latest version (its number of events).
    version: i64,
    /// Whether its last event left it deleted.
    deleted: bool,
}

/// A monotonic microsecond clock: the wall clock at seeding, advanced by a monotonic
/// `Instant`, and never repeating a value.
#[derive(Debug)]
struct Clock {
    base_micros: i64,
    base: Instant,
    last: i64,
}

impl Clock {
    /// A clock that starts from the wall clock now, or just after `after` if that is
    /// later.
    fn seeded(after: i64) -> Self {
        let wall = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
        Clock { base_micros: wall.max(after.saturating_add(1)), base: Instant::now(), last: after }
    }

    /// The next timestamp: strictly greater than every earlier one.
    fn next(&mut self) -> i64 {
        let elapsed = i64::try_from(self.base.elapsed().as_micros()).unwrap_or(i64::MAX);
        let now = self.base_micros.saturating_add(elapsed);
        self.last = now.max(self.last + 1);
        self.last
    }
}

/// State shared by all connections of one store.
#[derive(Debug)]
struct Shared {
    heads: HashMap<String, Head>,
    clock: Clock,
}

/// An SQLite event store: one connection, plus the in-memory state it shares with the
/// other connections made by [`SqliteStore::connect`].
#[derive(Debug)]
pub struct SqliteStore {
    conn: Connection,
    dir: PathBuf,
    shared: Arc<Mutex<Shared>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `dir`, whose database is `dir/events.db`.
    ///
    /// Loads every entity's latest version and the latest timestamp, so that appends
    /// continue where an earlier run stopped.
    pub fn open(dir: &Path) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|e| format!("creating store directory {}: {e}", dir.display()))?;
        let conn = open_connection(dir)?;
        conn.execute_batch(SCHEMA)?;

        let mut heads = HashMap::new();
        {
            // SQLite returns the bare column `type` from the row holding MAX(version).
            let mut stmt = conn.prepare("SELECT entity, MAX(version), type FROM events GROUP BY entity")?;
            let mut rows = stmt.query([])?;
            while let Some(row) = rows.next()? {
                let entity: String = row.get(0)?;
                let version: i64 = row.get(1)?;
                let event_type: String = row.get(2)?;
                let deleted = EventKind::from_event_type(&event_type) == EventKind::Delete;
                heads.insert(entity, Head { version, deleted });
            }
        }
        let last_ts: i64 = conn.query_row("SELECT COALESCE(MAX(ts), 0) FROM events", [], |r| r.get(0))?;

        Ok(SqliteStore { conn, dir: dir.to_owned(), shared: Arc::new(Mutex::new(Shared { heads, clock: Clock::seeded(last_ts) })) })
    }

    /// Another connection to the same store, sharing its versions and clock: give one
    /// to each appending thread.
    pub fn connect(&self) -> Result<Self> {
        Ok(SqliteStore { conn: open_connection(&self.dir)?, dir: self.dir.clone(), shared: Arc::clone(&self.shared) })
    }

    /// The store's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends one op in its own durable transaction; returns its timestamp.
    pub fn append_one(&mut self, op: &Op) -> Result<i64> {
        let mut stamps = self.append(std::slice::from_ref(op))?;
        stamps.pop().ok_or_else(|| "append of one op stamped none".into())
    }

    /// Appends `ops` in one durable transaction, all or nothing; returns their
    /// timestamps, in order.
    pub fn append_batch(&mut self, ops: &[Op]) -> Result<Vec<i64>> {
        self.append(ops)
    }

    fn append(&mut self, ops: &[Op]) -> Result<Vec<i64>> {
        // Take SQLite's write lock first, then the shared state: everyone who holds the
        // state holds the write lock, so timestamps and versions follow commit order.
        let tx = self.conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut shared = lock(&self.shared)?;
        // Heads changed by this batch, applied to the shared state only on commit.
        let mut staged: HashMap<&str, Head> = HashMap::new();
        let mut stamps = Vec::with_capacity(ops.len());
        {
            let mut insert = tx.prepare_cached(INSERT)?;
            for op in ops {
                let id = op.entity();
                let head = staged.get(id).or_else(|| shared.heads.get(id)).copied();
                let next = next_head(op, head)?;
                let ts = shared.clock.next();
                let data = match op.payload() {
                    Some(value) => serde_json::to_string(value)?,
                    None => "{}".to_owned(),
                };
                insert.execute(params![id, next.version, ts, op.event_type(), data])?;
                staged.insert(id, next);
                stamps.push(ts);
            }
        }
        tx.commit()?;
        for (id, head) in staged {
            shared.heads.insert(id.to_owned(), head);
        }
        Ok(stamps)
    }

    /// The entity's current state: all its rows folded, or `None` if it does not exist
    /// or is deleted.
    pub fn get(&self, entity: &str) -> Result<Option<Value>> {
        let mut stmt = self.conn.prepare_cached("SELECT type, data FROM events WHERE entity = ?1 ORDER BY version")?;
        let rows = stmt.query(params![entity])?;
        fold_rows(rows)
    }

    /// The entity's state as of `ts` (inclusive): the merge patches of its rows with
    /// `ts <= ts` folded in version order.
    pub fn get_as_of(&self, entity: &str, ts: i64) -> Result<Option<Value>> {
        let mut stmt = self.conn.prepare_cached("SELECT type, data FROM events WHERE entity = ?1 AND ts <= ?2 ORDER BY version")?;
        let rows = stmt.query(params![entity, ts])?;
        fold_rows(rows)
    }

    /// The timestamps of the entity's events, in version order (for picking as-of
    /// points).
    pub fn timestamps(&self, entity: &str) -> Result<Vec<i64>> {
        let mut stmt = self.conn.prepare_cached("SELECT ts FROM events WHERE entity = ?1 ORDER BY version")?;
        let stamps = stmt.query_map(params![entity], |row| row.get(0))?.collect::<rusqlite::Result<Vec<i64>>>()?;
        Ok(stamps)
    }

    /// The number of stored events.
    pub fn event_count(&self) -> Result<u64> {
        let count: i64 = self.conn.query_row("SELECT COUNT(*) FROM events", [], |r| r.get(0))?;
        Ok(u64::try_from(count)?)
    }

    /// A full replay: reads every row in `seq` order and folds every entity's state
    /// into a map, as rebuilding a projection from scratch would. Returns the number
    /// of events read.
    pub fn replay_all(&self) -> Result<u64> {
        let (events, states) = self.replay_states()?;
        std::hint::black_box(&states);
        Ok(events)
    }

    /// Like [`SqliteStore::replay_all`], but returns the folded states too.
    pub fn replay_states(&self) -> Result<(u64, HashMap<String, EntityState>)> {
        let mut states: HashMap<String, EntityState> = HashMap::new();
        let mut events = 0u64;
        let mut stmt = self.conn.prepare_cached("SELECT entity, type, data FROM events ORDER BY seq")?;
        let mut rows = stmt.query([])?;
        while let Some(row) = rows.next()? {
            let entity = row.get_ref(0)?.as_str()?;
            let kind = EventKind::from_event_type(row.get_ref(1)?.as_str()?);
            let data = row.get_ref(2)?.as_str()?;
            // Look up by &str first: allocating the id only for new entities.
            if let Some(state) = states.get_mut(entity) {
                apply_row(state, kind, data)?;
            } else {
                let mut state = EntityState::default();
                apply_row(&mut state, kind, data)?;
                states.insert(entity.to_owned(), state);
            }
            events += 1;
        }
        Ok((events, states))
    }

    /// Moves the WAL into the database and truncates it: `PRAGMA
    /// wal_checkpoint(TRUNCATE)`. Fails if another connection kept it from completing.
    pub fn checkpoint(&self) -> Result<()> {
        let busy: i64 = self.conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))?;
        if busy != 0 {
            return Err("wal_checkpoint(TRUNCATE) could not complete: the database is busy".into());
        }
        Ok(())
    }

    /// Bytes on disk after a [`SqliteStore::checkpoint`]: the database, WAL and
    /// shared-memory files together.
    pub fn bytes_on_disk(&self) -> Result<u64> {
        self.checkpoint()?;
        Ok(bytes_on_disk(&self.dir)?)
    }
}

/// The size of the database, WAL and shared-memory files in `dir` (missing files count
/// as zero). Checkpoint first (see [`SqliteStore::bytes_on_disk`]) for a fair figure.
pub fn bytes_on_disk(dir: &Path) -> io::Result<u64> {
    let mut total = 0;
    for suffix in ["", "-wal", "-shm"] {
        let path = dir.join(format!("{DB_FILE}{suffix}"));
        match fs::metadata(&path) {
            Ok(meta) => total += meta.len(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(io::Error::new(e.kind(), format!("{}: {e}", path.display()))),
        }
    }
    Ok(total)
}

/// Opens a connection to `dir/events.db` in WAL mode with `synchronous=FULL` and a
/// busy timeout.
fn open_connection(dir: &Path) -> Result<Connection> {
    let path = dir.join(DB_FILE);
    let conn = Connection::open(&path).map_err(|e| format!("opening {}: {e}", path.display()))?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("{}: journal_mode is {mode}, not wal", path.display()).into());
    }
    conn.pragma_update(None, "synchronous", "FULL")?;
    Ok(conn)
}

/// The shared state, or an error if a thread panicked while holding it.
fn lock(shared: &Mutex<Shared>) -> Result<MutexGuard<'_, Shared>> {
    shared.lock().map_err(|_| "the store's shared state is poisoned: an appending thread panicked".into())
}

/// The entity's head after `op`, or an error if `op` is not valid for `head`.
fn next_head(op: &Op, head: Option<Head>) -> Result<Head> {
    let (version, deleted) = match (op, head) {
        (Op::Create { .. }, None) => (0, false),
        (Op::Update { .. }, Some(h)) if !h.deleted => (h.version, false),
        (Op::Delete { .. }, Some(h)) if !h.deleted => (h.version, true),
        (Op::Restore { .. }, Some(h)) if h.deleted => (h.version, false),
        (_, head) => {
            return Err(format!("{} of entity {:?} is invalid in its state ({head:?})", op.event_type(), op.entity()).into());
        }
    };
    Ok(Head { version: version + 1, deleted })
}

/// Folds `(type, data)` rows, in version order, into an entity's visible state.
fn fold_rows(mut rows: rusqlite::Rows<'_>) -> Result<Option<Value>> {
    let mut state = EntityState::default();
    while let Some(row) = rows.next()? {
        let kind = EventKind::from_event_type(row.get_ref(0)?.as_str()?);
        apply_row(&mut state, kind, row.get_ref(1)?.as_str()?)?;
    }
    Ok(state.current().is_some().then_some(state.data))
}

/// Folds one stored event into `state`; deletes and restores skip parsing their `{}`.
fn apply_row(state: &mut EntityState, kind: EventKind, data: &str) -> Result<()> {
    let data = match kind {
        EventKind::Create | EventKind::Update => serde_json::from_str(data)?,
        EventKind::Delete | EventKind::Restore => Value::Null,
    };
    state.apply_owned(kind, data);
    Ok(())
}
