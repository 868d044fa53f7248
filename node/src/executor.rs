//! An executor: a fixed pool of threads fed by a bounded queue. Calls run on one
//! (a thread per concurrent-call slot), compiles on another.
//!
//! Under load a worker that finishes a call takes the next one from the queue without
//! sleeping, so the slots never sit idle between calls. When every worker is busy and
//! the queue is full, a new call is refused at once (the caller answers "busy" and,
//! in a network, places it elsewhere). The queue's capacity is the operator's
//! `max_queued_calls`; with 0, a call runs only if a worker is free.
//!
//! A call's place (its slot or its queue place) is given back before its result is
//! handed on, so a caller that hears the answer and calls again finds the place free.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use tokio::sync::oneshot;

type Job = Box<dyn FnOnce() + Send + 'static>;

/// The pool.
pub(crate) struct Executor {
    tx: Sender<Job>,
    running: Arc<AtomicUsize>,
    /// Jobs taken and not finished (running or waiting), at most `capacity`.
    in_flight: Arc<AtomicUsize>,
    capacity: usize,
}

/// The queue is full.
#[derive(Debug)]
pub(crate) struct Full {
    pub(crate) running: usize,
    pub(crate) queued: usize,
}

impl Executor {
    /// Starts `workers` threads named `name-N` with a queue of `queue` places.
    pub(crate) fn start(name: &str, workers: usize, queue: usize) -> std::io::Result<Self> {
        let capacity = workers + queue;
        let (tx, rx) = bounded::<Job>(capacity.max(1));
        for n in 0..workers {
            let rx: Receiver<Job> = rx.clone();
            thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || {
                    for job in rx {
                        job();
                    }
                })?;
        }
        Ok(Self {
            tx,
            running: Arc::new(AtomicUsize::new(0)),
            in_flight: Arc::new(AtomicUsize::new(0)),
            capacity,
        })
    }

    /// Calls running now.
    pub(crate) fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Calls waiting for a worker.
    pub(crate) fn queued(&self) -> usize {
        self.in_flight
            .load(Ordering::SeqCst)
            .saturating_sub(self.running())
    }

    /// Queues `f`; its result arrives on the returned receiver (dropped without a value
    /// if `f` panics).
    pub(crate) fn try_submit<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<oneshot::Receiver<R>, Full> {
        let full = || Full {
            running: self.running(),
            queued: self.queued(),
        };
        if self.in_flight.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.in_flight.fetch_sub(1, Ordering::SeqCst);
            return Err(full());
        }
        let (done, result) = oneshot::channel();
        let running = Arc::clone(&self.running);
        let in_flight = Arc::clone(&self.in_flight);
        let job: Job = Box::new(move || {
            running.fetch_add(1, Ordering::SeqCst);
            // A panic in a job loses that job's answer (its caller sees an internal
            // error), never the worker.
            let outcome = catch_unwind(AssertUnwindSafe(f));
            running.fetch_sub(1, Ordering::SeqCst);
            in_flight.fetch_sub(1, Ordering::SeqCst);
            if let Ok(r) = outcome {
                let _ = done.send(r);
            }
        });
        match self.tx.try_send(job) {
            Ok(()) => Ok(result),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.in_flight.fetch_sub(1, Ordering::SeqCst);
                Err(full())
            }
        }
    }

    /// Waits until nothing runs or waits, at most `grace`. Returns true if drained.
    pub(crate) async fn drain(&self, grace: Duration) -> bool {
        let deadline = Instant::now() + grace;
        while self.running() > 0 || self.queued() > 0 {
            if Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        true
    }
}
