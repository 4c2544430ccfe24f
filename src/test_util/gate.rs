//! Holding answers back until a test lets them go, for concurrency tests.

/// Closed: answers wait. Opened once, it stays open.
#[derive(Debug)]
pub(super) struct Gate(tokio::sync::watch::Sender<bool>);

impl Gate {
    pub(super) fn new(open: bool) -> Self {
        Gate(tokio::sync::watch::Sender::new(open))
    }

    pub(super) fn open(&self) {
        self.0.send_replace(true);
    }

    pub(super) async fn passed(&self) {
        let mut receiver = self.0.subscribe();
        // The sender lives as long as `self`: `wait_for` cannot fail.
        let _ = receiver.wait_for(|open| *open).await;
    }
}
