//! Sagas on the runtime: a consumer for the events, a task for the timeouts.

use std::sync::Arc;

use async_trait::async_trait;

use super::Saga;
use super::engine::{SagaConfig, SagaEngine};
use crate::app::Application;
use crate::error::Result;
use crate::runtime::{BackgroundTask, ConsumerConfig, EventHandler, Registrations, Shutdown};
use crate::store::Store;

/// Adds a saga's consumer and timer task to `registrations` (see
/// [`ApplicationBuilder::saga`](crate::ApplicationBuilder::saga)) and returns
/// its engine, bound to the application at start.
pub(crate) fn register<S: Saga>(
    registrations: &mut Registrations,
    store: &Store,
    saga: S,
    config: SagaConfig,
    consumer: ConsumerConfig,
) -> Result<SagaEngine<S>> {
    let engine = SagaEngine::unbound(saga, store.clone(), config)?;
    let name = format!("saga-{}-timers", S::NAME);
    registrations.add_task(Arc::new(TimerTask {
        name,
        engine: engine.clone(),
    }))?;
    let handler = engine.clone();
    registrations.add_handler_with(
        consumer,
        Arc::new(move |app: &Application| {
            handler.bind(app);
            Ok(Arc::new(handler.clone()) as Arc<dyn EventHandler>)
        }),
    );
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
