//! Waking another worker: one Unix datagram socket pair per worker. Any thread may send a
//! byte on a worker's sending end; the worker's own task receives it on the other end and
//! calls the requests it has queued (`max_conns` is counted across workers, so a slot one
//! worker frees may be the one another worker's queued request waits for).
//!
//! A datagram socket because both of the worker's event loops (io_uring and epoll) can await
//! one, and a send that would block (the worker has a backlog of wake-ups already) can simply
//! be dropped: one pending wake-up calls everything there is room for. The workers' tick calls
//! their queues too, so even a lost wake-up only delays a request by one tick.

use std::os::unix::net::UnixDatagram;
use std::sync::Mutex;

pub struct Wakeups {
    send: Vec<Option<UnixDatagram>>,
    recv: Mutex<Vec<Option<UnixDatagram>>>,
}

impl Wakeups {
    /// Pairs for `workers` workers. A pair that cannot be made (descriptor limit) leaves that
    /// worker to its tick.
    pub fn new(workers: usize) -> Wakeups {
        let mut send = Vec::with_capacity(workers);
        let mut recv = Vec::with_capacity(workers);
        for id in 0..workers {
            let pair = UnixDatagram::pair().and_then(|(tx, rx)| {
                tx.set_nonblocking(true)?;
                rx.set_nonblocking(true)?;
                Ok((tx, rx))
            });
            match pair {
                Ok((tx, rx)) => {
                    send.push(Some(tx));
                    recv.push(Some(rx));
                }
                Err(e) => {
                    tracing::warn!(worker = id, error = %e, "no wake-up socket: queued requests of this worker are called at its tick");
                    send.push(None);
                    recv.push(None);
                }
            }
        }
        Wakeups {
            send,
            recv: Mutex::new(recv),
        }
    }

    /// Wake every worker whose bit (`id % 64`) is set in `mask`.
    pub fn wake(&self, mask: u64) {
        if mask == 0 {
            return;
        }
        for (id, tx) in self.send.iter().enumerate() {
            if mask & (1 << (id % 64)) != 0 {
                if let Some(tx) = tx {
                    // WouldBlock: a wake-up is pending already, which is all it takes.
                    let _ = tx.send(&[1]);
                }
            }
        }
    }

    /// Worker `id`'s receiving end (once: the worker that starts takes it).
    pub fn take_receiver(&self, id: usize) -> Option<UnixDatagram> {
        let mut recv = self.recv.lock().unwrap_or_else(|p| p.into_inner());
        recv.get_mut(id).and_then(Option::take)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_only_the_workers_in_the_mask_and_never_blocks() {
        let w = Wakeups::new(3);
        let rx: Vec<UnixDatagram> = (0..3).map(|i| w.take_receiver(i).unwrap()).collect();
        assert!(w.take_receiver(0).is_none(), "taken once");
        w.wake(0b101);
        let mut buf = [0u8; 8];
        assert!(rx[0].recv(&mut buf).is_ok());
        assert!(
            rx[1].recv(&mut buf).is_err(),
            "worker 1 was not in the mask"
        );
        assert!(rx[2].recv(&mut buf).is_ok());
        // A worker that never reads: sends fill its buffer and are dropped, never block.
        for _ in 0..100_000 {
            w.wake(0b10);
        }
    }
}
