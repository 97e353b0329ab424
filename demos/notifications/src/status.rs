//! The status read model: each notification's channel, whether it was
//! sent, and the attempt that got it through.

use orchestrix::{RecordedEvent, View};
use serde::{Deserialize, Serialize};

use crate::domain::{Channel, NotificationEvent};

/// One row: a notification.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatusRow {
    /// The channel.
    pub channel: Option<Channel>,
    /// Whether the provider accepted it.
    pub sent: bool,
    /// The attempt that got it through.
    pub attempt: u32,
}

/// Notifications by id (the stream's id).
#[derive(Debug, Default)]
pub struct Statuses;

impl View for Statuses {
    const NAME: &'static str = "notification-status";
    type Event = NotificationEvent;
    type Row = StatusRow;

    fn update(&self, row: &mut StatusRow, event: &NotificationEvent, _: &RecordedEvent) {
        match event {
            NotificationEvent::Requested { channel, .. } => row.channel = Some(*channel),
            NotificationEvent::Sent { attempt, .. } => {
                row.sent = true;
                row.attempt = *attempt;
            }
        }
    }
}
