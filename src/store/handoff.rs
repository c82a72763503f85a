//! Lock hand-off inside one process: an attempt refused a resource lock parks here, and the
//! write that ends the holder's attempt (and releases the lock) starts the parked attempt in its
//! own transaction, fenced on the waiter's lease. One commit, not two, then separates two
//! commands serialized by a lock: the holder's end and the waiter's start are durable together,
//! before the waiter's command runs.
//!
//! Waiters are kept in memory, not in the database: only a write of this process can start a
//! parked attempt (it needs the waiter's prepared start), and a waiter that dies with its
//! process has nothing to be started anyway. Waiters of other processes (PostgreSQL replicas)
//! are woken by the release notification and try again themselves, as every waiter did before.
//!
//! The waiter learns the outcome only from a commit: the holder sends the started attempt's id
//! after its commit. Whatever else happens (the hand-off found the waiter's lease lost, the
//! holder's transaction failed, the holder's task went away), the sender is dropped; the waiter then reads from the database whether its attempt started
//! ([`super::Store::handed_off`]) and otherwise tries again itself.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::oneshot;

use super::{AttemptStart, Lease};

/// An attempt waiting for a lock, as a holder's write takes it to start it.
#[derive(Debug)]
pub(super) struct Waiter {
    pub lease: Lease,
    pub start: AttemptStart,
    pub locks: Vec<String>,
    pub lock_for: Duration,
    started: oneshot::Sender<i64>,
}

/// An attempt started on behalf of its waiter, to be told after the commit.
#[derive(Debug)]
pub(super) struct HandedOff {
    pub job_id: String,
    /// The locks the started attempt holds now.
    pub locks: Vec<String>,
    id: i64,
    started: oneshot::Sender<i64>,
}

impl Waiter {
    /// The attempt started with this id (not yet committed).
    pub fn started(self, id: i64) -> HandedOff {
        HandedOff {
            job_id: self.lease.job_id,
            locks: self.locks,
            id,
            started: self.started,
        }
    }
}

impl HandedOff {
    /// Tells the waiter, once the write that started its attempt committed.
    pub fn tell(self) {
        // A waiter that went away left its attempt to lease recovery.
        let _ = self.started.send(self.id);
    }
}

/// The waiter's side: its place in the queue and the answer it waits for.
#[derive(Debug)]
pub struct Parked {
    token: u64,
    /// The id of the attempt a holder started; closed without one when it did not.
    pub started: oneshot::Receiver<i64>,
}

/// The parked attempts of this process, oldest first.
#[derive(Debug, Default)]
pub(super) struct Parking {
    next: AtomicU64,
    queue: Mutex<VecDeque<(u64, Waiter)>>,
}

impl Parking {
    pub fn park(
        &self,
        lease: &Lease,
        start: AttemptStart,
        locks: &[String],
        lock_for: Duration,
    ) -> Parked {
        let token = self.next.fetch_add(1, Ordering::Relaxed);
        let (started, answer) = oneshot::channel();
        let waiter = Waiter {
            lease: lease.clone(),
            start,
            locks: locks.to_vec(),
            lock_for,
            started,
        };
        self.lock().push_back((token, waiter));
        Parked {
            token,
            started: answer,
        }
    }

    /// Takes the waiter out of the queue; `false` when a holder took it first (its answer then
    /// decides).
    pub fn unpark(&self, parked: &Parked) -> bool {
        let mut queue = self.lock();
        match queue.iter().position(|(token, _)| *token == parked.token) {
            Some(at) => queue.remove(at).is_some(),
            None => false,
        }
    }

    /// Takes out the longest-waiting attempt all of whose locks are in `free` (locks the
    /// caller's transaction released). Then the hand-off takes only rows that transaction
    /// already holds, and never waits for another transaction's lock row: two holders handing
    /// off at once cannot wait for each other. (Every step takes one lock today.)
    pub fn take(&self, free: &[String]) -> Option<Waiter> {
        if free.is_empty() {
            return None;
        }
        let mut queue = self.lock();
        let at = queue
            .iter()
            .position(|(_, w)| !w.locks.is_empty() && w.locks.iter().all(|l| free.contains(l)))?;
        queue.remove(at).map(|(_, w)| w)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, VecDeque<(u64, Waiter)>> {
        // The queue holds no invariant a panic could break halfway.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The released locks that are still free after a hand-off (or all of them without one).
pub(super) fn still_free(released: Vec<String>, handed: Option<&HandedOff>) -> Vec<String> {
    match handed {
        Some(h) => released
            .into_iter()
            .filter(|name| !h.locks.contains(name))
            .collect(),
        None => released,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start() -> AttemptStart {
        AttemptStart {
            position: 0,
            step: "create_account".into(),
            command: "everestctl accounts create".into(),
            stdin_preview: None,
            summary: String::new(),
        }
    }

    fn lease(job: &str) -> Lease {
        Lease {
            job_id: job.into(),
            owner: "w".into(),
            attempt: 1,
        }
    }

    #[test]
    fn the_oldest_waiter_for_a_free_lock_is_taken_once() {
        let parking = Parking::default();
        let locks = |n: &str| vec![n.to_string()];
        let _a = parking.park(&lease("a"), start(), &locks("rbac"), Duration::ZERO);
        let two = vec!["accounts".to_string(), "rbac".to_string()];
        let _both = parking.park(&lease("both"), start(), &two, Duration::ZERO);
        let b = parking.park(&lease("b"), start(), &locks("accounts"), Duration::ZERO);
        let _c = parking.park(&lease("c"), start(), &locks("accounts"), Duration::ZERO);
        assert!(parking.take(&[]).is_none());
        let taken = parking.take(&locks("accounts")).expect("a waiter");
        assert_eq!(taken.lease.job_id, "b", "not `both`: rbac is not free");
        assert!(!parking.unpark(&b), "b was taken by the holder");
        assert_eq!(parking.take(&locks("accounts")).unwrap().lease.job_id, "c");
        assert!(parking.take(&locks("accounts")).is_none());
    }

    #[tokio::test]
    async fn a_waiter_learns_its_attempt_only_when_told() {
        let parking = Parking::default();
        let mut parked = parking.park(&lease("a"), start(), &["x".into()], Duration::ZERO);
        let waiter = parking.take(&["x".into()]).unwrap();
        let handed = waiter.started(42);
        assert!(
            parked.started.try_recv().is_err(),
            "nothing before the commit"
        );
        assert_eq!(
            still_free(vec!["x".into(), "y".into()], Some(&handed)),
            ["y"]
        );
        handed.tell();
        assert_eq!(parked.started.await.unwrap(), 42);

        let parked = parking.park(&lease("b"), start(), &["x".into()], Duration::ZERO);
        drop(parking.take(&["x".into()]));
        assert!(
            parked.started.await.is_err(),
            "a dropped hand-off closes the answer"
        );

        let parked = parking.park(&lease("c"), start(), &["x".into()], Duration::ZERO);
        assert!(parking.unpark(&parked));
        assert!(parking.take(&["x".into()]).is_none());
    }
}
