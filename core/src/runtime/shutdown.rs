//! The shutdown signal shared by a runtime's tasks.

use std::time::Duration;

use tokio::sync::watch;

/// Tells a task that the runtime (or its consumer) is stopping. Cheap to clone.
///
/// Tasks check [`is_triggered`](Self::is_triggered) between units of work, or
/// `select!` on [`triggered`](Self::triggered), then finish what they hold and
/// return.
///
/// ```
/// use orchestrix::runtime::Shutdown;
/// # tokio::runtime::Runtime::new().unwrap().block_on(async {
/// let (trigger, shutdown) = Shutdown::new();
/// assert!(!shutdown.is_triggered());
/// trigger.send_replace(true);
/// shutdown.triggered().await; // returns at once
/// assert!(shutdown.is_triggered());
/// # });
/// ```
#[derive(Debug, Clone)]
pub struct Shutdown {
    rx: watch::Receiver<bool>,
}

impl Shutdown {
    /// A new signal and its trigger: send `true` to trigger it. Dropping the
    /// trigger triggers it too.
    #[must_use]
    pub fn new() -> (watch::Sender<bool>, Self) {
        let (tx, rx) = watch::channel(false);
        (tx, Self { rx })
    }

    /// Whether shutdown has been asked for.
    #[must_use]
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow() || self.rx.has_changed().is_err()
    }

    /// Resolves when shutdown is asked for (at once if it already was).
    pub async fn triggered(&self) {
        let mut rx = self.rx.clone();
        // An error means the trigger is gone, which also means "stop".
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// Sleeps for `duration` unless shutdown comes first; `true` when the whole
    /// duration passed.
    pub async fn sleep(&self, duration: Duration) -> bool {
        if self.is_triggered() {
            return false;
        }
        tokio::select! {
            () = tokio::time::sleep(duration) => !self.is_triggered(),
            () = self.triggered() => false,
        }
    }
}

impl From<watch::Receiver<bool>> for Shutdown {
    /// A signal that triggers when `rx` turns `true` (or its sender is
    /// dropped): a transport's own stop channel.
    fn from(rx: watch::Receiver<bool>) -> Self {
        Self { rx }
    }
}
