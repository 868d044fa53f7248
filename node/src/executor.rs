//! An executor: a fixed pool of threads fed by a bounded queue. Calls run on one
//! (a thread per concurrent-call slot), compiles on another.
//!
//! Under load a worker that finishes a call takes the next one from the queue without
//! sleeping, so the slots never sit idle between calls. When every worker is busy and
//! the queue is full, a new call is refused at once (the caller answers "busy" and,
//! in a network, places it elsewhere). The queue's capacity is the operator's
//! `max_queued_calls`; with 0, a call runs only if a worker is free.

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
        let (tx, rx) = bounded::<Job>(queue);
        let running = Arc::new(AtomicUsize::new(0));
        for n in 0..workers {
            let rx: Receiver<Job> = rx.clone();
            let running = Arc::clone(&running);
            thread::Builder::new()
                .name(format!("{name}-{n}"))
                .spawn(move || {
                    for job in rx {
                        running.fetch_add(1, Ordering::SeqCst);
                        // A panic in a job loses that job's answer (its caller sees an
                        // internal error), never the worker.
                        let _ = catch_unwind(AssertUnwindSafe(job));
                        running.fetch_sub(1, Ordering::SeqCst);
                    }
                })?;
        }
        Ok(Self { tx, running })
    }

    /// Calls running now.
    pub(crate) fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }

    /// Calls waiting for a worker.
    pub(crate) fn queued(&self) -> usize {
        self.tx.len()
    }

    /// Queues `f`; its result arrives on the returned receiver (dropped without a value
    /// if `f` panics).
    pub(crate) fn try_submit<R: Send + 'static>(
        &self,
        f: impl FnOnce() -> R + Send + 'static,
    ) -> Result<oneshot::Receiver<R>, Full> {
        let (done, result) = oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = done.send(f());
        });
        match self.tx.try_send(job) {
            Ok(()) => Ok(result),
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => Err(Full {
                running: self.running(),
                queued: self.queued(),
            }),
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
