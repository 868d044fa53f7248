//! The ledger: the receipts a node issued (calls it ran for other peers) and received
//! (calls other peers ran for it), summed per peer — the seed of pay-per-use
//! accounting between peers.
//!
//! Bounded: at most [`MAX_PEERS`] accounts on each side (when a new peer comes to a
//! full side, the account idle longest is dropped; the totals keep what it held) and
//! the [`MAX_RECENT`] latest receipts (oldest out). Calls a node ran for itself are
//! counted in one local total and not kept as receipts.

use std::collections::{BTreeMap, VecDeque};

use crate::receipt::Signed;

/// Most accounts on each side.
pub const MAX_PEERS: usize = 1024;
/// Most receipts kept.
pub const MAX_RECENT: usize = 256;

/// Which way a receipt went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// This node ran the call for the peer (and issued the receipt): fuel donated.
    Served,
    /// The peer ran the call for this node (which received and checked the receipt).
    Consumed,
}

/// Calls and fuel, summed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Account {
    /// Calls.
    pub calls: u64,
    /// Fuel used by them.
    pub fuel: u64,
    /// Guest wall time, in microseconds.
    pub wall_us: u64,
    /// When the latest one was recorded (ms; 0 for a total never used).
    pub last_ms: u64,
}

impl Account {
    fn add(&mut self, now_ms: u64, receipt: &Signed) {
        self.calls = self.calls.saturating_add(1);
        self.fuel = self.fuel.saturating_add(receipt.receipt.fuel_used);
        self.wall_us = self.wall_us.saturating_add(receipt.receipt.wall_us);
        self.last_ms = self.last_ms.max(now_ms);
    }
}

/// One kept receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<P> {
    /// When it was recorded (ms).
    pub at_ms: u64,
    /// Which way.
    pub direction: Direction,
    /// The other peer.
    pub peer: P,
    /// The receipt.
    pub receipt: Signed,
}

/// A node's ledger.
#[derive(Debug, Clone)]
pub struct Ledger<P> {
    served: BTreeMap<P, Account>,
    consumed: BTreeMap<P, Account>,
    served_total: Account,
    consumed_total: Account,
    local_total: Account,
    recent: VecDeque<Entry<P>>,
    dropped_accounts: u64,
}

impl<P> Default for Ledger<P> {
    fn default() -> Self {
        Self {
            served: BTreeMap::new(),
            consumed: BTreeMap::new(),
            served_total: Account::default(),
            consumed_total: Account::default(),
            local_total: Account::default(),
            recent: VecDeque::new(),
            dropped_accounts: 0,
        }
    }
}

impl<P: Ord + Copy> Ledger<P> {
    /// An empty ledger.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records a receipt exchanged with `peer` at `now_ms`.
    pub fn record(&mut self, now_ms: u64, direction: Direction, peer: P, receipt: Signed) {
        let (side, total) = match direction {
            Direction::Served => (&mut self.served, &mut self.served_total),
            Direction::Consumed => (&mut self.consumed, &mut self.consumed_total),
        };
        total.add(now_ms, &receipt);
        if !side.contains_key(&peer) && side.len() >= MAX_PEERS {
            let idle = side.iter().min_by_key(|(_, a)| a.last_ms).map(|(p, _)| *p);
            if let Some(idle) = idle {
                side.remove(&idle);
                self.dropped_accounts += 1;
            }
        }
        side.entry(peer).or_default().add(now_ms, &receipt);
        if self.recent.len() >= MAX_RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(Entry {
            at_ms: now_ms,
            direction,
            peer,
            receipt,
        });
    }

    /// Records a call this node ran for itself.
    pub fn record_local(&mut self, now_ms: u64, receipt: &Signed) {
        self.local_total.add(now_ms, receipt);
    }

    /// Accounts of peers this node served, by peer.
    pub fn served(&self) -> impl Iterator<Item = (&P, &Account)> {
        self.served.iter()
    }

    /// Accounts of peers that served this node, by peer.
    pub fn consumed(&self) -> impl Iterator<Item = (&P, &Account)> {
        self.consumed.iter()
    }

    /// Totals: served, consumed, local.
    pub fn totals(&self) -> (Account, Account, Account) {
        (self.served_total, self.consumed_total, self.local_total)
    }

    /// The latest receipts, oldest first.
    pub fn recent(&self) -> impl DoubleEndedIterator<Item = &Entry<P>> {
        self.recent.iter()
    }

    /// Accounts dropped to keep within [`MAX_PEERS`].
    pub fn dropped_accounts(&self) -> u64 {
        self.dropped_accounts
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FunctionId;
    use crate::receipt::{CallId, Receipt};

    fn receipt(fuel: u64) -> Signed {
        Signed {
            receipt: Receipt {
                function: FunctionId::of(b"f"),
                input: [0; 32],
                output: [0; 32],
                fuel_used: fuel,
                wall_us: 10,
                executor: [1; 32],
                entry: [2; 32],
                call: CallId([0; 16]),
            },
            signature: [0; 64],
        }
    }

    #[test]
    fn sums_per_peer_and_in_total() {
        let mut l = Ledger::new();
        l.record(1, Direction::Served, 7u32, receipt(100));
        l.record(2, Direction::Served, 7u32, receipt(50));
        l.record(3, Direction::Consumed, 8u32, receipt(5));
        l.record_local(4, &receipt(1));
        let served: Vec<_> = l.served().collect();
        assert_eq!(served.len(), 1);
        assert_eq!((served[0].1.calls, served[0].1.fuel), (2, 150));
        let (s, c, local) = l.totals();
        assert_eq!(
            (s.calls, s.fuel, c.calls, c.fuel, local.calls),
            (2, 150, 1, 5, 1)
        );
        assert_eq!(l.recent().count(), 3);
    }

    #[test]
    fn is_bounded() {
        let mut l = Ledger::new();
        for i in 0..(MAX_PEERS as u64 + 10) {
            l.record(i, Direction::Served, i, receipt(1));
        }
        assert_eq!(l.served().count(), MAX_PEERS);
        assert_eq!(l.dropped_accounts(), 10);
        // The idlest went: the first ten.
        assert!(l.served().all(|(p, _)| *p >= 10));
        assert_eq!(l.totals().0.calls, MAX_PEERS as u64 + 10);
        assert_eq!(l.recent().count(), MAX_RECENT);
        assert_eq!(
            l.recent().next().map(|e| e.peer),
            Some(MAX_PEERS as u64 + 10 - MAX_RECENT as u64)
        );
    }
}
