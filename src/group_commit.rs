//! Group commit: appenders queue their batches, and whichever of them gets the writer lock
//! (the leader) commits every batch queued at that moment with one write and one fsync.
//!
//! Followers wait on a condition variable, not on the writer lock, so that a follower whose
//! batch was in a group returns as soon as that group is durable instead of queueing behind
//! the next group's fsync.
//!
//! With durable appends and several appenders, a leader first *gathers*: it waits, for at
//! most about one fsync's time, until every thread inside `append` has queued its batch.
//! Without that pause, on few cores the threads released by one fsync re-queue a few at a
//! time and the groups alternate between large and tiny; with it, one fsync covers every
//! concurrent appender (PostgreSQL's `commit_delay` does the same, also only when other
//! transactions are active). A lone appender never waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::Result;
use crate::event::{Event, NewEvent};
use crate::options::Durability;
use crate::store::Shared;

/// The outcome of one appended batch.
pub(crate) type Outcome = Result<Vec<Event>>;

/// Where a batch's outcome is delivered.
pub(crate) type Slot = Arc<Mutex<Option<Outcome>>>;

/// One queued batch and where its outcome goes.
pub(crate) struct Pending {
    pub(crate) batch: Vec<NewEvent>,
    pub(crate) slot: Slot,
}

/// The shortest and longest a leader gathers: at least long enough for a woken thread to be
/// scheduled, at most a bound on the latency it adds whatever the disk does.
const GATHER_MIN: Duration = Duration::from_micros(20);
const GATHER_MAX: Duration = Duration::from_millis(2);

/// The queue of batches waiting to be committed and the signals around it.
#[derive(Default)]
pub(crate) struct GroupCommit {
    queue: Mutex<Vec<Pending>>,
    /// Signalled (under `queue`) when a leader has committed a group.
    committed: Condvar,
    /// Signalled (under `queue`) when a batch is queued while a leader gathers.
    arrived: Condvar,
    /// A leader is waiting for more batches.
    gathering: AtomicBool,
    /// Threads inside `append`/`append_batch` right now.
    appenders: AtomicUsize,
}

impl GroupCommit {
    fn push(&self, pending: Pending) {
        let mut queue = self.queue.lock();
        queue.push(pending);
        if self.gathering.load(Ordering::Relaxed) {
            self.arrived.notify_one();
        }
    }

    /// Waits until every appender has queued its batch, or `window` has passed.
    fn gather(&self, window: Duration) {
        let deadline = Instant::now() + window.clamp(GATHER_MIN, GATHER_MAX);
        let mut queue = self.queue.lock();
        self.gathering.store(true, Ordering::Relaxed);
        while queue.len() < self.appenders.load(Ordering::Relaxed) {
            if self.arrived.wait_until(&mut queue, deadline).timed_out() {
                break;
            }
        }
        self.gathering.store(false, Ordering::Relaxed);
    }
}

/// Appends `batch` atomically, group-committing with concurrent callers.
pub(crate) fn submit(shared: &Arc<Shared>, batch: Vec<NewEvent>) -> Outcome {
    let group = &shared.group;
    let slot: Slot = Arc::new(Mutex::new(None));
    group.appenders.fetch_add(1, Ordering::Relaxed);
    group.push(Pending { batch, slot: slot.clone() });
    let outcome = lead_or_follow(shared, &slot);
    group.appenders.fetch_sub(1, Ordering::Relaxed);
    outcome
}

/// Waits for `slot`'s outcome, committing groups whenever this thread gets the writer lock.
fn lead_or_follow(shared: &Arc<Shared>, slot: &Mutex<Option<Outcome>>) -> Outcome {
    let group = &shared.group;
    loop {
        if let Some(outcome) = slot.lock().take() {
            return outcome;
        }
        // Whoever gets the writer lock leads: it commits every batch queued at that moment.
        if let Some(mut writer) = shared.writer.try_lock() {
            if shared.options.durability == Durability::Always && group.appenders.load(Ordering::Relaxed) > 1 {
                group.gather(writer.last_sync());
            }
            let batches = std::mem::take(&mut *group.queue.lock());
            if batches.is_empty() {
                continue;
            }
            writer.commit_group(shared, batches);
            let due = writer.checkpoint_due(&shared.options);
            drop(writer);
            let queue = group.queue.lock();
            group.committed.notify_all();
            drop(queue);
            if due {
                shared.start_background_checkpoint();
            }
            continue;
        }
        let mut queue = group.queue.lock();
        if slot.lock().is_some() || !shared.writer.is_locked() {
            continue;
        }
        // The timeout covers the writer lock being released by someone other than a leader
        // (sync, checkpoint, the interval flusher), who does not signal.
        group.committed.wait_for(&mut queue, Duration::from_millis(2));
    }
}
