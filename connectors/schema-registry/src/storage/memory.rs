use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use orchestrix_avro::compat::CompatibilityLevel;

use super::{RegistryStorage, StoredVersion};
use crate::error::{RegistryError, Result};

/// In-memory storage, for tests and single-process tools.
#[derive(Debug, Default)]
pub struct MemoryStorage {
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    schemas: Vec<String>,
    ids: HashMap<String, u32>,
    subjects: BTreeMap<String, Vec<StoredVersion>>,
    config: HashMap<Option<String>, CompatibilityLevel>,
}

impl MemoryStorage {
    /// Empty storage.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, State>> {
        self.state
            .lock()
            .map_err(|_| RegistryError::storage("memory registry lock poisoned"))
    }
}

#[async_trait]
impl RegistryStorage for MemoryStorage {
    async fn schema(&self, id: u32) -> Result<Option<String>> {
        let state = self.lock()?;
        Ok(id
            .checked_sub(1)
            .and_then(|i| state.schemas.get(i as usize))
            .cloned())
    }

    async fn subjects(&self) -> Result<Vec<String>> {
        Ok(self
            .lock()?
            .subjects
            .iter()
            .filter(|(_, v)| !v.is_empty())
            .map(|(s, _)| s.clone())
            .collect())
    }

    async fn versions(&self, subject: &str) -> Result<Vec<StoredVersion>> {
        Ok(self
            .lock()?
            .subjects
            .get(subject)
            .cloned()
            .unwrap_or_default())
    }

    async fn append_version(
        &self,
        subject: &str,
        expected_latest: Option<u32>,
        schema: &str,
        normalized: &str,
    ) -> Result<(u32, u32)> {
        let mut state = self.lock()?;
        let latest = state
            .subjects
            .get(subject)
            .and_then(|v| v.last())
            .map(|v| v.version);
        if latest != expected_latest {
            return Err(RegistryError::Conflict(subject.to_owned()));
        }
        let id = match state.ids.get(normalized) {
            Some(id) => *id,
            None => {
                state.schemas.push(schema.to_owned());
                let id = u32::try_from(state.schemas.len()).map_err(RegistryError::storage)?;
                state.ids.insert(normalized.to_owned(), id);
                id
            }
        };
        let version = latest.unwrap_or(0) + 1;
        state
            .subjects
            .entry(subject.to_owned())
            .or_default()
            .push(StoredVersion {
                version,
                id,
                schema: schema.to_owned(),
            });
        Ok((id, version))
    }

    async fn config(&self, subject: Option<&str>) -> Result<Option<CompatibilityLevel>> {
        Ok(self
            .lock()?
            .config
            .get(&subject.map(str::to_owned))
            .copied())
    }

    async fn set_config(&self, subject: Option<&str>, level: CompatibilityLevel) -> Result<()> {
        self.lock()?
            .config
            .insert(subject.map(str::to_owned), level);
        Ok(())
    }

    async fn delete_subject(&self, subject: &str) -> Result<Vec<u32>> {
        let mut state = self.lock()?;
        Ok(state
            .subjects
            .remove(subject)
            .unwrap_or_default()
            .into_iter()
            .map(|v| v.version)
            .collect())
    }
}
