//! Per-instance locks: one trigger at a time per saga instance in a process.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::{Mutex as AsyncMutex, OwnedMutexGuard};

/// Async locks keyed by correlation id; entries are dropped when unused.
#[derive(Debug, Default)]
pub(crate) struct InstanceLocks {
    map: Arc<Mutex<HashMap<String, Arc<AsyncMutex<()>>>>>,
}

/// Holds one instance's lock.
#[derive(Debug)]
pub(crate) struct InstanceGuard {
    map: Arc<Mutex<HashMap<String, Arc<AsyncMutex<()>>>>>,
    key: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl InstanceLocks {
    pub(crate) async fn lock(&self, key: &str) -> InstanceGuard {
        let mutex = {
            let mut map = self
                .map
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            map.entry(key.to_owned()).or_default().clone()
        };
        let guard = mutex.lock_owned().await;
        InstanceGuard {
            map: self.map.clone(),
            key: key.to_owned(),
            guard: Some(guard),
        }
    }
}

impl Drop for InstanceGuard {
    fn drop(&mut self) {
        let mut map = self
            .map
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        self.guard = None;
        // Only the map holds it now: nobody waits, so forget it.
        if map
            .get(&self.key)
            .is_some_and(|m| Arc::strong_count(m) == 1)
        {
            map.remove(&self.key);
        }
    }
}
