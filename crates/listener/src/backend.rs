//! Backends and per-request scheduling (R10), and the passive health check
//! (R11).
//!
//! In: a listener's [`BackendConfig`]s and [`SchedulerKind`], plus the pool
//! they replace on a config reload. Out: a [`BackendPool`] whose
//! [`BackendPool::pick`] hands the proxy one [`Lease`] per request. Health is
//! written by the passive check ([`BackendPool::mark_connect_failure`]) and
//! by the active checks in [`crate::health`], and read by `pick`.
//!
//! How a backend taken out comes back:
//! - while active health checks run on the pool, only they bring it back,
//!   after `healthy_threshold` consecutive successful checks;
//! - without active checks (`health_check` is optional), it is eligible again
//!   [`PASSIVE_COOLDOWN`] after it was taken out. That is checked lazily by
//!   `pick` against a timestamp, so no background task is needed; if it still
//!   refuses connections the next real request takes it out again.

use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::watch;

use crate::log_budget::{Budget, LogBudget};
use crate::upstream::Upstream;
use crate::{BackendConfig, SchedulerKind};

/// How long a backend taken out by the passive check stays out when no
/// active health checks run. Long enough that a dead backend costs clients
/// only one failed connect attempt per 10 s (each retried on another
/// backend, R13), short enough that a restarted backend is back in traffic
/// quickly without any probing.
const PASSIVE_COOLDOWN: Duration = Duration::from_secs(10);

/// One backend and its live state.
///
/// The live state (health, in-flight count, consecutive check results) is
/// shared with the same address in the pool this one replaced, so a config
/// reload neither resets health nor loses track of requests still running.
#[derive(Debug)]
pub struct Backend {
    /// `host:port` of the plain-HTTP server (shared, not copied, by every
    /// request and pooled connection that names it).
    pub address: Arc<str>,
    /// Weight 0..=100; 0 drains (no new requests, running ones finish).
    pub weight: u8,
    /// The listener whose pool holds this entry, for log lines written
    /// after the request left the pool (a response body cut short).
    pub listener: Arc<str>,
    state: Arc<State>,
}

/// Live state of one backend address, shared across config reloads.
#[derive(Debug)]
struct State {
    healthy: AtomicBool,
    in_flight: AtomicUsize,
    /// When the backend last went out of rotation, in milliseconds since
    /// [`now_ms`]'s epoch; meaningful only while `healthy` is false.
    down_since_ms: AtomicU64,
    /// Consecutive successful active checks (reset by a failure).
    successes: AtomicU32,
    /// Consecutive failed active checks (reset by a success).
    failures: AtomicU32,
    /// Idle keep-alive connections to the address: kept, like the rest,
    /// across reloads, so a reload does not reconnect to every backend.
    connections: Arc<Upstream>,
}

impl State {
    fn new(address: Arc<str>) -> Self {
        State {
            connections: Arc::new(Upstream::new(address)),
            // R10: backends start healthy.
            healthy: AtomicBool::new(true),
            in_flight: AtomicUsize::new(0),
            down_since_ms: AtomicU64::new(0),
            successes: AtomicU32::new(0),
            failures: AtomicU32::new(0),
        }
    }
}

impl Backend {
    /// Healthy, i.e. in rotation when its weight is above 0.
    ///
    /// A backend taken out by the passive check in a pool without active
    /// checks reads unhealthy here until the next [`BackendPool::pick`] or
    /// [`BackendPool::any_eligible`] after the cooldown puts it back.
    pub fn is_healthy(&self) -> bool {
        self.state.healthy.load(Ordering::Acquire)
    }

    /// Requests in flight: leases picked and not yet dropped, counted across
    /// config reloads.
    pub fn in_flight(&self) -> usize {
        self.state.in_flight.load(Ordering::Relaxed)
    }

    /// The backend's connections, to send a request on.
    pub(crate) fn connections(&self) -> &Arc<Upstream> {
        &self.state.connections
    }

    /// Records a successful active check; returns the consecutive successes.
    pub(crate) fn record_success(&self) -> u32 {
        self.state.failures.store(0, Ordering::Relaxed);
        self.state
            .successes
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1)
    }

    /// Records a failed active check; returns the consecutive failures.
    pub(crate) fn record_failure(&self) -> u32 {
        self.state.successes.store(0, Ordering::Relaxed);
        self.state
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1)
    }
}

/// A listener's backends and its scheduler.
#[derive(Debug)]
pub struct BackendPool {
    backends: Vec<Arc<Backend>>,
    scheduler: Scheduler,
    /// Rotation counter: round robin, and tie-breaking for least connections.
    next: AtomicUsize,
    passive_cooldown: Duration,
    /// Active health check tasks running on this pool; while above 0 they,
    /// not the passive cooldown, decide when a backend comes back.
    active_checks: AtomicUsize,
    /// Bumped on every health transition, for whoever awaits them.
    health_events: watch::Sender<u64>,
    /// The listener the pool serves, for its log lines.
    listener: Arc<str>,
    /// Bounds the "no healthy backend" warning to one per window: it would
    /// otherwise repeat for every request answered 503.
    unavailable_logged: LogBudget,
}

#[derive(Debug)]
enum Scheduler {
    RoundRobin,
    /// Smooth weighted round robin; the current weight of each backend, by index.
    SmoothWeighted(Mutex<Vec<i64>>),
    WeightedLeastConnections,
}

/// A picked backend. It counts as in flight from [`BackendPool::pick`] until
/// the lease is dropped.
#[derive(Debug)]
pub struct Lease {
    backend: Arc<Backend>,
    index: usize,
}

impl Lease {
    /// The backend to forward the request to.
    pub fn backend(&self) -> &Arc<Backend> {
        &self.backend
    }

    /// Its index in the pool that picked it (for `exclude` and
    /// [`BackendPool::mark_connect_failure`] on that pool).
    pub fn index(&self) -> usize {
        self.index
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        self.backend.state.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

impl BackendPool {
    /// A pool for `configs`, scheduled by `kind`.
    ///
    /// The state (health, in-flight counters, consecutive check results,
    /// idle connections) of addresses also present in `previous` is carried
    /// over, so a config reload does not reset health, drop in-flight
    /// accounting or reconnect; addresses no longer listed are dropped. An
    /// address listed twice shares one state (it is one server).
    pub fn new(
        configs: &[BackendConfig],
        kind: SchedulerKind,
        previous: Option<&BackendPool>,
    ) -> Self {
        Self::build(configs, kind, previous, PASSIVE_COOLDOWN)
    }

    fn build(
        configs: &[BackendConfig],
        kind: SchedulerKind,
        previous: Option<&BackendPool>,
        passive_cooldown: Duration,
    ) -> Self {
        let mut backends: Vec<Arc<Backend>> = Vec::with_capacity(configs.len());
        for config in configs {
            let state = previous
                .into_iter()
                .flat_map(|pool| pool.backends.iter())
                .chain(backends.iter())
                .find(|backend| *backend.address == *config.address)
                .map_or_else(
                    || Arc::new(State::new(Arc::from(config.address.as_str()))),
                    |backend| Arc::clone(&backend.state),
                );
            backends.push(Arc::new(Backend {
                address: Arc::clone(&state.connections.address),
                weight: config.weight,
                listener: Arc::from(""),
                state,
            }));
        }
        let scheduler = match kind {
            SchedulerKind::RoundRobin => Scheduler::RoundRobin,
            SchedulerKind::WeightedRoundRobin => {
                Scheduler::SmoothWeighted(Mutex::new(vec![0; backends.len()]))
            }
            SchedulerKind::WeightedLeastConnections => Scheduler::WeightedLeastConnections,
        };
        BackendPool {
            backends,
            scheduler,
            next: AtomicUsize::new(0),
            passive_cooldown,
            active_checks: AtomicUsize::new(0),
            health_events: watch::Sender::new(0),
            listener: Arc::from(""),
            unavailable_logged: LogBudget::new(1),
        }
    }

    /// Names the listener this pool serves in its log lines.
    #[must_use]
    pub fn for_listener(mut self, name: &str) -> Self {
        self.listener = Arc::from(name);
        for backend in &mut self.backends {
            *backend = Arc::new(Backend {
                address: Arc::clone(&backend.address),
                weight: backend.weight,
                listener: Arc::clone(&self.listener),
                state: Arc::clone(&backend.state),
            });
        }
        self
    }

    /// Picks a backend for one request, skipping the indices in `exclude`
    /// (to retry a connect failure on another backend).
    ///
    /// `None` when no backend is eligible: all unhealthy, weight 0 or
    /// excluded.
    pub fn pick(&self, exclude: &[usize]) -> Option<Lease> {
        let index = match &self.scheduler {
            Scheduler::RoundRobin => self.pick_round_robin(exclude),
            Scheduler::SmoothWeighted(current) => self.pick_smooth_weighted(current, exclude),
            Scheduler::WeightedLeastConnections => self.pick_least_connections(exclude),
        }
        .or_else(|| self.last_resort(exclude))?;
        let backend = self.backends.get(index)?;
        backend.state.in_flight.fetch_add(1, Ordering::Relaxed);
        Some(Lease {
            backend: Arc::clone(backend),
            index,
        })
    }

    /// With every backend out of rotation by the passive check alone (no
    /// active checks to say otherwise), a request's first attempt still
    /// tries the one out the longest, as NGINX does: a single backend that
    /// restarted would otherwise get 503s for the whole cooldown. If it
    /// answers, it is back ([`BackendPool::answered`]); if not, the request
    /// gets its 503 after one more refused connect.
    fn last_resort(&self, exclude: &[usize]) -> Option<usize> {
        if !exclude.is_empty() || self.active_checks.load(Ordering::Relaxed) > 0 {
            return None;
        }
        self.backends
            .iter()
            .enumerate()
            .filter(|(_, backend)| backend.weight > 0)
            .min_by_key(|(_, backend)| backend.state.down_since_ms.load(Ordering::Relaxed))
            .map(|(index, _)| index)
    }

    /// A backend answered a request: one the passive check took out is
    /// back at once (a response is better evidence than a timer).
    pub(crate) fn answered(&self, backend: &Backend) {
        if !backend.state.healthy.load(Ordering::Relaxed)
            && self.active_checks.load(Ordering::Relaxed) == 0
        {
            self.bring_back(backend, &"it answered a request");
        }
    }

    /// Logs that a request is answered 503 because no backend is in
    /// rotation, at most once per [`LogBudget::WINDOW`] seconds (the 5xx
    /// count in the metrics has every one). Without it, the only trace of
    /// an outage would be the health-check lines from when each backend
    /// went out, possibly long before.
    pub(crate) fn log_unavailable(&self) {
        if self.unavailable_logged.take_now() != Budget::Log {
            return;
        }
        let out: Vec<&str> = self
            .backends
            .iter()
            .filter(|backend| backend.weight > 0)
            .map(|backend| &*backend.address)
            .collect();
        if out.is_empty() {
            tracing::warn!(listener = %self.listener, "requests get 503: no backend of this listener has a weight above 0 (logged at most every 10 s)");
        } else {
            tracing::warn!(listener = %self.listener, backends = ?out, "requests get 503: no backend is in rotation; the health lines above say why each went out, and a backend is back once it passes its checks (logged at most every 10 s)");
        }
    }

    /// Is at least one backend healthy with weight above 0? When not, the
    /// proxy answers 503 at once instead of trying (R11).
    pub fn any_eligible(&self) -> bool {
        self.backends
            .iter()
            .any(|backend| backend.weight > 0 && self.is_up(backend))
    }

    /// Passive health check: a connection refused during real traffic takes
    /// the backend out at once, not only after the active check's thresholds.
    ///
    /// With active checks it comes back after `healthy_threshold`
    /// consecutive successful checks; without, after the passive cooldown
    /// (10 s). Unknown indices are ignored.
    /// Returns whether this failure took the backend out (the first of a
    /// burst: requests in flight to it fail together).
    pub fn mark_connect_failure(&self, index: usize) -> bool {
        let Some(backend) = self.backends.get(index) else {
            return false;
        };
        // The active check must see a full `healthy_threshold` run of
        // successes after this, not finish one that started before.
        backend.state.successes.store(0, Ordering::Relaxed);
        self.take_out(backend, &"connect refused")
    }

    /// All backends, in configuration order (a [`Lease::index`] indexes this).
    pub fn backends(&self) -> &[Arc<Backend>] {
        &self.backends
    }

    /// Watches health transitions: the value counts every transition of any
    /// backend of this pool (in or out of rotation), so a caller can await
    /// `changed()` instead of polling.
    pub fn subscribe_health(&self) -> watch::Receiver<u64> {
        self.health_events.subscribe()
    }

    /// Takes a backend out of rotation; logs and notifies only on the
    /// transition. Returns whether this call made the transition.
    pub(crate) fn take_out(&self, backend: &Backend, reason: &dyn fmt::Display) -> bool {
        // The timestamp is written before the flag (release) so that a pick
        // that sees the backend down (acquire) never judges the cooldown by
        // an older timestamp and puts it straight back.
        backend
            .state
            .down_since_ms
            .store(now_ms(), Ordering::Relaxed);
        let was_healthy = backend.state.healthy.swap(false, Ordering::AcqRel);
        if was_healthy {
            tracing::warn!(
                listener = %self.listener,
                backend = %backend.address,
                reason = %reason,
                "backend taken out of rotation"
            );
            self.notify_health();
        }
        was_healthy
    }

    /// Puts a backend back in rotation; logs and notifies only on the
    /// transition. Returns whether this call made the transition.
    pub(crate) fn bring_back(&self, backend: &Backend, reason: &dyn fmt::Display) -> bool {
        let was_healthy = backend.state.healthy.swap(true, Ordering::AcqRel);
        if !was_healthy {
            backend.state.failures.store(0, Ordering::Relaxed);
            tracing::info!(
                listener = %self.listener,
                backend = %backend.address,
                reason = %reason,
                "backend back in rotation"
            );
            self.notify_health();
        }
        !was_healthy
    }

    /// Registers an active health check task on this pool until the returned
    /// guard is dropped (which happens when the task is aborted).
    pub(crate) fn register_active_checks(self: &Arc<Self>) -> ActiveChecks {
        self.active_checks.fetch_add(1, Ordering::Relaxed);
        ActiveChecks {
            pool: Arc::clone(self),
        }
    }

    fn notify_health(&self) {
        self.health_events
            .send_modify(|transitions| *transitions = transitions.wrapping_add(1));
    }

    /// Is the backend in rotation? Puts a passively ejected backend back
    /// once its cooldown has passed, unless active checks own that decision.
    fn is_up(&self, backend: &Backend) -> bool {
        if backend.state.healthy.load(Ordering::Acquire) {
            return true;
        }
        if self.active_checks.load(Ordering::Relaxed) > 0 {
            return false;
        }
        let down_for = now_ms().saturating_sub(backend.state.down_since_ms.load(Ordering::Relaxed));
        if u128::from(down_for) < self.passive_cooldown.as_millis() {
            return false;
        }
        self.bring_back(backend, &"passive cooldown elapsed");
        true
    }

    fn eligible(&self, index: usize, backend: &Backend, exclude: &[usize]) -> bool {
        backend.weight > 0 && !exclude.contains(&index) && self.is_up(backend)
    }

    fn eligible_indices<'a>(&'a self, exclude: &'a [usize]) -> impl Iterator<Item = usize> + 'a {
        self.backends
            .iter()
            .enumerate()
            .filter(move |(index, backend)| self.eligible(*index, backend, exclude))
            .map(|(index, _)| index)
    }

    /// The k-th eligible backend, k taken from a shared counter: one atomic
    /// increment per pick, and fair over the eligible set even when
    /// ineligible backends sit between them (a plain `counter % len` would
    /// hand an unhealthy backend's turns to its neighbour).
    fn pick_round_robin(&self, exclude: &[usize]) -> Option<usize> {
        let eligible = self.eligible_indices(exclude).count();
        if eligible == 0 {
            return None;
        }
        let nth = self.next.fetch_add(1, Ordering::Relaxed) % eligible;
        // Another thread may change the eligible set between the two passes;
        // then any eligible backend is better than failing the request.
        let mut fallback = None;
        for (position, index) in self.eligible_indices(exclude).enumerate() {
            if position == nth {
                return Some(index);
            }
            fallback = Some(index);
        }
        fallback
    }

    /// nginx's smooth weighted round robin: every eligible backend gains its
    /// weight, the highest is picked and loses the total. Weights 1:2 give
    /// B A B, never A's turns bunched together.
    fn pick_smooth_weighted(&self, current: &Mutex<Vec<i64>>, exclude: &[usize]) -> Option<usize> {
        // Nothing in this critical section can panic, so a poisoned lock
        // still holds consistent numbers.
        let mut current = current.lock().unwrap_or_else(PoisonError::into_inner);
        let mut total = 0i64;
        let mut best: Option<(usize, i64)> = None;
        for (index, backend) in self.backends.iter().enumerate() {
            if !self.eligible(index, backend, exclude) {
                continue;
            }
            let Some(value) = current.get_mut(index) else {
                continue;
            };
            let weight = i64::from(backend.weight);
            *value += weight;
            total += weight;
            if best.is_none_or(|(_, best_value)| *value > best_value) {
                best = Some((index, *value));
            }
        }
        let (index, _) = best?;
        if let Some(value) = current.get_mut(index) {
            *value -= total;
        }
        Some(index)
    }

    /// Weighted least connections: the lowest in_flight / weight, compared
    /// cross-multiplied (no floats); ties rotate so idle backends alternate.
    fn pick_least_connections(&self, exclude: &[usize]) -> Option<usize> {
        let load = |backend: &Backend| {
            (
                u128::try_from(backend.in_flight()).unwrap_or(u128::MAX),
                u128::from(backend.weight),
            )
        };
        // a/b < c/d  <=>  a*d < c*b, for positive weights b and d.
        let lower =
            |(a, b): (u128, u128), (c, d): (u128, u128)| a.saturating_mul(d) < c.saturating_mul(b);
        let same =
            |(a, b): (u128, u128), (c, d): (u128, u128)| a.saturating_mul(d) == c.saturating_mul(b);

        // Pass 1: the lowest load, and how many backends share it.
        let mut best: Option<(usize, (u128, u128))> = None;
        let mut ties = 0usize;
        for index in self.eligible_indices(exclude) {
            let Some(backend) = self.backends.get(index) else {
                continue;
            };
            let this = load(backend);
            match best {
                Some((_, lowest)) if same(this, lowest) => ties += 1,
                Some((_, lowest)) if !lower(this, lowest) => {}
                _ => {
                    best = Some((index, this));
                    ties = 1;
                }
            }
        }
        let (first, lowest) = best?;
        if ties == 1 {
            return Some(first);
        }
        // Pass 2: the k-th of the tied backends. Loads move under other
        // threads' picks; if the tie is gone, the first lowest one will do.
        let nth = self.next.fetch_add(1, Ordering::Relaxed) % ties;
        let mut position = 0;
        for index in self.eligible_indices(exclude) {
            let Some(backend) = self.backends.get(index) else {
                continue;
            };
            if same(load(backend), lowest) {
                if position == nth {
                    return Some(index);
                }
                position += 1;
            }
        }
        Some(first)
    }
}

/// Marks active health checks as running on a pool while alive; see
/// [`BackendPool::register_active_checks`].
#[derive(Debug)]
pub(crate) struct ActiveChecks {
    pool: Arc<BackendPool>,
}

impl Drop for ActiveChecks {
    fn drop(&mut self) {
        self.pool.active_checks.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Milliseconds on a process-wide monotonic clock. Shared by all pools
/// because the timestamps live in state that outlives a pool on reload.
fn now_ms() -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    u64::try_from(EPOCH.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn configs(weights: &[u8]) -> Vec<BackendConfig> {
        weights
            .iter()
            .enumerate()
            .map(|(i, &weight)| BackendConfig {
                address: format!("10.0.0.{}:80", i + 1),
                weight,
            })
            .collect()
    }

    fn pick_index(pool: &BackendPool) -> Option<usize> {
        pool.pick(&[]).map(|lease| lease.index())
    }

    #[test]
    fn passive_ejection_lasts_the_cooldown_then_backend_returns() {
        let cooldown = Duration::from_millis(100);
        let pool = BackendPool::build(
            &configs(&[100, 100]),
            SchedulerKind::RoundRobin,
            None,
            cooldown,
        );
        let events = pool.subscribe_health();
        pool.mark_connect_failure(0);
        assert!(!pool.backends()[0].is_healthy());
        assert_eq!(*events.borrow(), 1);
        let ejected = Instant::now();

        // Until the cooldown has passed, only the other backend is picked.
        while ejected.elapsed() < cooldown - Duration::from_millis(20) {
            assert_eq!(pick_index(&pool), Some(1));
        }

        // A test has nothing to await here: the cooldown is a timestamp
        // checked by `pick`, not an event, so it waits it out.
        std::thread::sleep(cooldown);
        let picks: Vec<_> = (0..4).filter_map(|_| pick_index(&pool)).collect();
        assert!(picks.contains(&0), "{picks:?}");
        assert!(pool.backends()[0].is_healthy());
        assert_eq!(*events.borrow(), 2, "one transition out, one back in");
    }

    #[test]
    fn a_second_refusal_while_out_does_not_log_again() {
        let pool = BackendPool::new(&configs(&[100]), SchedulerKind::RoundRobin, None);
        let events = pool.subscribe_health();
        assert!(pool.mark_connect_failure(0), "the first takes it out");
        assert!(!pool.mark_connect_failure(0));
        assert!(!pool.mark_connect_failure(7));
        assert_eq!(*events.borrow(), 1);
        assert!(!pool.any_eligible());
        // No retry of a refused backend within one request.
        assert!(pool.pick(&[0]).is_none());
    }

    #[test]
    fn with_all_out_passively_a_first_attempt_tries_the_one_out_longest() {
        let pool = BackendPool::new(&configs(&[100, 100, 0]), SchedulerKind::RoundRobin, None);
        pool.mark_connect_failure(1);
        // down_since is in milliseconds: let the two ejections differ.
        std::thread::sleep(Duration::from_millis(3));
        pool.mark_connect_failure(0);
        assert!(!pool.any_eligible());
        let lease = pool.pick(&[]).expect("a last resort");
        assert_eq!(lease.index(), 1, "out the longest (weight 0 never)");
        // Within the same request, nothing else is tried: 503.
        assert!(pool.pick(&[1]).is_none());

        // It answered: back at once, not at the end of the cooldown.
        pool.answered(lease.backend());
        assert!(pool.backends()[1].is_healthy());
        assert_eq!(pick_index(&pool), Some(1));
    }

    #[tokio::test]
    async fn no_cooldown_while_active_checks_run() {
        let pool = Arc::new(BackendPool::build(
            &configs(&[100]),
            SchedulerKind::RoundRobin,
            None,
            Duration::ZERO,
        ));
        let registration = pool.register_active_checks();
        pool.mark_connect_failure(0);
        assert!(
            pool.pick(&[]).is_none(),
            "active checks decide when it returns: no last resort"
        );
        pool.answered(&pool.backends()[0]);
        assert!(!pool.backends()[0].is_healthy(), "nor does an answer");
        assert!(!pool.any_eligible());

        // Once the checks stop (task aborted), the passive cooldown applies again.
        drop(registration);
        assert!(pool.any_eligible());
        assert_eq!(pick_index(&pool), Some(0));
    }

    #[test]
    fn check_counters_reset_each_other() {
        let pool = BackendPool::new(&configs(&[100]), SchedulerKind::RoundRobin, None);
        let backend = &pool.backends()[0];
        assert_eq!(backend.record_success(), 1);
        assert_eq!(backend.record_success(), 2);
        assert_eq!(backend.record_failure(), 1);
        assert_eq!(backend.record_success(), 1);
        pool.mark_connect_failure(0);
        assert_eq!(
            backend.record_success(),
            1,
            "passive ejection restarts the run"
        );
    }
}
