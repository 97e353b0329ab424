//! Actions that run the application's own code: replaying dead letters
//! through the handler that gave up on them, and rebuilding projections.
//!
//! A generic process (the `orchestrix` command with only a store URL) cannot
//! run a user's handlers; an application binary, or its worker, builds an
//! [`Operations`] with [`Operations::application`] and gets these actions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use std::future::Future;

use orchestrix::dead_letter::DeadLetterQueue;
use orchestrix::runtime::{EventHandler, ProjectionRunner, RegistrationKind, Runtime};
use orchestrix::{Application, Store};
use serde::Serialize;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::inspect::{DeadLetterFilter, Inspector};

/// Progress of a long operation, reported to a callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Progress {
    /// Done so far (events, or letters).
    pub done: u64,
    /// Total to do.
    pub total: u64,
}

/// The outcome of replaying one dead letter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayOutcome {
    /// The letter.
    pub id: Uuid,
    /// Its consumer.
    pub consumer: String,
    /// `replayed` (handled and deleted), `failed` (kept), or `would replay`
    /// (dry run).
    pub outcome: String,
    /// The handler's error, when it failed again.
    pub error: Option<String>,
}

/// What a projection rebuild did.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RebuildReport {
    /// The projection that serves now.
    pub projection: String,
    /// The version it replaced, for a rebuild into a new version.
    pub replaced: Option<String>,
    /// The head position the rebuild caught up with.
    pub head: u64,
    /// Wall time, in milliseconds.
    pub millis: u64,
}

/// Builds new versions of projections for `projections rebuild --into`.
pub type VersionFactory =
    Arc<dyn Fn(&str, &str) -> Option<Arc<dyn orchestrix::runtime::Projection>> + Send + Sync>;

/// Inspection plus the actions that need the application.
#[derive(Clone)]
pub struct Operations {
    inspector: Inspector,
    app: Option<Application>,
    versions: Option<VersionFactory>,
}

impl std::fmt::Debug for Operations {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Operations")
            .field("inspector", &self.inspector)
            .field("application", &self.app.is_some())
            .finish_non_exhaustive()
    }
}

impl Operations {
    /// Operations on a store, without an application: inspection, deleting
    /// dead letters, and dry runs.
    #[must_use]
    pub fn new(store: Store) -> Self {
        Self {
            inspector: Inspector::new(store),
            app: None,
            versions: None,
        }
    }

    /// Operations on an application's store, with its handlers and
    /// projections.
    #[must_use]
    pub fn application(app: Application) -> Self {
        Self {
            inspector: Inspector::new(app.store().clone()),
            app: Some(app),
            versions: None,
        }
    }

    /// How `rebuild --into VERSION` gets the new version of a projection:
    /// `factory(name, version)`, `None` for an unknown one.
    #[must_use]
    pub fn versions(mut self, factory: VersionFactory) -> Self {
        self.versions = Some(factory);
        self
    }

    /// Dead letters from `queue` (a bus's dead-letter topic or stream)
    /// instead of the store's: listing, showing, deleting and replaying.
    #[must_use]
    pub fn with_dead_letters(mut self, queue: Arc<dyn DeadLetterQueue>) -> Self {
        self.inspector = self.inspector.with_dead_letters(queue);
        self
    }

    /// The read-only queries.
    #[must_use]
    pub fn inspector(&self) -> &Inspector {
        &self.inspector
    }

    /// The application, when there is one.
    #[must_use]
    pub fn app(&self) -> Option<&Application> {
        self.app.as_ref()
    }

    /// The names of the application's (at-least-once) projections, empty
    /// without an application.
    #[must_use]
    pub fn projection_names(&self) -> Vec<String> {
        let Some(app) = &self.app else {
            return Vec::new();
        };
        Runtime::handlers(app)
            .map(|hs| {
                hs.iter()
                    .filter(|h| h.kind() == RegistrationKind::Projection)
                    .map(|h| h.name().to_owned())
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The names of every consumer with a checkpoint (projections and
    /// handlers, sagas included) of the application.
    #[must_use]
    pub fn consumer_names(&self) -> Vec<String> {
        let Some(app) = &self.app else {
            return Vec::new();
        };
        let mut names = self.projection_names();
        if let Ok(handlers) = Runtime::handlers(app) {
            for h in handlers {
                if !names.iter().any(|n| n == h.name()) {
                    names.push(h.name().to_owned());
                }
            }
        }
        names
    }

    fn handler(&self, consumer: &str) -> Result<Arc<dyn EventHandler>> {
        let app = self.app.as_ref().ok_or_else(|| {
            Error::NeedsApplication(format!(
                "replaying needs the handler of `{consumer}`: run it from the application's \
                 own binary or worker console (orchestrix_ops::Operations::application)"
            ))
        })?;
        Runtime::handlers(app)?
            .into_iter()
            .find(|h| h.name() == consumer)
            .map(|h| h.handler())
            .ok_or_else(|| {
                Error::NotFound(format!("a handler named `{consumer}` in the application"))
            })
    }

    /// Replays the letters that pass `filter` (or just `ids`, when given)
    /// through their consumers' handlers, each once; each success resolves
    /// (deletes) its letter, in the store or on the bus alike.
    /// With `dry_run`, only says what it would replay.
    ///
    /// # Errors
    /// [`Error::NotFound`] for an unknown id, [`Error::NeedsApplication`]
    /// without an application (unless `dry_run`), a store error. A handler
    /// failing again is an outcome, not an error.
    pub async fn replay(
        &self,
        ids: &[Uuid],
        filter: &DeadLetterFilter,
        dry_run: bool,
        mut progress: impl FnMut(Progress),
    ) -> Result<Vec<ReplayOutcome>> {
        let letters = if ids.is_empty() {
            self.inspector.dead_letters(filter).await?
        } else {
            let mut out = Vec::new();
            for id in ids {
                out.push(
                    self.inspector
                        .dead_letter(*id)
                        .await?
                        .ok_or_else(|| Error::NotFound(format!("dead letter {id}")))?,
                );
            }
            out
        };
        let total = u64::try_from(letters.len()).unwrap_or(u64::MAX);
        let queue = self.inspector.dead_letter_queue().clone();
        let mut outcomes = Vec::with_capacity(letters.len());
        for (i, letter) in letters.into_iter().enumerate() {
            let outcome = if dry_run {
                ReplayOutcome {
                    id: letter.id,
                    consumer: letter.consumer.clone(),
                    outcome: "would replay".to_owned(),
                    error: None,
                }
            } else {
                let handler = self.handler(&letter.consumer)?;
                match orchestrix::dead_letter::replay(queue.as_ref(), &letter, handler.as_ref())
                    .await
                {
                    Ok(()) => ReplayOutcome {
                        id: letter.id,
                        consumer: letter.consumer.clone(),
                        outcome: "replayed".to_owned(),
                        error: None,
                    },
                    Err(e) => ReplayOutcome {
                        id: letter.id,
                        consumer: letter.consumer.clone(),
                        outcome: "failed".to_owned(),
                        error: Some(e.to_string()),
                    },
                }
            };
            outcomes.push(outcome);
            progress(Progress {
                done: u64::try_from(i + 1).unwrap_or(u64::MAX),
                total,
            });
        }
        Ok(outcomes)
    }

    /// Rebuilds a projection of the application: in place, or, with `into`,
    /// into a new version built by the [`versions`](Self::versions) factory.
    /// With `switch`, the new version replaces the current one once it has
    /// caught up (its checkpoint deleted); without, the new version is only
    /// built (reset and replayed to the head, its checkpoint kept) for
    /// workers deployed with it to take over. `progress` is called about
    /// every `every` with the processed position against the head the rebuild
    /// started from.
    ///
    /// The rebuild runs in this process: stop the projection in the workers
    /// first, or rebuild from the worker's console.
    ///
    /// # Errors
    /// [`Error::NeedsApplication`], [`Error::NotFound`] for an unknown
    /// projection or version, a store or reset error.
    pub async fn rebuild(
        &self,
        name: &str,
        into: Option<&str>,
        switch: bool,
        every: Duration,
        mut progress: impl FnMut(Progress),
    ) -> Result<RebuildReport> {
        let app = self.app.as_ref().ok_or_else(|| {
            Error::NeedsApplication(format!(
                "rebuilding `{name}` needs the projection's code: run it from the \
                 application's own binary or worker console (orchestrix_ops::Operations::application)"
            ))
        })?;
        if !self.projection_names().iter().any(|n| n == name) {
            return Err(Error::NotFound(format!("projection `{name}`")));
        }
        let next = match into {
            None => None,
            Some(version) => {
                let factory = self.versions.as_ref().ok_or_else(|| {
                    Error::NeedsApplication(format!(
                        "`--into {version}` needs the application to build new versions of \
                         `{name}` (Operations::versions)"
                    ))
                })?;
                Some(factory(name, version).ok_or_else(|| {
                    Error::NotFound(format!("version `{version}` of projection `{name}`"))
                })?)
            }
        };
        let started = Instant::now();
        let head = self.inspector.head().await?;
        if let (Some(next), false) = (&next, switch) {
            // Build the new version alone; the current one is untouched.
            let runner = ProjectionRunner::builder(self.inspector.store().clone(), next.clone())
                .start()
                .await?;
            let result = watch(&runner, head, every, &mut progress, runner.rebuild()).await;
            let stopped = runner.shutdown().await;
            result?;
            stopped?;
            progress(Progress {
                done: head,
                total: head,
            });
            return Ok(RebuildReport {
                projection: next.name().to_owned(),
                replaced: None,
                head,
                millis: elapsed_ms(started),
            });
        }
        let runtime = Runtime::start_only(
            app,
            &[
                RegistrationKind::Projection,
                RegistrationKind::TransactionalProjection,
            ],
        )
        .await?;
        let result = async {
            if let Some(runner) = runtime.projection(name) {
                let rebuild = async {
                    match next {
                        Some(next) => runner
                            .rebuild_into(next)
                            .await
                            .map(|old| Some(old.name().to_owned())),
                        None => runner.rebuild().await.map(|()| None),
                    }
                };
                let replaced = watch(runner, head, every, &mut progress, rebuild).await?;
                Ok::<_, Error>((runner.name(), replaced))
            } else if let Some(runner) = runtime.transactional_projection(name) {
                if next.is_some() {
                    return Err(Error::InvalidInput(format!(
                        "`{name}` is a transactional projection: `--into` takes an at-least-once one"
                    )));
                }
                watch(runner, head, every, &mut progress, runner.rebuild()).await?;
                Ok((runner.name(), None))
            } else {
                Err(Error::NotFound(format!("projection `{name}`")))
            }
        }
        .await;
        let stopped = runtime.shutdown().await;
        let (projection, replaced) = result?;
        stopped?;
        progress(Progress {
            done: head,
            total: head,
        });
        Ok(RebuildReport {
            projection,
            replaced,
            head,
            millis: elapsed_ms(started),
        })
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Awaits `work`, reporting the runner's processed position every `every`.
async fn watch<P, T>(
    runner: &ProjectionRunner<P>,
    head: u64,
    every: Duration,
    progress: &mut impl FnMut(Progress),
    work: impl Future<Output = orchestrix::Result<T>>,
) -> Result<T>
where
    P: ?Sized + Send + Sync + 'static,
{
    let mut tick = tokio::time::interval(every);
    tokio::pin!(work);
    loop {
        tokio::select! {
            r = &mut work => return Ok(r?),
            _ = tick.tick() => progress(Progress {
                done: runner.processed_position().min(head),
                total: head,
            }),
        }
    }
}
