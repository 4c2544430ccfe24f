//! Counters tests wait on or assert: requests received, and requests and
//! response bodies still alive.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Counts itself in a counter while alive.
#[derive(Debug)]
pub(super) struct InFlight(Arc<AtomicUsize>);

impl InFlight {
    pub(super) fn new(counter: &Arc<AtomicUsize>) -> Self {
        counter.fetch_add(1, Ordering::SeqCst);
        InFlight(Arc::clone(counter))
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A count that tests can wait on.
#[derive(Debug)]
pub(super) struct Arrivals(tokio::sync::watch::Sender<usize>);

impl Default for Arrivals {
    fn default() -> Self {
        Arrivals(tokio::sync::watch::Sender::new(0))
    }
}

impl Arrivals {
    pub(super) fn count(&self) {
        self.0.send_modify(|n| *n += 1);
    }

    pub(super) fn get(&self) -> usize {
        *self.0.borrow()
    }

    pub(super) async fn reached(&self, n: usize) {
        let mut receiver = self.0.subscribe();
        // The sender lives as long as `self`: `wait_for` cannot fail.
        let _ = receiver.wait_for(|count| *count >= n).await;
    }
}
