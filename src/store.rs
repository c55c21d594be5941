//! The public API: [`Store`], a handle to one store directory.

use std::any::Any;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Weak};
use std::thread::JoinHandle;
use std::time::Duration;

use parking_lot::{Mutex, RwLock};

use crate::dictionary::Dictionaries;
use crate::entity::Entity;
use crate::error::{Error, Result};
use crate::event::{Event, NewEvent, StoreId};
use crate::event_query::EventQuery;
use crate::group_commit::{self, GroupCommit};
use crate::options::{Durability, Options};
use crate::query::Query;
use crate::storage::{FsStorage, Storage};
use crate::timestamp::AsTimestamp;
use crate::writer::{View, Writer};

/// A before-append check registered for one kind: `(before, event, after)`.
pub type Validator = Arc<dyn Fn(Option<&Entity>, &Event, &Entity) -> std::result::Result<(), String> + Send + Sync>;

/// Validators by kind.
pub(crate) type Validators = HashMap<String, Vec<Validator>>;

/// Everything the handles of one open store share.
pub(crate) struct Shared {
    pub(crate) dir: PathBuf,
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) options: Options,
    pub(crate) store_id: StoreId,
    pub(crate) dicts: Arc<Dictionaries>,
    pub(crate) view: RwLock<View>,
    pub(crate) writer: Mutex<Writer>,
    pub(crate) group: GroupCommit,
    pub(crate) validators: RwLock<Validators>,
    /// Held while a checkpoint is written (one at a time).
    pub(crate) checkpointing: Mutex<()>,
    /// The background checkpoint thread, if one is running.
    pub(crate) background: Mutex<Option<JoinHandle<()>>>,
    pub(crate) _lock: Box<dyn Any + Send + Sync>,
}

impl Shared {
    /// Starts a checkpoint on a background thread unless one is already running (called
    /// after a commit once enough has been appended since the last checkpoint).
    pub(crate) fn start_background_checkpoint(self: &Arc<Self>) {
        let mut background = self.background.lock();
        if background.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        let shared = Arc::downgrade(self);
        *background = Some(std::thread::spawn(move || {
            let Some(shared) = shared.upgrade() else { return };
            let Some(_one_at_a_time) = shared.checkpointing.try_lock() else { return };
            if let Err(e) = crate::checkpoint::write(&shared) {
                tracing::warn!(store = %shared.dir.display(), error = %e, "background checkpoint failed");
            }
        }));
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let writer = self.writer.get_mut();
        if writer.poisoned.is_none()
            && let Err(e) = writer.close()
        {
            tracing::error!(store = %self.dir.display(), error = %e, "closing the active segment failed");
        }
    }
}

/// An open store: an embedded, append-only event log with the current state of every entity.
///
/// `Store` is `Send + Sync`: share it (or an `Arc` of it) between threads; reads proceed
/// while appends go on, and concurrent appenders are group-committed. Dropping the store
/// syncs and closes it.
///
/// ```
/// use strata::{EventQuery, NewEvent, Options, Store};
/// use serde_json::json;
///
/// let dir = tempfile::tempdir()?;
/// let store = Store::open(dir.path(), Options::default())?;
/// store.append(NewEvent::create("Contact", "contact_1", json!({"name": "Alice", "stage": "Lead"})).actor("agent_1"))?;
/// store.append(NewEvent::update("contact_1", json!({"stage": "Qualified"})).verb("Qualified").expect_version(1))?;
/// let contact = store.get("contact_1")?.expect("exists");
/// assert_eq!((contact.version, contact.state["stage"].as_str()), (2, Some("Qualified")));
/// let qualified = store.events(&EventQuery::new().event_type("*.Qualified"))?;
/// assert_eq!(qualified.len(), 1);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Store {
    shared: Arc<Shared>,
    flusher: Option<(mpsc::Sender<()>, JoinHandle<()>)>,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store").field("dir", &self.shared.dir).field("store_id", &self.shared.store_id).finish()
    }
}

impl Store {
    /// Opens the store in `dir`, creating it if missing, recovering from a crash if needed,
    /// and taking the exclusive writer lock (a second writer gets [`Error::Locked`]).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let store = strata::Store::open(dir.path(), strata::Options::default())?;
    /// assert!(matches!(strata::Store::open(dir.path(), strata::Options::default()), Err(strata::Error::Locked { .. })));
    /// # drop(store);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<Store> {
        Self::open_with_storage(dir, options, Arc::new(FsStorage))
    }

    /// Opens a store through another [`Storage`] (the fault-injecting one in tests).
    ///
    /// ```
    /// use std::sync::Arc;
    /// let dir = tempfile::tempdir()?;
    /// let store = strata::Store::open_with_storage(dir.path(), strata::Options::default(), Arc::new(strata::FsStorage))?;
    /// # drop(store);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open_with_storage(dir: impl AsRef<Path>, options: Options, storage: Arc<dyn Storage>) -> Result<Store> {
        if options.max_event_bytes > crate::record::MAX_RECORD_BYTES {
            return Err(Error::invalid("options", format!("max_event_bytes is over the limit of {}", crate::record::MAX_RECORD_BYTES)));
        }
        if options.segment_size_bytes >= crate::segment_set::MAX_SEGMENT_BYTES {
            return Err(Error::invalid("options", "segment_size_bytes must be under 1 TiB"));
        }
        let shared = Arc::new(crate::recovery::open(dir.as_ref(), options, storage)?);
        let flusher = match shared.options.durability {
            Durability::Interval(ms) => Some(spawn_flusher(Arc::downgrade(&shared), Duration::from_millis(ms.max(1)))),
            _ => None,
        };
        Ok(Store { shared, flusher })
    }

    /// Appends one event and returns it as stored (with its seq, id, version and timestamp).
    ///
    /// ```
    /// use serde_json::json;
    /// let dir = tempfile::tempdir()?;
    /// let store = strata::Store::open(dir.path(), strata::Options::default())?;
    /// let ev = store.append(strata::NewEvent::create("Contact", "c1", json!({"name": "Alice"})))?;
    /// assert_eq!(ev.event_type, "Contact.Created");
    /// assert!(matches!(store.append(strata::NewEvent::update("nobody", json!({}))), Err(strata::Error::NotFound { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn append(&self, event: NewEvent) -> Result<Event> {
        let mut events = group_commit::submit(&self.shared, vec![event])?;
        events.pop().ok_or_else(|| Error::invalid("batch", "internal: an append returned no event"))
    }

    /// Appends events atomically across any entities: all are written in one commit (one
    /// frame, one fsync) or none is. They share a batch id and a timestamp.
    ///
    /// ```
    /// use serde_json::json;
    /// use strata::NewEvent;
    /// let dir = tempfile::tempdir()?;
    /// let store = strata::Store::open(dir.path(), strata::Options::default())?;
    /// let evs = store.append_batch(vec![
    ///     NewEvent::create("Account", "a", json!({"balance": 10})),
    ///     NewEvent::create("Account", "b", json!({"balance": 0})),
    /// ])?;
    /// assert_eq!(evs[0].batch, evs[1].batch);
    /// // A failing event fails the whole batch.
    /// assert!(store.append_batch(vec![NewEvent::update("a", json!({"balance": 5})), NewEvent::update("zzz", json!({}))]).is_err());
    /// assert_eq!(store.get("a")?.unwrap().state["balance"], 10);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn append_batch(&self, events: Vec<NewEvent>) -> Result<Vec<Event>> {
        group_commit::submit(&self.shared, events)
    }

    /// The current state of an entity (deleted entities come back with `deleted = true`).
    ///
    /// Once an entity has been read, reading it again copies nothing: the returned
    /// [`Entity::state`] shares the store's own map, a snapshot that later appends leave
    /// as it is.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let store = strata::Store::open(dir.path(), strata::Options::default())?;
    /// assert_eq!(store.get("nobody")?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self, id: &str) -> Result<Option<Entity>> {
        crate::read::current(&self.shared, id)
    }

    /// Every event of an entity, in version order.
    ///
    /// ```
    /// use serde_json::json;
    /// let dir = tempfile::tempdir()?;
    /// let store = strata::Store::open(dir.path(), strata::Options::default())?;
    /// store.append(strata::NewEvent::create("Contact", "c1", json!({})))?;
    /// store.append(strata::NewEvent::delete("c1"))?;
    /// let types: Vec<String> = store.history("c1")?.into_iter().map(|e| e.event_type).collect();
    /// assert_eq!(types, ["Contact.Created", "Contact.Deleted"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn history(&self, id: &str) -> Result<Vec<Event>> {
        crate::read::history(&self.shared, id)
    }

    /// The events matching a query, in seq order.
    ///
    /// ```
    /// use serde_json::json;
    /// let dir = tempfile::tempdir()?;
    /// let store = strata::Store::open(dir.path(), strata::Options::default())?;
    /// store.append(strata::NewEvent::create("Deal", "d1", json!({"amount": 5})))?;
    /// store.append(strata::NewEvent::create("Contact", "c1", json!({})))?;
    /// let deals = store.events(&strata::EventQuery::new().event_type("Deal.*"))?;
    /// assert_eq!(deals.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn events(&self, query: &EventQuery) -> Result<Vec<Event>> {
        crate::read::events(&self.shared, query)
    }

    /// The event with this id (generated or caller-supplied), if stored.
    ///
    /// ```
    /// use serde_json::json;
    /// let dir = tempfile::tempdir()?;
    /// let store = strata::Store::open(dir.path(), strata::Options::default())?;
    /// let ev = store.append(strata::NewEvent::create("Deal", "d1", json!({})).id("req-1"))?;
    /// assert_eq!(store.event("req-1")?.map(|e| e.seq), Some(ev.seq));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn event(&self, id: &str) -> Result<Option<Event>> {
        let seq = {
            let view = self.shared.view.read();
            view.index.seq_of_id(id, view.next_seq)
        };
        // A generated-form id names a seq, but the event there may carry a caller-supplied
        // id instead: then no event has this id.
        Ok(seq.map(|s| crate::read::event(&self.shared, s)).transpose()?.filter(|ev| ev.id == id))
    }

    /// Makes every append so far durable (useful with `Durability::Interval` or `Never`).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let store = strata::Store::open(dir.path(), strata::Options::default())?;
    /// store.sync()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sync(&self) -> Result<()> {
        self.shared.writer.lock().sync()
    }

    /// The store's random id (embedded in the event ids it generates).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let store = strata::Store::open(dir.path(), strata::Options::default())?;
    /// assert_eq!(store.store_id().to_string().len(), 16);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn store_id(&self) -> StoreId {
        self.shared.store_id
    }

    /// The seq of the last committed event (0 for an empty store).
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let store = strata::Store::open(dir.path(), strata::Options::default())?;
    /// assert_eq!(store.last_seq(), 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn last_seq(&self) -> u64 {
        self.shared.view.read().next_seq - 1
    }

    /// The store directory.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let store = strata::Store::open(dir.path(), strata::Options::default())?;
    /// assert_eq!(store.path(), dir.path());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn path(&self) -> &Path {
        &self.shared.dir
    }

    /// The entity as it was at `ts`: the fold of its events with `timestamp <= ts`; `None`
    /// if it did not exist yet. A deleted entity comes back with `deleted = true`.
    ///
    /// ```
    /// use serde_json::json;
    /// let dir = tempfile::tempdir()?;
    /// let store = strata::Store::open(dir.path(), strata::Options::default())?;
    /// let created = store.append(strata::NewEvent::create("Contact", "c1", json!({"stage": "Lead"})))?;
    /// store.append(strata::NewEvent::update("c1", json!({"stage": "Won"})))?;
    /// let then = store.get_as_of("c1", created.timestamp)?.expect("existed");
    /// assert_eq!(then.state["stage"], "Lead");
    /// assert_eq!(store.get_as_of("c1", "2000-01-01T00:00:00Z")?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_as_of(&self, id: &str, ts: impl AsTimestamp) -> Result<Option<Entity>> {
        let ts = ts.as_timestamp()?;
        let version = {
            let view = self.shared.view.read();
            match view.index.entities.get(id) {
                Some(rec) => rec.version_at(ts.as_micros()),
                None => return Ok(None),
            }
        };
        crate::read::version(&self.shared, id, version)
    }

    /// The entity as of one of its versions (1 is the state after its creation).
    ///
    /// ```
    /// use serde_json::json;
    /// let dir = tempfile::tempdir()?;
    /// let store = strata::Store::open(dir.path(), strata::Options::default())?;
    /// store.append(strata::NewEvent::create("Contact", "c1", json!({"stage": "Lead"})))?;
    /// store.append(strata::NewEvent::update("c1", json!({"stage": "Won"})))?;
    /// assert_eq!(store.get_version("c1", 1)?.unwrap().state["stage"], "Lead");
    /// assert_eq!(store.get_version("c1", 3)?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_version(&self, id: &str, version: u64) -> Result<Option<Entity>> {
        crate::read::version(&self.shared, id, version)
    }

    /// Registers a check that runs inside the write path for every event appended to an
    /// entity of `kind` (including events written by batches, rollback and undo), before
    /// anything is written. It gets the entity before the event (`None` for a create), the
    /// event, and the entity after it; an `Err(reason)` rejects the whole batch with
    /// [`Error::Rejected`].
    ///
    /// Validators run on the writer's path while it holds the writer lock: keep them fast,
    /// and never call back into the store from one (that would deadlock).
    ///
    /// ```
    /// use serde_json::json;
    /// let dir = tempfile::tempdir()?;
    /// let store = strata::Store::open(dir.path(), strata::Options::default())?;
    /// store.add_validator("Account", |_before, _event, after| {
    ///     match after.state["balance"].as_i64() {
    ///         Some(b) if b >= 0 => Ok(()),
    ///         _ => Err("balance must stay >= 0".to_string()),
    ///     }
    /// });
    /// store.append(strata::NewEvent::create("Account", "acc_1", json!({"balance": 10})))?;
    /// let err = store.append(strata::NewEvent::update("acc_1", json!({"balance": -5}))).unwrap_err();
    /// assert!(matches!(err, strata::Error::Rejected { .. }));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn add_validator<F>(&self, kind: &str, validator: F)
    where
        F: Fn(Option<&Entity>, &Event, &Entity) -> std::result::Result<(), String> + Send + Sync + 'static,
    {
        self.shared.validators.write().entry(kind.to_string()).or_default().push(Arc::new(validator));
    }

    /// The entities matching a query, now or as of a past time, in entity-id order.
    /// Deleted entities are skipped unless the query says `include_deleted()`.
    ///
    /// ```
    /// use serde_json::json;
    /// use strata::{NewEvent, Query};
    /// let dir = tempfile::tempdir()?;
    /// let store = strata::Store::open(dir.path(), strata::Options::default())?;
    /// store.append(NewEvent::create("Contact", "c1", json!({"stage": "Lead"})))?;
    /// store.append(NewEvent::create("Contact", "c2", json!({"stage": "Won"})))?;
    /// let leads = store.find(&Query::kind("Contact").eq("stage", "Lead"))?;
    /// assert_eq!(leads.iter().map(|e| e.id.as_str()).collect::<Vec<_>>(), ["c1"]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn find(&self, query: &Query) -> Result<Vec<Entity>> {
        query.validate()?;
        let mut out = Vec::new();
        for item in crate::read::scan_entities(&self.shared, query.kind_name(), query.time()) {
            let entity = item?;
            if (query.wants_deleted() || !entity.deleted) && query.matches(&entity) {
                out.push(entity);
                if out.len() >= query.max() {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// Every entity as it was at `ts` (deleted ones included, with `deleted = true`), in
    /// entity-id order, streamed: each entity is rebuilt when the iterator reaches it.
    ///
    /// ```
    /// use serde_json::json;
    /// let dir = tempfile::tempdir()?;
    /// let store = strata::Store::open(dir.path(), strata::Options::default())?;
    /// let first = store.append(strata::NewEvent::create("Contact", "c1", json!({})))?;
    /// store.append(strata::NewEvent::create("Contact", "c2", json!({})))?;
    /// let then: Vec<_> = store.state_at(first.timestamp)?.collect::<strata::Result<_>>()?;
    /// assert_eq!(then.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn state_at(&self, ts: impl AsTimestamp) -> Result<StateAt> {
        let ts = ts.as_timestamp()?;
        Ok(StateAt { inner: crate::read::scan_entities(&self.shared, None, Some(ts)) })
    }

    /// Counts and memory figures for the open store.
    ///
    /// ```
    /// use serde_json::json;
    /// let dir = tempfile::tempdir()?;
    /// let store = strata::Store::open(dir.path(), strata::Options::default())?;
    /// store.append(strata::NewEvent::create("Contact", "c1", json!({})))?;
    /// let stats = store.stats();
    /// assert_eq!((stats.events, stats.entities), (1, 1));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> StoreStats {
        let view = self.shared.view.read();
        let (index_bytes, snapshot_bytes) = view.index.memory_estimate();
        let frame_index_bytes = view.log.frames.capacity() * std::mem::size_of::<crate::segment_set::FrameRef>();
        StoreStats {
            events: view.next_seq - 1,
            entities: view.index.entities.len() as u64,
            segments: view.log.segments.len() as u64,
            frames: view.log.frames.len() as u64,
            index_bytes: (index_bytes + frame_index_bytes) as u64,
            snapshot_bytes: snapshot_bytes as u64,
        }
    }

    /// Writes a checkpoint now: the materialized state and the index at the current seq, so
    /// that the next open replays only the log after it. Returns the seq it covers (`None`
    /// when there is nothing new to cover). Checkpoints are also written automatically, see
    /// [`Options::checkpoint_every_events`].
    ///
    /// ```
    /// use serde_json::json;
    /// let dir = tempfile::tempdir()?;
    /// let store = strata::Store::open(dir.path(), strata::Options::default())?;
    /// store.append(strata::NewEvent::create("Contact", "c1", json!({"name": "Alice"})))?;
    /// assert_eq!(store.checkpoint()?, Some(1));
    /// assert_eq!(store.checkpoint()?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn checkpoint(&self) -> Result<Option<u64>> {
        let _one_at_a_time = self.shared.checkpointing.lock();
        crate::checkpoint::write(&self.shared)
    }

    #[allow(dead_code)]
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        if let Some(handle) = self.shared.background.lock().take() {
            let _ = handle.join();
        }
        if let Some((stop, handle)) = self.flusher.take() {
            drop(stop);
            let _ = handle.join();
        }
    }
}

/// Counts and memory figures, from [`Store::stats`].
///
/// ```
/// let stats = strata::StoreStats::default();
/// assert_eq!(stats.events, 0);
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Events in the log.
    pub events: u64,
    /// Entities (deleted ones included).
    pub entities: u64,
    /// Segment files.
    pub segments: u64,
    /// Frames (committed batches).
    pub frames: u64,
    /// Estimated bytes of memory held by the version index, the frame index and the event-id
    /// map (not counting materialized states and snapshots).
    pub index_bytes: u64,
    /// Bytes of memory held by snapshots.
    pub snapshot_bytes: u64,
}

/// The iterator returned by [`Store::state_at`].
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let store = strata::Store::open(dir.path(), strata::Options::default())?;
/// let mut it: strata::StateAt = store.state_at(strata::Timestamp::now())?;
/// assert!(it.next().is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct StateAt {
    inner: crate::read::EntityScan,
}

impl Iterator for StateAt {
    type Item = Result<Entity>;

    fn next(&mut self) -> Option<Self::Item> {
        self.inner.next()
    }
}

impl std::fmt::Debug for StateAt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StateAt").finish_non_exhaustive()
    }
}

/// Syncs the active segment every `every` until the store is dropped.
fn spawn_flusher(shared: Weak<Shared>, every: Duration) -> (mpsc::Sender<()>, JoinHandle<()>) {
    let (tx, rx) = mpsc::channel::<()>();
    let handle = std::thread::spawn(move || {
        while let Err(mpsc::RecvTimeoutError::Timeout) = rx.recv_timeout(every) {
            let Some(shared) = shared.upgrade() else { return };
            let mut writer = shared.writer.lock();
            if writer.poisoned.is_none()
                && let Err(e) = writer.sync()
            {
                tracing::error!(store = %shared.dir.display(), error = %e, "interval sync failed; the writer is poisoned");
            }
        }
    });
    (tx, handle)
}
