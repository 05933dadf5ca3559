//! [`LocalEvent`]: a one-shot, thread-local signal (listener stop, worker drain).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// A one-shot, thread-local event (no atomics, no locks): `set` wakes every `wait`er.
#[derive(Default)]
pub struct LocalEvent {
    set: Cell<bool>,
    next_key: Cell<u64>,
    waiters: RefCell<HashMap<u64, Waker>>,
}

impl LocalEvent {
    pub fn set(&self) {
        self.set.set(true);
        for (_, w) in self.waiters.borrow_mut().drain() {
            w.wake();
        }
    }

    pub fn is_set(&self) -> bool {
        self.set.get()
    }

    pub fn wait(&self) -> Wait<'_> {
        Wait {
            event: self,
            key: None,
        }
    }
}

pub struct Wait<'a> {
    event: &'a LocalEvent,
    key: Option<u64>,
}

impl Future for Wait<'_> {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.event.is_set() {
            return Poll::Ready(());
        }
        let key = match self.key {
            Some(k) => k,
            None => {
                let k = self.event.next_key.get();
                self.event.next_key.set(k.wrapping_add(1));
                self.key = Some(k);
                k
            }
        };
        self.event
            .waiters
            .borrow_mut()
            .insert(key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.key {
            self.event.waiters.borrow_mut().remove(&k);
        }
    }
}
