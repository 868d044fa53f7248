//! Admission: whether a node takes a call now, the order of its checks, and what each
//! refusal means. The node decides with it before loading the module; the simulator
//! decides with it when a call reaches a simulated peer.
//!
//! The order, first refusal wins:
//! 1. shutting down → `shutting_down`;
//! 2. outside the operator's offered hours → `busy` (the message names `offer_hours`);
//! 3. the function is not one a trusted publisher's alias points at, under
//!    `trusted_only` → `untrusted`;
//! 4. a gateway (no call slots) → `busy`;
//! 5. every slot and queue place taken → `busy`;
//! 6. the CPU share spent → `busy` (the message names `cpu_share`);
//! 7. otherwise: run now if a slot is free, else queue.
//!
//! Every refusal is retryable elsewhere (`crate::error::Disposition`): none of them
//! says anything about the function. What depends on the function itself (its caps,
//! its state namespaces, its input size) is checked after it is loaded.

use crate::error::ErrorKind;

/// What the node knows about itself when a call arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Load {
    /// Shutting down (SIGTERM received).
    pub draining: bool,
    /// Inside the offered hours (always true without `offer_hours`).
    pub offering: bool,
    /// The function may run here under the trust policy.
    pub trusted: bool,
    /// Call slots (`max_concurrent_calls`; 0 for a gateway).
    pub slots: usize,
    /// Queue places (`max_queued_calls`).
    pub queue: usize,
    /// Calls running now.
    pub running: usize,
    /// Calls queued now.
    pub queued: usize,
    /// The CPU share is spent for now.
    pub cpu_share_spent: bool,
}

/// Where an admitted call goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    /// A slot is free: run it now.
    Run,
    /// Every slot is taken but a queue place is free: wait for a slot.
    Queue,
}

/// Why a call was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The node is shutting down.
    ShuttingDown,
    /// Outside the offered hours.
    OffHours,
    /// Not trusted under `trusted_only`.
    Untrusted,
    /// The node runs no calls itself.
    Gateway,
    /// Every slot and queue place is taken.
    Full,
    /// The CPU share is spent.
    CpuShare,
}

impl Refusal {
    /// Its error kind.
    pub fn kind(self) -> ErrorKind {
        match self {
            Self::ShuttingDown => ErrorKind::ShuttingDown,
            Self::Untrusted => ErrorKind::Untrusted,
            Self::OffHours | Self::Gateway | Self::Full | Self::CpuShare => ErrorKind::Busy,
        }
    }
}

/// Decides whether a call is taken now.
///
/// # Errors
/// The first refusal in the order above.
pub fn admit(load: &Load) -> Result<Admit, Refusal> {
    if load.draining {
        return Err(Refusal::ShuttingDown);
    }
    if !load.offering {
        return Err(Refusal::OffHours);
    }
    if !load.trusted {
        return Err(Refusal::Untrusted);
    }
    if load.slots == 0 {
        return Err(Refusal::Gateway);
    }
    let slot_free = load.running < load.slots;
    if !slot_free && load.queued >= load.queue {
        return Err(Refusal::Full);
    }
    if load.cpu_share_spent {
        return Err(Refusal::CpuShare);
    }
    Ok(if slot_free { Admit::Run } else { Admit::Queue })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> Load {
        Load {
            offering: true,
            trusted: true,
            slots: 2,
            queue: 1,
            ..Load::default()
        }
    }

    #[test]
    fn the_order_of_checks() {
        assert_eq!(admit(&open()), Ok(Admit::Run));
        let full = Load {
            running: 2,
            queued: 1,
            ..open()
        };
        assert_eq!(admit(&full), Err(Refusal::Full));
        assert_eq!(admit(&Load { queued: 0, ..full }), Ok(Admit::Queue));
        let everything = Load {
            draining: true,
            offering: false,
            trusted: false,
            slots: 0,
            cpu_share_spent: true,
            ..full
        };
        assert_eq!(admit(&everything), Err(Refusal::ShuttingDown));
        let l = Load {
            draining: false,
            ..everything
        };
        assert_eq!(admit(&l), Err(Refusal::OffHours));
        let l = Load {
            offering: true,
            ..l
        };
        assert_eq!(admit(&l), Err(Refusal::Untrusted));
        let l = Load { trusted: true, ..l };
        assert_eq!(admit(&l), Err(Refusal::Gateway));
        let l = Load { slots: 2, ..l };
        assert_eq!(admit(&l), Err(Refusal::Full));
        let l = Load { queued: 0, ..l };
        assert_eq!(admit(&l), Err(Refusal::CpuShare));
    }

    #[test]
    fn every_refusal_is_retryable_elsewhere() {
        for r in [
            Refusal::ShuttingDown,
            Refusal::OffHours,
            Refusal::Untrusted,
            Refusal::Gateway,
            Refusal::Full,
            Refusal::CpuShare,
        ] {
            assert!(r.kind().retry_elsewhere(), "{r:?}");
        }
    }
}
