//! The bank as a module and as a running service.

use std::time::Duration;

use orchestrix::runtime::ConsumerConfig;
use orchestrix::saga::{SagaConfig, SagaEngine, SagaStatus};
use orchestrix::{
    Application, ApplicationBuilder, CommandOutcome, Error, Module, ReadModel, Result, Store,
};
use orchestrix_backends::{AppRuntime, BusOptions};

use crate::account::{Account, AccountCommand, Cents};
use crate::balances::Balances;
use crate::saga::TransferSaga;
use crate::transfer::{Transfer, TransferCommand};

/// Registers accounts, transfers, the transfer saga and the balances
/// projection. After [`build`](ApplicationBuilder::build), the saga's engine
/// is `app.saga::<TransferSaga>()` and the balances are
/// `app.read_model::<Balances>()`.
#[derive(Debug, Clone, Default)]
pub struct BankModule {
    saga: TransferSaga,
    saga_config: SagaConfig,
    consumer: ConsumerConfig,
}

impl BankModule {
    /// A module with these saga and consumer settings.
    #[must_use]
    pub fn new(saga: TransferSaga, saga_config: SagaConfig, consumer: ConsumerConfig) -> Self {
        Self {
            saga,
            saga_config,
            consumer,
        }
    }
}

impl Module for BankModule {
    fn name(&self) -> &str {
        "bank"
    }

    fn register(&self, app: ApplicationBuilder) -> ApplicationBuilder {
        app.aggregate::<Account>()
            .aggregate::<Transfer>()
            .projection_with(Balances, self.consumer.clone())
            .saga_with(
                self.saga.clone(),
                self.saga_config.clone(),
                self.consumer.clone(),
            )
    }
}

/// Settings of a [`Bank`].
#[derive(Debug, Clone, Default)]
pub struct BankOptions {
    /// The transfer saga (its deadline).
    pub saga: TransferSaga,
    /// The saga engine (clock, timer interval).
    pub saga_config: SagaConfig,
    /// The consumers of the saga and the projection.
    pub consumer: ConsumerConfig,
    /// A bus (`nats://...`) to relay the events to and run the saga and the
    /// projection from; none (or `memory://`): the embedded runtime on the
    /// store.
    pub bus: Option<String>,
}

/// A running bank: the application, its runtime, the saga and the read model.
#[derive(Debug)]
pub struct Bank {
    app: Application,
    transfers: SagaEngine<TransferSaga>,
    balances: ReadModel<Balances>,
    runtime: Option<AppRuntime>,
}

impl Bank {
    /// Builds the application on `store` and starts its runtime: embedded,
    /// or on [`BankOptions::bus`] (relay, consumers and saga timers, all in
    /// this process).
    ///
    /// # Errors
    /// A registration or start error.
    pub async fn start(store: Store, options: BankOptions) -> Result<Self> {
        let module = BankModule::new(options.saga, options.saga_config, options.consumer);
        let app = Application::builder(store).module(module).build()?;
        let transfers = app.saga::<TransferSaga>()?;
        let balances = app.read_model::<Balances>()?;
        let runtime =
            orchestrix_backends::start_runtime(&app, options.bus.as_deref(), bus_options()).await?;
        Ok(Self {
            app,
            transfers,
            balances,
            runtime: Some(runtime),
        })
    }

    /// The application.
    #[must_use]
    pub fn app(&self) -> &Application {
        &self.app
    }

    /// The transfer saga's engine (status queries).
    #[must_use]
    pub fn transfers(&self) -> &SagaEngine<TransferSaga> {
        &self.transfers
    }

    /// The runtime: embedded or on a bus.
    #[must_use]
    pub fn runtime(&self) -> Option<&AppRuntime> {
        self.runtime.as_ref()
    }

    /// The balances read model.
    #[must_use]
    pub fn balances(&self) -> &ReadModel<Balances> {
        &self.balances
    }

    /// Executes an account command.
    ///
    /// # Errors
    /// The account's rejection or a store error.
    pub async fn execute(&self, command: AccountCommand) -> Result<CommandOutcome> {
        self.app.execute(command).await
    }

    /// Asks for a transfer and waits until the saga has settled it.
    ///
    /// # Errors
    /// A rejected request, a store error, or a saga that did not settle.
    pub async fn transfer(
        &self,
        transfer: &str,
        from: &str,
        to: &str,
        amount: Cents,
    ) -> Result<SagaStatus> {
        let request = TransferCommand::Request {
            transfer: transfer.to_owned(),
            from: from.to_owned(),
            to: to.to_owned(),
            amount,
        };
        self.app.execute(request).await?;
        self.settle().await?;
        self.transfers
            .status(transfer)
            .await?
            .ok_or_else(|| Error::NotFound {
                what: format!("saga of transfer `{transfer}`"),
            })
    }

    /// Waits until every consumer has handled every event, including the
    /// events that the saga's own commands appended (at most 30 s; on a bus:
    /// relayed, delivered and handled).
    ///
    /// # Errors
    /// [`Error::Timeout`], or a consumer that stopped.
    pub async fn settle(&self) -> Result<()> {
        let Some(runtime) = &self.runtime else {
            return Err(Error::Shutdown {
                component: "bank runtime",
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
                operation: "settling the bank's consumers".into(),
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

/// The bus settings: the bank's Avro schemas for `format=avro`.
fn bus_options() -> BusOptions {
    let mut options = BusOptions::default();
    options.avro_schemas = Some(crate::schemas::avro_schemas());
    options
}
