//! Commands as data: what a saga sends and what it keeps for compensation.

use std::fmt;

use futures::future::BoxFuture;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::app::Application;
use crate::catalog::CommandSet;
use crate::error::Result;
use crate::event::Command;
use crate::executor::{CommandContext, CommandOutcome};

/// A command a saga sends or keeps as a compensation.
///
/// Commands are data, not closures, because a compensation recorded now may be
/// sent after a restart: the engine stores them in the saga's stream.
///
/// Every serializable [`Command`] is a `SagaCommand` (it dispatches itself
/// through [`Application::execute_with`]). A saga that commands several
/// aggregates uses an enum of their commands and dispatches by hand:
///
/// ```
/// use futures::future::BoxFuture;
/// use orchestrix::saga::SagaCommand;
/// use orchestrix::{Application, Command, CommandContext, CommandOutcome};
/// use serde::{Deserialize, Serialize};
/// # #[derive(Debug, Clone, Serialize, Deserialize)] struct Charge { order: String }
/// # impl Command for Charge { fn aggregate_id(&self) -> String { self.order.clone() } }
/// # #[derive(Debug, Clone, Serialize, Deserialize)] struct Reserve { sku: String }
/// # impl Command for Reserve { fn aggregate_id(&self) -> String { self.sku.clone() } }
///
/// #[derive(Debug, Clone, Serialize, Deserialize)]
/// enum ShopCommand { Payment(Charge), Inventory(Reserve) }
///
/// impl SagaCommand for ShopCommand {
///     fn dispatch(self, app: &Application, cx: CommandContext) -> BoxFuture<'static, orchestrix::Result<CommandOutcome>> {
///         let app = app.clone();
///         Box::pin(async move {
///             match self {
///                 Self::Payment(c) => app.execute_with(c, cx).await,
///                 Self::Inventory(c) => app.execute_with(c, cx).await,
///             }
///         })
///     }
/// }
/// ```
pub trait SagaCommand:
    Serialize + DeserializeOwned + Clone + Send + Sync + fmt::Debug + 'static
{
    /// Executes the command on the application with the saga's context
    /// (command id, correlation id, trigger extension).
    fn dispatch(
        self,
        app: &Application,
        context: CommandContext,
    ) -> BoxFuture<'static, Result<CommandOutcome>>;

    /// The commands it may send, for the [event catalog](crate::catalog):
    /// the command itself for a [`Command`]; none by default for an enum
    /// dispatched by hand, which lists its commands with
    /// [`CommandSet::of`] (and [`CommandSet::only`] to name the variants a
    /// saga really sends).
    fn commands() -> Vec<CommandSet>
    where
        Self: Sized,
    {
        Vec::new()
    }
}

impl<C> SagaCommand for C
where
    C: Command + Serialize + DeserializeOwned + Clone + fmt::Debug,
{
    fn dispatch(
        self,
        app: &Application,
        context: CommandContext,
    ) -> BoxFuture<'static, Result<CommandOutcome>> {
        let app = app.clone();
        Box::pin(async move { app.execute_with(self, context).await })
    }

    fn commands() -> Vec<CommandSet> {
        vec![CommandSet::of::<C>()]
    }
}
