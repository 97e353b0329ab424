//! Sagas on the runtime: a consumer for the events, a task for the timeouts.

use std::sync::Arc;

use async_trait::async_trait;

use super::Saga;
use super::engine::{SagaConfig, SagaEngine};
use crate::app::{Application, ApplicationBuilder};
use crate::error::Result;
use crate::runtime::{self, BackgroundTask, ConsumerConfig, EventHandler, Shutdown};

/// Registers a saga with the runtime of an application being built (usually
/// in [`Module::register`](crate::Module::register)), and returns its engine
/// for status queries.
///
/// At [`Runtime::start`](crate::runtime::Runtime::start) the engine is bound to
/// the application, a consumer named `saga-{NAME}` feeds it the events of
/// [`Saga::filter`] under `consumer` (partitions, retries, dead letters), and a
/// background task `saga-{NAME}-timers` finishes interrupted compensations and
/// fires due timeouts every [`SagaConfig::timer_interval`] until shutdown.
///
/// # Errors
/// [`crate::Error::InvalidInput`] when [`Saga::NAME`] is not valid or a task of
/// the same name is registered.
pub fn register<S: Saga>(
    builder: &mut ApplicationBuilder,
    saga: S,
    config: SagaConfig,
    consumer: ConsumerConfig,
) -> Result<SagaEngine<S>> {
    let engine = SagaEngine::unbound(saga, builder.store().clone(), config)?;
    let handler = engine.clone();
    runtime::register_handler_with(builder, consumer, move |app: &Application| {
        handler.bind(app);
        Ok(Arc::new(handler.clone()) as Arc<dyn EventHandler>)
    })?;
    let name = format!("saga-{}-timers", S::NAME);
    runtime::register_task(
        builder,
        Arc::new(TimerTask {
            name,
            engine: engine.clone(),
        }),
    )?;
    Ok(engine)
}

/// The timer loop of a saga as a runtime background task.
#[derive(Debug)]
struct TimerTask<S: Saga> {
    name: String,
    engine: SagaEngine<S>,
}

/// Unbinds the engine when the task ends or is aborted, so that the
/// application (which holds the engine) is not kept alive by it.
struct Unbind<'a, S: Saga>(&'a SagaEngine<S>);

impl<S: Saga> Drop for Unbind<'_, S> {
    fn drop(&mut self) {
        self.0.unbind();
    }
}

#[async_trait]
impl<S: Saga> BackgroundTask for TimerTask<S> {
    fn name(&self) -> &str {
        &self.name
    }

    async fn run(&self, app: Application, shutdown: Shutdown) -> Result<()> {
        self.engine.bind(&app);
        let _unbind = Unbind(&self.engine);
        tokio::select! {
            () = self.engine.run_timers() => {}
            () = shutdown.triggered() => {}
        }
        Ok(())
    }
}
