//! The connection table: how many connections are open, which of them are still in their
//! handshake (oldest first), and the decision at the bound.
//!
//! At `--max-connections` a new connection is still accepted, and the oldest connection that
//! has not finished its handshake is shed to make room: a flood of idle sockets can only push
//! out other idle sockets, never a client that has spoken HTTP/2. Only when every connection
//! is established is the new one refused.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio_util::sync::CancellationToken;

/// What the table counts, for logs and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    /// Connections still in their handshake.
    pub(crate) handshaking: usize,
    /// Connections that completed it.
    pub(crate) established: usize,
    /// Connections shed at the bound so far.
    pub(crate) shed: u64,
    /// Connections refused at the bound (every slot established) so far.
    pub(crate) refused: u64,
    /// Connections closed at `--handshake-timeout` so far.
    pub(crate) timed_out: u64,
}

#[derive(Debug, Default)]
struct Table {
    next_id: u64,
    /// Connections in their handshake by id, so the first is the oldest. Each token, once
    /// cancelled, makes its connection fail its next read (and so close).
    handshaking: BTreeMap<u64, CancellationToken>,
    counts: Counts,
}

/// The shared table of one listener.
#[derive(Debug)]
pub(crate) struct Tracker {
    max: usize,
    table: Mutex<Table>,
}

impl Tracker {
    /// A table for at most `max` connections.
    pub(crate) fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max: max.max(1),
            table: Mutex::new(Table::default()),
        })
    }

    /// The bound.
    pub(crate) fn max(&self) -> usize {
        self.max
    }

    // The lock is never held across an await, and a panic while holding it leaves the table
    // consistent (each change is one step), so a poisoned lock is used as it is.
    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Admits a new connection, shedding the oldest one still in its handshake when the table
    /// is full; `None` when it is full of established connections (close the new one).
    pub(crate) fn admit(self: &Arc<Self>) -> Option<Tracked> {
        let mut table = self.table();
        if table.handshaking.len() + table.counts.established >= self.max {
            let (_, oldest) = table.handshaking.pop_first()?;
            oldest.cancel();
            table.counts.shed += 1;
            table.counts.handshaking = table.handshaking.len();
        }
        let id = table.next_id;
        table.next_id += 1;
        let shed = CancellationToken::new();
        table.handshaking.insert(id, shed.clone());
        table.counts.handshaking = table.handshaking.len();
        Some(Tracked {
            id,
            shed,
            established: false,
            tracker: self.clone(),
        })
    }

    /// Counts a refusal (the caller closes the connection).
    pub(crate) fn refused(&self) {
        self.table().counts.refused += 1;
    }

    /// Sheds the oldest connection still in its handshake, if any (to free a descriptor when
    /// accept fails for want of one). Returns whether one was shed.
    pub(crate) fn shed_oldest(&self) -> bool {
        let mut table = self.table();
        let Some((_, oldest)) = table.handshaking.pop_first() else {
            return false;
        };
        oldest.cancel();
        table.counts.shed += 1;
        table.counts.handshaking = table.handshaking.len();
        true
    }

    /// The counts now.
    pub(crate) fn counts(&self) -> Counts {
        self.table().counts
    }
}

/// One admitted connection's entry; dropping it (with the connection) frees its slot.
#[derive(Debug)]
pub(crate) struct Tracked {
    id: u64,
    shed: CancellationToken,
    established: bool,
    tracker: Arc<Tracker>,
}

impl Tracked {
    /// Cancelled when the connection is shed at the bound.
    pub(crate) fn shed_token(&self) -> &CancellationToken {
        &self.shed
    }

    /// Marks the handshake complete: from now on the connection is never shed. False when it
    /// was shed first (it is closing).
    pub(crate) fn establish(&mut self) -> bool {
        if self.established {
            return true;
        }
        let mut table = self.tracker.table();
        if table.handshaking.remove(&self.id).is_none() {
            return false;
        }
        table.counts.handshaking = table.handshaking.len();
        table.counts.established += 1;
        self.established = true;
        true
    }
}

impl Tracked {
    /// Counts a connection closed because its handshake took too long.
    pub(crate) fn timed_out(&self) {
        self.tracker.table().counts.timed_out += 1;
    }
}

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut table = self.tracker.table();
        if self.established {
            table.counts.established -= 1;
        } else if table.handshaking.remove(&self.id).is_some() {
            table.counts.handshaking = table.handshaking.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_bound_the_oldest_connection_in_its_handshake_is_shed() {
        let tracker = Tracker::new(3);
        let mut established = tracker.admit().into_iter().collect::<Vec<_>>();
        assert!(established[0].establish());
        let first = tracker.admit();
        let second = tracker.admit();
        let third = tracker.admit();
        let (Some(first), Some(second), Some(third)) = (first, second, third) else {
            panic!("a full table must still admit while a connection is in its handshake");
        };
        assert!(first.shed_token().is_cancelled(), "the oldest is shed");
        assert!(!second.shed_token().is_cancelled());
        assert!(!third.shed_token().is_cancelled());
        let counts = tracker.counts();
        assert_eq!((counts.handshaking, counts.established), (2, 1));
        assert_eq!(counts.shed, 1);
        drop(first);
        assert_eq!(
            tracker.counts().handshaking,
            2,
            "a shed entry is not counted twice"
        );
        established.clear();
        assert_eq!(tracker.counts().established, 0);
    }

    #[test]
    fn a_table_full_of_established_connections_refuses_the_new_one() {
        let tracker = Tracker::new(2);
        let mut all: Vec<Tracked> = (0..2).filter_map(|_| tracker.admit()).collect();
        for t in &mut all {
            assert!(t.establish());
        }
        assert!(tracker.admit().is_none());
        all.pop();
        assert!(
            tracker.admit().is_some(),
            "a closed connection frees its slot"
        );
    }

    #[test]
    fn a_shed_connection_cannot_become_established() {
        let tracker = Tracker::new(1);
        let Some(mut first) = tracker.admit() else {
            panic!("an empty table admits");
        };
        assert!(tracker.shed_oldest());
        assert!(!first.establish());
        assert!(!tracker.shed_oldest(), "nothing left to shed");
    }
}
