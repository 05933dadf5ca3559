//! The worker's one timer mechanism for connections: a table of deadline slots fired by the
//! worker's tick, and [`Timer`], a connection's handle on its slot.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

/// Per-connection deadline slots for every connection timeout (request path and keep-alive
/// idle), checked by the worker's tick.
///
/// monoio's `timeout` reads the clock, registers a 128-byte-aligned `Sleep` in its wheel and
/// makes every future holding one 128-byte aligned, so each boxed request future needed an
/// aligned allocation. Here a connection owns one slot for its life; a timed operation sets
/// the slot's deadline from the tick's coarse clock (no clock read), and the tick wakes the
/// expired ones. Timeouts fire up to two ticks (100 ms) late, which is fine for timeouts of
/// seconds.
#[derive(Default)]
pub struct Deadlines {
    slots: RefCell<Vec<DeadlineSlot>>,
    free: RefCell<Vec<usize>>,
    /// The tick's clock reading (`None` before the first tick).
    now: Cell<Option<Instant>>,
}

#[derive(Default)]
struct DeadlineSlot {
    deadline: Option<Instant>,
    fired: bool,
    waker: Option<Waker>,
}

/// The operation did not finish before its deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl Deadlines {
    /// A slot for one connection; give it back with [`Deadlines::release`].
    pub fn acquire(&self) -> usize {
        if let Some(id) = self.free.borrow_mut().pop() {
            return id;
        }
        let mut slots = self.slots.borrow_mut();
        slots.push(DeadlineSlot::default());
        slots.len() - 1
    }

    pub fn release(&self, id: usize) {
        if let Some(s) = self.slots.borrow_mut().get_mut(id) {
            *s = DeadlineSlot::default();
            self.free.borrow_mut().push(id);
        }
    }

    /// The coarse clock: the last tick's reading.
    pub fn now(&self) -> Instant {
        match self.now.get() {
            Some(t) => t,
            None => {
                let t = Instant::now();
                self.now.set(Some(t));
                t
            }
        }
    }

    /// Run `fut` with slot `id` armed for `timeout` from now.
    pub fn timed<'a, F: Future + 'a>(
        &'a self,
        id: usize,
        timeout: Duration,
        fut: F,
    ) -> impl Future<Output = Result<F::Output, Elapsed>> + 'a {
        let at = self.now() + timeout;
        self.timed_at(id, at, fut)
    }

    /// Run `fut` with slot `id` armed until `deadline`.
    pub async fn timed_at<F: Future>(
        &self,
        id: usize,
        deadline: Instant,
        fut: F,
    ) -> Result<F::Output, Elapsed> {
        self.arm_at(id, deadline);
        let mut fut = std::pin::pin!(fut);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(v) = fut.as_mut().poll(cx) {
                self.disarm(id);
                return Poll::Ready(Ok(v));
            }
            if self.expired(id, cx) {
                return Poll::Ready(Err(Elapsed));
            }
            Poll::Pending
        })
        .await
    }

    /// Arm slot `id` for `deadline` (for a caller that polls [`Deadlines::expired`] itself).
    pub fn arm_at(&self, id: usize, deadline: Instant) {
        if let Some(s) = self.slots.borrow_mut().get_mut(id) {
            s.deadline = Some(deadline);
            s.fired = false;
        }
    }

    pub fn disarm(&self, id: usize) {
        if let Some(s) = self.slots.borrow_mut().get_mut(id) {
            s.deadline = None;
            s.fired = false;
        }
    }

    /// True (once) if slot `id`'s deadline has been fired; otherwise the task in `cx` is woken
    /// when it fires.
    pub fn expired(&self, id: usize, cx: &Context<'_>) -> bool {
        let mut slots = self.slots.borrow_mut();
        let Some(s) = slots.get_mut(id) else {
            return true;
        };
        if s.fired {
            s.fired = false;
            return true;
        }
        match &s.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            _ => s.waker = Some(cx.waker().clone()),
        }
        false
    }

    /// Mark every slot whose deadline has passed and wake its task.
    pub fn fire(&self, now: Instant) {
        self.now.set(Some(now));
        let mut wake = Vec::new();
        for s in self.slots.borrow_mut().iter_mut() {
            if s.deadline.is_some_and(|d| d <= now) {
                s.deadline = None;
                s.fired = true;
                if let Some(w) = s.waker.take() {
                    wake.push(w);
                }
            }
        }
        for w in wake {
            w.wake();
        }
    }
}

/// A connection's slot in its worker's [`Deadlines`]: every timed wait of the connection
/// (client and upstream reads and writes, connect, splice readiness) goes through it. A
/// connection waits on one thing at a time, so one slot serves all of them; clones share it.
#[derive(Clone)]
pub struct Timer {
    table: Rc<Deadlines>,
    slot: usize,
}

impl Timer {
    /// Take a slot from `table`; [`Timer::release`] gives it back when the connection ends.
    pub fn acquire(table: &Rc<Deadlines>) -> Timer {
        Timer {
            slot: table.acquire(),
            table: table.clone(),
        }
    }

    pub fn release(&self) {
        self.table.release(self.slot);
    }

    /// The coarse clock (the worker's last tick).
    pub fn now(&self) -> Instant {
        self.table.now()
    }

    /// Run `fut` for at most `timeout` from now. (Plain functions returning the table's
    /// future, not `async fn`s: a wrapper would store `fut` twice in every caller's state.)
    pub fn within<'a, F: Future + 'a>(
        &'a self,
        timeout: Duration,
        fut: F,
    ) -> impl Future<Output = Result<F::Output, Elapsed>> + 'a {
        self.table.timed(self.slot, timeout, fut)
    }

    /// Run `fut` until `deadline` at the latest.
    pub fn until<'a, F: Future + 'a>(
        &'a self,
        deadline: Instant,
        fut: F,
    ) -> impl Future<Output = Result<F::Output, Elapsed>> + 'a {
        self.table.timed_at(self.slot, deadline, fut)
    }

    /// Arm the slot for a caller that polls [`Timer::expired`] itself.
    pub fn arm_at(&self, deadline: Instant) {
        self.table.arm_at(self.slot, deadline);
    }

    pub fn disarm(&self) {
        self.table.disarm(self.slot);
    }

    /// True (once) when the armed deadline has fired; else the task in `cx` is woken then.
    pub fn expired(&self, cx: &Context<'_>) -> bool {
        self.table.expired(self.slot, cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Drive `fut` on a monoio runtime while `tick` runs alongside it, like the worker's tick.
    fn run<T>(fut: impl Future<Output = T>) -> T {
        monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap()
            .block_on(fut)
    }

    #[test]
    fn a_timed_operation_expires_only_after_its_deadline_is_fired() {
        run(async {
            let d = Rc::new(Deadlines::default());
            let t0 = Instant::now();
            d.fire(t0);
            let id = d.acquire();
            let ticker = {
                let d = d.clone();
                monoio::spawn(async move {
                    // Fake clock: each "tick" advances 400 ms of deadline time.
                    for i in 1..=5u32 {
                        monoio::time::sleep(Duration::from_millis(5)).await;
                        d.fire(t0 + Duration::from_millis(400) * i);
                    }
                })
            };
            let never = std::future::pending::<()>();
            let r = d.timed(id, Duration::from_secs(1), never).await;
            assert_eq!(r, Err(Elapsed));
            // Expired at the third tick (1.2 s of fake time), not before.
            assert_eq!(d.now(), t0 + Duration::from_millis(1200));
            ticker.await;
        });
    }

    #[test]
    fn a_finished_operation_disarms_its_slot_and_slots_are_reused() {
        run(async {
            let d = Deadlines::default();
            let t0 = Instant::now();
            d.fire(t0);
            let a = d.acquire();
            let b = d.acquire();
            assert_ne!(a, b);
            let r = d.timed(a, Duration::from_millis(10), async { 7 }).await;
            assert_eq!(r, Ok(7));
            // Long past the deadline: nothing is marked, the next operation is unaffected.
            d.fire(t0 + Duration::from_secs(60));
            let r = d.timed(a, Duration::from_secs(1), async { 8 }).await;
            assert_eq!(r, Ok(8));
            d.release(a);
            assert_eq!(d.acquire(), a);
        });
    }
}
