//! Completion tracking: the low-watermark a consumer may checkpoint, and lag.

use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// How far a consumer is behind the store.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Lag {
    /// Positions between the consumer's processed position and the store's head
    /// (for a filtered consumer this also counts events it will skip).
    pub events: u64,
    /// Time from the oldest event the consumer has not finished to now (event
    /// time, i.e. when it happened); zero when caught up.
    pub behind: Duration,
}

impl Lag {
    /// [`behind`](Self::behind) in seconds, for metrics.
    #[must_use]
    pub fn seconds(&self) -> f64 {
        self.behind.as_secs_f64()
    }

    /// Whether the consumer has processed everything up to the head.
    #[must_use]
    pub fn is_caught_up(&self) -> bool {
        self.events == 0
    }
}

/// What waiters see: the processed position, and whether the consumer stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Status {
    pub(crate) processed: u64,
    pub(crate) stopped: bool,
}

/// Tracks which dispatched events are unfinished, per partition.
///
/// Each partition handles its events in dispatch order, and dispatch order is
/// position order, so a partition's unfinished events form a queue whose front
/// is its oldest. The processed position (the low-watermark) is one below the
/// oldest unfinished event over all partitions, or the scanned position when
/// nothing is unfinished: every event at or below it has been handled or
/// dead-lettered, and nothing above an unfinished event is ever counted.
#[derive(Debug)]
pub(crate) struct Progress {
    tracker: Mutex<Tracker>,
    status: watch::Sender<Status>,
}

#[derive(Debug)]
struct Tracker {
    /// Every event at or below this position that passes the filter has been
    /// dispatched.
    scanned: u64,
    /// Unfinished events per partition, oldest first: (position, event time).
    pending: Vec<VecDeque<(u64, DateTime<Utc>)>>,
}

impl Tracker {
    fn watermark(&self) -> u64 {
        self.pending
            .iter()
            .filter_map(|q| q.front().map(|(p, _)| p.saturating_sub(1)))
            .min()
            .unwrap_or(self.scanned)
    }
}

impl Progress {
    pub(crate) fn new(partitions: u32, start: u64) -> Self {
        let queues = usize::try_from(partitions.max(1)).unwrap_or(1);
        Self {
            tracker: Mutex::new(Tracker {
                scanned: start,
                pending: vec![VecDeque::new(); queues],
            }),
            status: watch::channel(Status {
                processed: start,
                stopped: false,
            })
            .0,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Tracker> {
        // Every update below is a single push, pop or store, so a panic cannot
        // leave the tracker half-written.
        self.tracker.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn publish(&self, watermark: u64) {
        self.status.send_if_modified(|s| {
            let changed = watermark > s.processed;
            if changed {
                s.processed = watermark;
            }
            changed
        });
    }

    /// Records a dispatched event; call before handing it to its partition.
    pub(crate) fn begin(&self, partition: u32, position: u64, time: DateTime<Utc>) {
        let mut t = self.lock();
        let index = usize::try_from(partition).unwrap_or(0);
        t.pending[index].push_back((position, time));
        t.scanned = t.scanned.max(position);
    }

    /// Records that the oldest unfinished event of `partition` (at `position`)
    /// is finished; wakes waiters when `publish` (callers publish when they go
    /// idle and every so often, not for every event, to keep wake-ups cheap).
    pub(crate) fn complete(&self, partition: u32, position: u64, publish: bool) {
        let watermark = {
            let mut t = self.lock();
            let index = usize::try_from(partition).unwrap_or(0);
            let front = t.pending[index].pop_front();
            debug_assert_eq!(
                front.map(|(p, _)| p),
                Some(position),
                "partition {partition} finished out of order"
            );
            publish.then(|| t.watermark())
        };
        if let Some(watermark) = watermark {
            self.publish(watermark);
        }
    }

    /// Records that everything up to `position` that passes the filter has been
    /// dispatched (a read came back short, so nothing else is there).
    pub(crate) fn scanned(&self, position: u64) {
        let watermark = {
            let mut t = self.lock();
            t.scanned = t.scanned.max(position);
            t.watermark()
        };
        self.publish(watermark);
    }

    /// The processed position (low-watermark).
    pub(crate) fn watermark(&self) -> u64 {
        self.lock().watermark()
    }

    /// The event time of the oldest unfinished event.
    pub(crate) fn oldest_pending(&self) -> Option<DateTime<Utc>> {
        self.lock()
            .pending
            .iter()
            .filter_map(|q| q.front().map(|(_, t)| *t))
            .min()
    }

    /// Marks the consumer stopped, waking every waiter.
    pub(crate) fn stop(&self) {
        self.status.send_modify(|s| s.stopped = true);
    }

    pub(crate) fn subscribe(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermark_stops_below_the_oldest_unfinished_event() {
        let p = Progress::new(2, 10);
        let now = Utc::now();
        assert_eq!(p.watermark(), 10);
        p.begin(0, 11, now);
        p.begin(1, 12, now);
        p.begin(0, 13, now);
        assert_eq!(p.watermark(), 10);
        p.complete(1, 12, true); // partition 1 is ahead; 11 still holds the mark
        assert_eq!(p.watermark(), 10);
        p.complete(0, 11, true);
        assert_eq!(p.watermark(), 12);
        p.scanned(20); // a short read: nothing else up to 20 matches
        assert_eq!(p.watermark(), 12);
        p.complete(0, 13, true);
        assert_eq!(p.watermark(), 20);
        assert_eq!(p.subscribe().borrow().processed, 20);
    }
}
