//! The notification aggregate: requested, then sent once.

use orchestrix::{Aggregate, Command, Event};
use serde::{Deserialize, Serialize};

/// Where a notification goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Channel {
    /// An e-mail address.
    Email,
    /// A phone number.
    Sms,
    /// A device token.
    Push,
}

impl Channel {
    /// Every channel, in display order.
    pub const ALL: [Self; 3] = [Self::Email, Self::Sms, Self::Push];

    /// The channel's name.
    #[must_use]
    pub fn name(self) -> &'static str {
        match self {
            Self::Email => "email",
            Self::Sms => "sms",
            Self::Push => "push",
        }
    }
}

/// What happened to a notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Event)]
#[event(prefix = "com.orchestrix.notify.notification")]
pub enum NotificationEvent {
    /// Someone asked for it to be sent.
    Requested {
        /// The channel.
        channel: Channel,
        /// The address on that channel.
        recipient: String,
        /// The text.
        body: String,
    },
    /// The provider accepted it.
    Sent {
        /// The provider's message id.
        provider_id: String,
        /// The attempt that got it through (1 = the first).
        attempt: u32,
    },
}

/// What can be asked of a notification.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Command)]
#[command(id = notification)]
pub enum NotificationCommand {
    /// Asks for a notification.
    Request {
        /// The notification id.
        notification: String,
        /// The channel.
        channel: Channel,
        /// The address on that channel.
        recipient: String,
        /// The text.
        body: String,
    },
    /// Records that the provider accepted it.
    MarkSent {
        /// The notification id.
        notification: String,
        /// The provider's message id.
        provider_id: String,
        /// The attempt that got it through.
        attempt: u32,
    },
}

/// Why a notification refuses a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NotificationError {
    /// Request on an existing notification.
    #[error("the notification was already requested")]
    Exists,
    /// MarkSent on an unknown notification.
    #[error("no such notification")]
    Unknown,
}

/// A notification's state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Notification {
    /// The channel, once requested.
    pub channel: Option<Channel>,
    /// The provider's message id, once sent.
    pub provider_id: Option<String>,
}

impl Aggregate for Notification {
    const CATEGORY: &'static str = "notification";
    type Command = NotificationCommand;
    type Event = NotificationEvent;
    type Error = NotificationError;

    fn handle(&self, command: &NotificationCommand) -> Result<Vec<NotificationEvent>, Self::Error> {
        match command {
            NotificationCommand::Request {
                channel,
                recipient,
                body,
                ..
            } => {
                if self.channel.is_some() {
                    return Err(NotificationError::Exists);
                }
                Ok(vec![NotificationEvent::Requested {
                    channel: *channel,
                    recipient: recipient.clone(),
                    body: body.clone(),
                }])
            }
            NotificationCommand::MarkSent {
                provider_id,
                attempt,
                ..
            } => {
                if self.channel.is_none() {
                    return Err(NotificationError::Unknown);
                }
                // Sent already (a redelivered event): nothing new happened.
                if self.provider_id.is_some() {
                    return Ok(Vec::new());
                }
                Ok(vec![NotificationEvent::Sent {
                    provider_id: provider_id.clone(),
                    attempt: *attempt,
                }])
            }
        }
    }

    fn apply(&mut self, event: &NotificationEvent) {
        match event {
            NotificationEvent::Requested { channel, .. } => self.channel = Some(*channel),
            NotificationEvent::Sent { provider_id, .. } => {
                self.provider_id = Some(provider_id.clone());
            }
        }
    }
}
