//! Group commit: appenders queue their batches, and whichever of them gets the writer lock
//! (the leader) commits every batch queued at that moment with one write and one fsync.
//!
//! Each appender waits on its own slot: it yields a few times, then parks; the leader fills
//! the slot and wakes that one thread (`Thread::unpark`) if it parked. The threads of a group
//! so wake in parallel instead of one after the other through a shared mutex, and none waits
//! for the next group's fsync. When the leader is done and batches are still queued, it wakes
//! the first of their appenders to lead next.
//!
//! With durable appends and several appenders, a leader first *gathers*: it waits, for at
//! most about one fsync's time, until every thread inside `append` has queued its batch.
//! Without that pause, on few cores the threads released by one fsync re-queue a few at a
//! time and the groups alternate between large and tiny; with it, one fsync covers every
//! concurrent appender (PostgreSQL's `commit_delay` does the same, also only when other
//! transactions are active). A lone appender never waits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::Thread;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::Result;
use crate::event::{Event, NewEvent};
use crate::options::Durability;
use crate::store::Shared;

/// The outcome of one appended batch.
pub(crate) type Outcome = Result<Vec<Event>>;

/// Where a batch's outcome is delivered, and the thread waiting for it.
pub(crate) struct Slot {
    outcome: Mutex<Option<Outcome>>,
    waiter: Thread,
    parked: AtomicBool,
}

impl Slot {
    fn new() -> Arc<Slot> {
        Arc::new(Slot { outcome: Mutex::new(None), waiter: std::thread::current(), parked: AtomicBool::new(false) })
    }

    /// Delivers the batch's outcome and wakes its appender if it is parked.
    pub(crate) fn fill(&self, outcome: Outcome) {
        *self.outcome.lock() = Some(outcome);
        if self.parked.load(Ordering::SeqCst) {
            self.waiter.unpark();
        }
    }

    fn take(&self) -> Option<Outcome> {
        self.outcome.lock().take()
    }

    fn is_filled(&self) -> bool {
        self.outcome.lock().is_some()
    }

    /// Waits until the slot is filled, this thread is woken to lead, or `RECHECK` passes:
    /// first yielding a few times (a group's commit is about one fsync away, and a thread
    /// that parks must be woken by a system call of the leader's), then parked.
    fn wait(&self) {
        for _ in 0..SPIN_YIELDS {
            std::thread::yield_now();
            if self.is_filled() {
                return;
            }
        }
        // `fill` unparks only a parked waiter. Either this store is seen by the leader after
        // it filled the slot, or the fill is seen by the check below: the slot's mutex
        // orders the two.
        self.parked.store(true, Ordering::SeqCst);
        if !self.is_filled() {
            // An unpark that came before this park is not lost: it returns at once.
            std::thread::park_timeout(RECHECK);
        }
        self.parked.store(false, Ordering::SeqCst);
    }
}

/// One queued batch and where its outcome goes.
pub(crate) struct Pending {
    pub(crate) batch: Vec<NewEvent>,
    pub(crate) slot: Arc<Slot>,
}

/// The shortest and longest a leader gathers: at least long enough for a woken thread to be
/// scheduled, at most a bound on the latency it adds whatever the disk does.
const GATHER_MIN: Duration = Duration::from_micros(20);
const GATHER_MAX: Duration = Duration::from_millis(2);

/// How many times a waiting appender yields before it parks. Measured with eight threads
/// appending single events durably on two cores: parking at once, 41,000-42,000 events/s;
/// yielding 20 to 50 times first, 45,000-48,500 events/s (the leader no longer spends a
/// system call per follower to wake it).
const SPIN_YIELDS: usize = 32;

/// How long a waiting appender sleeps before it checks again on its own. Leaders wake
/// appenders explicitly; this covers the writer lock being released by someone who does not
/// (sync, checkpoint, the interval flusher).
const RECHECK: Duration = Duration::from_millis(2);

/// The queue of batches waiting to be committed and the signals around it.
#[derive(Default)]
pub(crate) struct GroupCommit {
    queue: Mutex<Vec<Pending>>,
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
        // Wake a gathering leader only once everyone is in: each wake-up is a context
        // switch, and on two cores those are what a group of eight waits for.
        if self.gathering.load(Ordering::Relaxed) && queue.len() >= self.appenders.load(Ordering::Relaxed) {
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

    /// Wakes the appender of the oldest queued batch, so that it leads the next group.
    fn wake_next_leader(&self) {
        if let Some(next) = self.queue.lock().first() {
            next.slot.waiter.unpark();
        }
    }
}

/// Appends `batch` atomically, group-committing with concurrent callers.
pub(crate) fn submit(shared: &Arc<Shared>, batch: Vec<NewEvent>) -> Outcome {
    let group = &shared.group;
    let slot = Slot::new();
    group.appenders.fetch_add(1, Ordering::Relaxed);
    group.push(Pending { batch, slot: slot.clone() });
    let outcome = lead_or_follow(shared, &slot);
    group.appenders.fetch_sub(1, Ordering::Relaxed);
    outcome
}

/// Waits for `slot`'s outcome, committing groups whenever this thread gets the writer lock.
fn lead_or_follow(shared: &Arc<Shared>, slot: &Slot) -> Outcome {
    let group = &shared.group;
    loop {
        if let Some(outcome) = slot.take() {
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
            group.wake_next_leader();
            if due {
                shared.start_background_checkpoint();
            }
            continue;
        }
        // Someone else leads: wait for it.
        slot.wait();
    }
}
