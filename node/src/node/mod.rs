//! One node: the store, the runtime and the local call path.
//!
//! The HTTP gateway (`api`) and the peer network (`net`) drive this; `scheduler`
//! decides where a call runs.

mod status;

use crate::clock::now_ms;
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use kith_protocol::admission::{self, Refusal};
use kith_protocol::capacity::DeviceClass;
use kith_protocol::limits::EffectiveLimits;
use kith_protocol::module::{self, ModuleError};
use kith_protocol::ratelimit::TokenBucket;
use kith_protocol::{FunctionId, Manifest};
use libp2p_identity::{Keypair, PeerId};
use serde::Serialize;

pub use crate::call::{CallError, Ranked, Receipt};
use crate::config::NodeConfig;
use crate::executor::Executor;
use crate::identity::{self, IdentityError};
use crate::runtime::{InvokeError, Runtime};
use crate::store::{Store, StoreError};
pub use status::{Capacity, StateStatus, Status};

/// Why a node could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The data dir could not be created.
    #[error("cannot create data dir {path}: {source}")]
    DataDir {
        /// The dir.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Identity.
    #[error(transparent)]
    Identity(#[from] IdentityError),
    /// Store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Runtime threads.
    #[error("cannot start the runtime: {0}")]
    Runtime(std::io::Error),
    /// A configuration value is unusable.
    #[error("bad configuration: {0}")]
    Config(String),
    /// Publisher keys or the alias registry.
    #[error(transparent)]
    Aliases(#[from] crate::aliases::AliasOpError),
    /// The state directory cannot be opened.
    #[error("state: {0}")]
    State(#[from] crate::state::StateOpError),
}

/// Why a publish was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PublishError {
    /// The module is not a valid kith function.
    #[error(transparent)]
    Invalid(#[from] ModuleError),
    /// Storing failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The module could not be compiled here (too slow, or the compile queue is full).
    #[error(transparent)]
    Compile(InvokeError),
}

/// A published function.
#[derive(Debug, Clone, Serialize)]
pub struct Published {
    /// The id.
    pub id: FunctionId,
    /// Module size in bytes.
    pub size: u64,
    /// True if it was not stored before.
    pub created: bool,
    /// The manifest it carries (or defaults).
    pub manifest: Manifest,
}

/// What is known about a stored function.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionInfo {
    /// The id.
    pub id: FunctionId,
    /// Module size in bytes.
    pub size: u64,
    /// Its manifest.
    pub manifest: Manifest,
    /// True if the module carries a manifest section (else defaults apply).
    pub has_manifest: bool,
    /// True if compiled code is loaded in memory.
    pub loaded: bool,
}

/// A node.
pub struct Node {
    pub(crate) config: NodeConfig,
    pub(crate) key: Keypair,
    pub(crate) peer_id: PeerId,
    pub(crate) net: OnceLock<crate::net::Net>,
    pub(crate) device: DeviceClass,
    pub(crate) cpu_score: u32,
    /// Manifest and module size of functions seen, for placement.
    pub(crate) metas: Mutex<HashMap<FunctionId, crate::scheduler::Meta>>,
    /// Smoothed fuel per call of functions seen, for placement.
    pub(crate) fuel_seen: Mutex<HashMap<FunctionId, kith_protocol::placement::FuelAverage>>,
    /// What peers did with the calls this node sent them (protocol's `conduct`):
    /// placement charges each the time it wasted.
    pub(crate) conduct: Mutex<kith_protocol::conduct::Conduct<PeerId>>,
    /// Receipts this node issued and received, summed per peer (bounded).
    pub(crate) ledger: Mutex<kith_protocol::ledger::Ledger<PeerId>>,
    /// Peers' receipts refused (forged, for another call or output, impossible fuel).
    pub(crate) receipts_refused: AtomicU64,
    /// Verified calls whose vote had dissenters, and the dissenting answers.
    pub(crate) outvoted: AtomicU64,
    pub(crate) fetched: AtomicU64,
    pub(crate) served_fetches: AtomicU64,
    pub(crate) forwarded: AtomicU64,
    pub(crate) remote_served: AtomicU64,
    pub(crate) store: Arc<Store>,
    pub(crate) runtime: Arc<Runtime>,
    /// Publisher keys, the alias registry and the trust policy.
    pub(crate) aliases: Arc<crate::aliases::Aliases>,
    /// The key this node signs the state changes its functions make with (its
    /// identity key; `state_key` on the status page).
    pub(crate) state_key: ed25519_dalek::SigningKey,
    /// Call metrics (status page, `/metrics`).
    pub(crate) metrics: Arc<crate::metrics::Metrics>,
    /// Application state documents held here.
    pub(crate) state: Arc<crate::state::StateStore>,
    /// Peers known to hold each document (from syncs with them, either way): a
    /// change goes to them, and they are asked first when a function's documents
    /// must be fetched.
    pub(crate) state_holders: Mutex<kith_protocol::state::Holders<PeerId>>,
    /// Documents fetched before a call could run, and the time spent doing it.
    pub(crate) state_fetches: AtomicU64,
    pub(crate) state_fetch_ms: AtomicU64,
    /// Document syncs running, per peer and document (a second request while one
    /// runs sets the flag, and the running one goes round once more).
    /// Sync messages refused for unauthorised changes or orphan floods.
    pub(crate) state_refused: AtomicU64,
    pub(crate) state_syncing: Mutex<HashMap<(PeerId, kith_protocol::state::DocName), bool>>,
    /// Bytes of Automerge sync messages sent to and received from peers.
    pub(crate) sync_sent: AtomicU64,
    pub(crate) sync_received: AtomicU64,
    executor: Executor,
    /// Fuel calls may still use under `cpu_share` (None when the share is 1).
    cpu_budget: Option<Mutex<TokenBucket>>,
    draining: AtomicBool,
    /// Wakes the advert loop early, e.g. when a function became warm here.
    pub(crate) advert_now: Arc<tokio::sync::Notify>,
    started: Instant,
    served: AtomicU64,
    failed: AtomicU64,
    refused: AtomicU64,
}

/// Fuel per second that `share` of this machine's cores allows.
fn fuel_per_sec(cpu_score: u32, share: f64) -> f64 {
    let cores = std::thread::available_parallelism().map_or(1, usize::from) as f64;
    f64::from(cpu_score) * 1000.0 * cores * share
}

impl Node {
    /// Opens the data dir (identity, store) and builds the runtime.
    ///
    /// # Errors
    /// See [`OpenError`].
    pub fn open(config: NodeConfig) -> Result<Self, OpenError> {
        std::fs::create_dir_all(&config.data_dir).map_err(|source| OpenError::DataDir {
            path: config.data_dir.clone(),
            source,
        })?;
        let key = identity::load_or_create(&config.data_dir)?;
        let store = Store::open(&config.data_dir.join("store"), config.store_budget_bytes)?;
        let runtime = Runtime::new(crate::runtime::RuntimeConfig {
            max_module_bytes: config.caps.max_module_bytes,
            compile_workers: config.compile_workers,
            backend: config.backend.resolve(),
            compile_timeout: Duration::from_millis(config.compile_timeout_ms),
        })
        .map_err(OpenError::Runtime)?;
        let aliases =
            crate::aliases::Aliases::open(&config.data_dir, &config.trust, config.trusted_only)?;
        let executor = Executor::start(
            "kith-call",
            config.max_concurrent_calls,
            config.max_queued_calls,
        )
        .map_err(OpenError::Runtime)?;
        let state = crate::state::StateStore::open(&config.data_dir, config.state.clone())?;
        let aliases = Arc::new(aliases);
        state.set_authorities(Arc::new(crate::grants::GrantAuthorities(Arc::clone(
            &aliases,
        ))));
        let state_key = key
            .clone()
            .try_into_ed25519()
            .ok()
            .and_then(|k| crate::aliases::signing_key(&k))
            .ok_or_else(|| {
                OpenError::Runtime(std::io::Error::other(
                    "the node's identity is not an ed25519 key; it cannot sign state changes",
                ))
            })?;
        let cpu_score = runtime.measure_cpu_score();
        tracing::info!(cpu_score, "measured CPU speed (fuel per ms)");
        let cpu_budget = (config.cpu_share < 1.0).then(|| {
            let per_sec = fuel_per_sec(cpu_score, config.cpu_share);
            tracing::info!(
                share = config.cpu_share,
                fuel_per_sec = per_sec,
                "CPU share capped"
            );
            Mutex::new(TokenBucket::new(per_sec, per_sec, now_ms()))
        });
        Ok(Self {
            executor,
            key: key.clone(),
            net: OnceLock::new(),
            device: config.device,
            cpu_score,
            cpu_budget,
            metas: Mutex::new(HashMap::new()),
            fuel_seen: Mutex::new(HashMap::new()),
            conduct: Mutex::new(kith_protocol::conduct::Conduct::new(Default::default())),
            ledger: Mutex::new(kith_protocol::ledger::Ledger::new()),
            receipts_refused: AtomicU64::new(0),
            outvoted: AtomicU64::new(0),
            fetched: AtomicU64::new(0),
            served_fetches: AtomicU64::new(0),
            forwarded: AtomicU64::new(0),
            remote_served: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            advert_now: Arc::new(tokio::sync::Notify::new()),
            peer_id: PeerId::from(key.public()),
            store: Arc::new(store),
            runtime: Arc::new(runtime),
            aliases,
            state_key,
            metrics: Arc::new(crate::metrics::Metrics::default()),
            state: Arc::new(state),
            state_holders: Mutex::new(kith_protocol::state::Holders::new(Default::default())),
            state_fetches: AtomicU64::new(0),
            state_fetch_ms: AtomicU64::new(0),
            state_syncing: Mutex::new(HashMap::new()),
            sync_sent: AtomicU64::new(0),
            sync_received: AtomicU64::new(0),
            state_refused: AtomicU64::new(0),
            config,
            started: Instant::now(),
            served: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            refused: AtomicU64::new(0),
        })
    }

    /// This node's id.
    pub fn peer_id(&self) -> PeerId {
        self.peer_id
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &NodeConfig {
        &self.config
    }

    /// The peer network, once started.
    pub fn net(&self) -> Option<&crate::net::Net> {
        self.net.get()
    }

    /// The runtime (for benchmarks).
    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Validates, stores and compiles a module. Validation and compilation run on the
    /// compile pool (never on a call worker or the async runtime), compilation under
    /// its deadline.
    ///
    /// # Errors
    /// A [`ModuleError`] naming the problem and limit, or the compile's refusal
    /// (`compile_timeout`, or busy when the compile queue is full); nothing new is
    /// stored then.
    pub async fn publish(&self, bytes: Vec<u8>) -> Result<Published, PublishError> {
        let max = self.config.caps.max_module_bytes;
        let (info, bytes) = self
            .runtime
            .background(move || (module::inspect(&bytes, max), bytes))
            .await
            .map_err(PublishError::Compile)?;
        let info = info?;
        if let Some(why) = self.runtime.refusal(&FunctionId::of(&bytes)) {
            return Err(PublishError::Compile(why));
        }
        let (id, created) = self.store.put(&bytes)?;
        match self.runtime.load(&self.store, &id).await {
            // Peers should learn at once that this function is warm here.
            Ok((_, Some(_))) => self.advert_now.notify_one(),
            Ok((_, None)) => {}
            Err(e) => {
                if created {
                    self.store.remove(&id);
                }
                return Err(PublishError::Compile(e));
            }
        }
        if created {
            tracing::info!(function = %id, size = info.size, "published");
            if let Some(net) = self.net.get() {
                net.provide_soon(id);
            }
        }
        Ok(Published {
            id,
            size: info.size,
            created,
            manifest: info.manifest,
        })
    }

    /// What is known about a stored function.
    ///
    /// # Errors
    /// `NotFound` or `Corrupt`.
    pub fn function_info(&self, id: &FunctionId) -> Result<FunctionInfo, InvokeError> {
        let bytes = self.store.get(id)?;
        let info =
            module::inspect(&bytes, u64::MAX).map_err(|e| InvokeError::Invalid(e.to_string()))?;
        Ok(FunctionInfo {
            id: *id,
            size: info.size,
            manifest: info.manifest,
            has_manifest: info.has_manifest,
            loaded: self.runtime.cached(id).is_some(),
        })
    }

    /// Counts a finished call in the status counters.
    pub(crate) fn count(
        &self,
        function: &FunctionId,
        result: &Result<Receipt, CallError>,
        elapsed: Duration,
    ) {
        let (fuel, error) = match result {
            Ok(r) => (r.fuel_used, None),
            Err(e) => (0, Some((e.kind(), e.to_string()))),
        };
        self.metrics.record(function, elapsed, fuel, error);
        match result {
            Ok(_) => self.served.fetch_add(1, Ordering::Relaxed),
            Err(
                CallError::Busy { .. }
                | CallError::CpuShare { .. }
                | CallError::OffHours { .. }
                | CallError::FetchBusy(_)
                | CallError::ShuttingDown,
            ) => self.refused.fetch_add(1, Ordering::Relaxed),
            Err(_) => self.failed.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// True when the node offers capacity now (inside its offered hours, if any).
    pub(crate) fn offering(&self) -> bool {
        self.config
            .offer_hours
            .is_none_or(|h| h.contains(crate::config::local_hour()))
    }

    /// True when calls have used up the operator's CPU share for now.
    pub(crate) fn cpu_share_spent(&self) -> bool {
        self.cpu_budget.as_ref().is_some_and(|b| {
            b.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .balance(now_ms())
                <= 0.0
        })
    }

    fn charge_cpu_share(&self, fuel: f64) {
        if let Some(b) = &self.cpu_budget {
            b.lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .charge(fuel);
        }
    }

    /// Calls running now and waiting now.
    pub(crate) fn load_now(&self) -> (usize, usize) {
        (self.executor.running(), self.executor.queued())
    }

    fn busy(&self, running: usize, queued: usize) -> CallError {
        CallError::Busy {
            running,
            queued,
            max_running: self.config.max_concurrent_calls,
            max_queued: self.config.max_queued_calls,
        }
    }

    /// Runs a call here: refuses as busy when full, loads the module if needed, and runs
    /// it on a call worker under its limits. The module must be stored here.
    ///
    /// # Errors
    /// [`CallError::Busy`] or the call's [`InvokeError`].
    pub(crate) async fn call_local(
        self: &Arc<Self>,
        id: FunctionId,
        input: Vec<u8>,
        asked: &crate::receipts::Asked,
    ) -> Result<Receipt, CallError> {
        // Protocol's admission decides, in its order; the executor's bounded queue
        // then enforces the slot and queue caps atomically.
        let (running, queued) = self.load_now();
        let load = admission::Load {
            draining: self.draining(),
            offering: self.offering(),
            trusted: self.aliases.may_run(&id),
            slots: self.config.max_concurrent_calls,
            queue: self.config.max_queued_calls,
            running,
            queued,
            cpu_share_spent: self.cpu_share_spent(),
        };
        if let Err(refusal) = admission::admit(&load) {
            return Err(match refusal {
                Refusal::ShuttingDown => CallError::ShuttingDown,
                Refusal::OffHours => match self.config.offer_hours {
                    Some(hours) => CallError::OffHours { hours },
                    None => self.busy(running, queued),
                },
                Refusal::Untrusted => CallError::Untrusted { function: id },
                Refusal::Gateway | Refusal::Full => self.busy(running, queued),
                Refusal::CpuShare => CallError::CpuShare {
                    share: self.config.cpu_share,
                    fuel_per_sec: fuel_per_sec(self.cpu_score, self.config.cpu_share),
                },
            });
        }
        let (loaded, cold) = self.runtime.load(&self.store, &id).await?;
        if cold.is_some() {
            // Peers should learn at once that this function is warm here.
            self.advert_now.notify_one();
        }
        // A node that does not host a function's documents cannot serve its state:
        // refuse, so the entry node places the call on a peer that can.
        let manifest = &loaded.manifest;
        if let Some(namespace) = manifest
            .state_read
            .iter()
            .chain(&manifest.state_write)
            .map(|p| p.namespace)
            .find(|ns| !self.state.hosts_namespace(ns))
        {
            return Err(CallError::StateNotHosted {
                function: id,
                namespace,
            });
        }
        // The manifest's state permissions take effect only where the namespace's
        // owner granted the function.
        if let Some(namespace) = manifest
            .state_read
            .iter()
            .chain(&manifest.state_write)
            .map(|p| p.namespace)
            .find(|ns| !self.aliases.function_granted(ns, &id))
        {
            return Err(CallError::NotGranted {
                function: id,
                namespace,
            });
        }
        let limits =
            EffectiveLimits::new(&loaded.manifest, &self.config.caps).map_err(InvokeError::from)?;
        if input.len() as u64 > limits.max_input_bytes {
            return Err(InvokeError::InputTooLarge {
                size: input.len() as u64,
                limit: limits.max_input_bytes,
            }
            .into());
        }
        let docs = loaded.manifest.state_docs();
        if !docs.is_empty() {
            self.fetch_docs(&docs, Duration::from_millis(limits.timeout_ms))
                .await;
        }
        // Only ABI 2 modules can import state functions: others get none of it, and
        // their calls pay nothing for it.
        let written = Arc::new(Mutex::new(std::collections::BTreeSet::new()));
        let state = (loaded.manifest.abi >= kith_protocol::abi::STATE_ABI_VERSION).then(|| {
            crate::runtime::StateAccess {
                store: Arc::clone(&self.state),
                written: Arc::clone(&written),
                writer: crate::state::Writer {
                    key: self.state_key.clone(),
                    function: Some(id),
                },
            }
        });
        let runtime = Arc::clone(&self.runtime);
        let started = Instant::now();
        let input = Arc::new(input);
        let worker_input = Arc::clone(&input);
        let outcome = self
            .executor
            .try_submit(move || runtime.invoke(&loaded, &worker_input, &limits, state))
            .map_err(|full| self.busy(full.running, full.queued))?
            .await
            .map_err(|_| InvokeError::Internal("the call's worker panicked".into()));
        // Whatever the call's outcome, what it wrote stays written: tell peers.
        let written = std::mem::take(&mut *crate::clock::lock(&written));
        for doc in &written {
            self.pass_on(doc, None);
        }
        // Charge the CPU share: the fuel used, or for a failed call the fuel its wall
        // time could have burnt at this machine's speed.
        let charge = match &outcome {
            Ok(Ok(o)) => o.fuel_used as f64,
            _ => started.elapsed().as_secs_f64() * 1000.0 * f64::from(self.cpu_score),
        };
        self.charge_cpu_share(charge);
        let outcome = outcome??;
        let proof = self.sign_receipt(
            asked,
            id,
            &input,
            &outcome.output,
            outcome.fuel_used,
            outcome.wall,
        );
        Ok(Receipt {
            output: outcome.output,
            function: id,
            executed_by: self.peer_id,
            fuel_used: outcome.fuel_used,
            wall: outcome.wall,
            cold,
            placement: Vec::new(),
            proof,
            verification: None,
        })
    }

    /// Stops taking new calls: they are refused as `shutting_down` (retryable, so
    /// an entry node tries another peer), and the next advert, sent at once, offers
    /// no free slot.
    pub fn stop_taking_calls(&self) {
        if !self.draining.swap(true, Ordering::SeqCst) {
            self.advert_now.notify_one();
        }
    }

    /// True once the node stopped taking calls.
    pub(crate) fn draining(&self) -> bool {
        self.draining.load(Ordering::SeqCst)
    }

    /// Stops accepting calls and waits (at most `grace`) for running ones to finish.
    pub async fn drain(&self, grace: Duration) {
        self.stop_taking_calls();
        if !self.executor.drain(grace).await {
            tracing::warn!(
                ?grace,
                "calls still running after the shutdown grace period"
            );
        }
    }
}
