//! The shop as a module and as a running service.

use std::time::Duration;

use orchestrix::runtime::ConsumerConfig;
use orchestrix::saga::{SagaConfig, SagaEngine};
use orchestrix::{Application, ApplicationBuilder, Error, Module, Result, Store};
use orchestrix_backends::{AppRuntime, BusOptions};

use crate::domain::{Inventory, Order, Payment};
use crate::saga::OrderSaga;

/// Registers orders, payments, inventory and the order saga (its engine is
/// `app.saga::<OrderSaga>()` once built).
#[derive(Debug, Clone, Default)]
pub struct ShopModule {
    saga_config: SagaConfig,
    consumer: ConsumerConfig,
}

impl ShopModule {
    /// A module with these saga and consumer settings.
    #[must_use]
    pub fn new(saga_config: SagaConfig, consumer: ConsumerConfig) -> Self {
        Self {
            saga_config,
            consumer,
        }
    }
}

impl Module for ShopModule {
    fn name(&self) -> &str {
        "shop"
    }

    fn register(&self, app: ApplicationBuilder) -> ApplicationBuilder {
        app.aggregate::<Order>()
            .aggregate::<Payment>()
            .aggregate::<Inventory>()
            .saga_with(OrderSaga, self.saga_config.clone(), self.consumer.clone())
    }
}

/// A running shop.
#[derive(Debug)]
pub struct Shop {
    app: Application,
    orders: SagaEngine<OrderSaga>,
    runtime: Option<AppRuntime>,
}

impl Shop {
    /// Builds the application on `store` and starts its runtime.
    ///
    /// # Errors
    /// A registration or start error.
    pub async fn start(store: Store, module: ShopModule) -> Result<Self> {
        Self::start_on(store, module, None).await
    }

    /// Builds the application on `store` and runs the saga from `bus`
    /// (`nats://...`: relay, consumer and timers in this process); without a
    /// bus (or `memory://`), on the embedded runtime.
    ///
    /// # Errors
    /// A registration, connection or start error.
    pub async fn start_on(store: Store, module: ShopModule, bus: Option<&str>) -> Result<Self> {
        let app = Application::builder(store).module(module).build()?;
        let orders = app.saga::<OrderSaga>()?;
        let runtime = orchestrix_backends::start_runtime(&app, bus, BusOptions::default()).await?;
        Ok(Self {
            app,
            orders,
            runtime: Some(runtime),
        })
    }

    /// The application.
    #[must_use]
    pub fn app(&self) -> &Application {
        &self.app
    }

    /// The order saga's engine.
    #[must_use]
    pub fn orders(&self) -> &SagaEngine<OrderSaga> {
        &self.orders
    }

    /// Waits until every consumer has handled every event, including those
    /// the saga's commands appended (at most 30 s).
    ///
    /// # Errors
    /// [`Error::Timeout`], or a consumer that stopped.
    pub async fn settle(&self) -> Result<()> {
        let Some(runtime) = &self.runtime else {
            return Err(Error::Shutdown {
                component: "shop runtime",
            });
        };
        let limit = Duration::from_secs(30);
        let work = async {
            loop {
                let head = runtime.catch_up().await?;
                if self.app.store().head_position().await? == head {
                    return Ok(());
                }
            }
        };
        tokio::time::timeout(limit, work)
            .await
            .map_err(|_| Error::Timeout {
                operation: "settling the shop's consumers".into(),
                after: limit,
            })?
    }

    /// Stops the runtime gracefully.
    ///
    /// # Errors
    /// A consumer's or task's shutdown error.
    pub async fn shutdown(mut self) -> Result<()> {
        match self.runtime.take() {
            Some(runtime) => runtime.shutdown().await,
            None => Ok(()),
        }
    }
}
