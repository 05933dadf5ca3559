//! nginx Plus `queue`: requests that found every eligible server at its `max_conns` wait here,
//! oldest first, instead of getting 502 at once (HAProxy queues the same way behind `maxconn`).
//!
//! Why a proxy wants it: a backend that runs a thread per request (Apache) serves a burst of
//! concurrent requests in whatever order the kernel's scheduler picks its threads, so under
//! load some requests wait many times longer than others. Capping the requests each server
//! gets at once and queueing the rest here, first come first served, keeps the wait fair.
//!
//! Pure bookkeeping: no clock (the caller bounds the wait with `queue_timeout`) and no I/O;
//! a [`Ticket`] is woken through the task waker its owner registered.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::task::Waker;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Waiting,
    /// A slot was freed for this ticket; its owner has not picked yet.
    Called,
    /// Its owner picked (or tried to) after being called.
    Done,
}

#[derive(Debug)]
struct Slot {
    state: State,
    waker: Option<Waker>,
    /// Its place in the upstream's order across workers (see `control::Waiting`).
    number: u64,
}

/// One waiting request. Dropping a ticket leaves the queue; [`Queue::leave`] must see it
/// first so a slot handed to it is passed on.
#[derive(Debug)]
pub struct Ticket(Rc<RefCell<Slot>>);

impl Ticket {
    /// A slot was freed for this request: it may pick now.
    pub fn called(&self) -> bool {
        self.0.borrow().state == State::Called
    }

    /// Its place in the upstream's order across workers: a called request that then found no
    /// slot (another took it first) queues again under the same number, ahead of later ones.
    pub fn number(&self) -> u64 {
        self.0.borrow().number
    }

    /// Remember the task to wake when the ticket is called.
    pub fn park(&self, waker: &Waker) {
        let mut slot = self.0.borrow_mut();
        match &slot.waker {
            Some(w) if w.will_wake(waker) => {}
            _ => slot.waker = Some(waker.clone()),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct Queue {
    /// `queue`: at most this many waiting requests (0 = no queue).
    limit: usize,
    waiting: VecDeque<Rc<RefCell<Slot>>>,
    /// Tickets called but not yet done: their slots are spoken for, so a newcomer must queue.
    handoff: usize,
    /// Numbers for [`Queue::join`] when no shared order hands them out.
    drawn: u64,
}

impl Queue {
    pub fn new(limit: u32) -> Queue {
        Queue {
            limit: limit as usize,
            ..Queue::default()
        }
    }

    pub fn enabled(&self) -> bool {
        self.limit > 0
    }

    /// A newcomer must go behind the requests already waiting (first come, first served).
    /// O(1) amortized: asked for every request of an upstream with a queue.
    pub fn occupied(&mut self) -> bool {
        self.handoff > 0 || self.anyone_waiting()
    }

    /// Someone is still waiting. Abandoned tickets (timed out, client gone) at the front are
    /// dropped here, so the front answers for all.
    pub fn anyone_waiting(&mut self) -> bool {
        while self
            .waiting
            .front()
            .is_some_and(|s| Rc::strong_count(s) == 1)
        {
            self.waiting.pop_front();
        }
        !self.waiting.is_empty()
    }

    /// Requests waiting now (abandoned tickets not counted).
    #[cfg(test)]
    fn waiting(&self) -> usize {
        self.waiting
            .iter()
            .filter(|s| Rc::strong_count(s) > 1)
            .count()
    }

    /// Queue a request; None when `limit` requests already wait (nginx Plus answers 502).
    pub fn join(&mut self) -> Option<Ticket> {
        self.drawn += 1;
        self.join_as(self.drawn)
    }

    /// [`Queue::join`] with the number drawn from the upstream's order across workers (rising).
    pub fn join_as(&mut self, number: u64) -> Option<Ticket> {
        self.waiting.retain(|s| Rc::strong_count(s) > 1);
        if self.waiting.len() >= self.limit {
            return None;
        }
        let slot = Rc::new(RefCell::new(Slot {
            state: State::Waiting,
            waker: None,
            number,
        }));
        // In number order: at the back, except for a request queueing again under its number.
        let at = self
            .waiting
            .iter()
            .rposition(|s| s.borrow().number < number)
            .map_or(0, |i| i + 1);
        self.waiting.insert(at, slot.clone());
        Some(Ticket(slot))
    }

    /// Tickets called and not yet picked.
    pub fn handoff(&self) -> usize {
        self.handoff
    }

    /// The number of the oldest request still waiting (`u64::MAX`: none).
    pub fn oldest(&mut self) -> u64 {
        if self.anyone_waiting() {
            self.waiting.front().map_or(u64::MAX, |s| s.borrow().number)
        } else {
            u64::MAX
        }
    }

    /// A server slot was freed: call the oldest request still waiting. false: nobody waits.
    pub fn call_next(&mut self) -> bool {
        while let Some(slot) = self.waiting.pop_front() {
            if Rc::strong_count(&slot) == 1 {
                continue; // abandoned (timed out, client gone)
            }
            let mut s = slot.borrow_mut();
            s.state = State::Called;
            self.handoff += 1;
            if let Some(w) = s.waker.take() {
                w.wake();
            }
            return true;
        }
        false
    }

    /// The ticket's owner is about to pick (called) or gives up (timed out, dropped). A slot
    /// handed to a ticket that gives up goes to the next in line.
    pub fn leave(&mut self, ticket: &Ticket) -> bool {
        let was = std::mem::replace(&mut ticket.0.borrow_mut().state, State::Done);
        if was == State::Called {
            self.handoff -= 1;
        }
        was == State::Called
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::task::Wake;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn waker() -> (Waker, Arc<Count>) {
        let c = Arc::new(Count(AtomicUsize::new(0)));
        (Waker::from(c.clone()), c)
    }

    #[test]
    fn oldest_first_and_bounded() {
        let mut q = Queue::new(2);
        let a = q.join().unwrap();
        let b = q.join().unwrap();
        assert!(
            q.join().is_none(),
            "a third request over queue = 2 gets 502"
        );
        let (wa, ca) = waker();
        a.park(&wa);
        q.call_next();
        assert!(a.called() && !b.called());
        assert_eq!(ca.0.load(Ordering::SeqCst), 1);
        assert!(q.occupied(), "b still waits and a's slot is spoken for");
        q.leave(&a);
        q.call_next();
        assert!(b.called());
        q.leave(&b);
        assert!(!q.occupied());
    }

    #[test]
    fn newcomers_queue_while_a_called_request_has_not_picked() {
        let mut q = Queue::new(4);
        let a = q.join().unwrap();
        q.call_next();
        assert_eq!(q.waiting(), 0);
        assert!(q.occupied(), "the freed slot belongs to a until it picks");
        q.leave(&a);
        assert!(!q.occupied());
    }

    #[test]
    fn abandoned_tickets_are_skipped_and_free_their_place() {
        let mut q = Queue::new(2);
        let a = q.join().unwrap();
        let b = q.join().unwrap();
        q.leave(&a);
        drop(a);
        assert_eq!(q.waiting(), 1);
        let c = q.join().expect("a's place is free again");
        q.call_next();
        assert!(b.called() && !c.called());
    }
}
