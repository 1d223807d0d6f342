//! What a listener's connections read per request: its current config and
//! backend pool, swapped as a whole on a config reload.

use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::{BackendPool, ListenerConfig, spawn_health_checks};

/// A listener's current configuration and backends.
#[derive(Debug)]
pub(crate) struct Runtime {
    pub config: ListenerConfig,
    pub pool: Arc<BackendPool>,
    health: Option<JoinHandle<()>>,
}

impl Runtime {
    /// Builds the runtime for `config`, carrying backend state over from
    /// `previous` and (re)starting active health checks.
    pub(crate) fn new(config: ListenerConfig, previous: Option<&Runtime>) -> Runtime {
        let pool = Arc::new(
            BackendPool::new(
                &config.backends,
                config.scheduler,
                previous.map(|p| p.pool.as_ref()),
            )
            .for_listener(&config.name),
        );
        let health = config
            .health_check
            .clone()
            .map(|check| spawn_health_checks(pool.clone(), check));
        Runtime {
            config,
            pool,
            health,
        }
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        // The health checker belongs to this pool; a replaced runtime's stops.
        if let Some(task) = self.health.take() {
            task.abort();
        }
    }
}
