//! [`CatchUnwind`]: a panic in one connection task ends that connection, not the worker.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::task::{Context, Poll};

/// Contains a panic to the one connection task that raised it, so a bug triggered by one
/// client cannot take the worker (and every other connection on it) down.
pub struct CatchUnwind<F> {
    inner: Pin<Box<F>>,
    worker: usize,
}

impl<F: Future<Output = ()>> CatchUnwind<F> {
    pub fn new(inner: F, worker: usize) -> Self {
        CatchUnwind {
            inner: Box::pin(inner),
            worker,
        }
    }
}

impl<F: Future<Output = ()>> Future for CatchUnwind<F> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let worker = self.worker;
        match std::panic::catch_unwind(AssertUnwindSafe(|| self.inner.as_mut().poll(cx))) {
            Ok(p) => p,
            Err(_) => {
                tracing::error!(worker, "connection task panicked; connection dropped");
                Poll::Ready(())
            }
        }
    }
}
