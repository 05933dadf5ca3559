//! The pacer: with `realtime = true`, one thread that does nothing but repeat each master's
//! advert every advert interval, SCHED_RR with memory locked. A master's adverts are what keep
//! the backups quiet; if they leave late, a backup takes over although nothing failed. The
//! event loop (normal priority) still decides: it hands the pacer the advert to repeat when an
//! instance becomes master or its advert changes, and takes it back (before any priority-0
//! advert) when it stops being master.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::status::Lateness;
use crate::sys::socket::VrrpSocket;

/// An advert to repeat: the socket, the encoded advert per destination, the period.
pub(super) type Repeat = (VrrpSocket, Vec<(IpAddr, Vec<u8>)>, Duration);

/// What the pacer repeats for one instance.
struct Entry {
    socket: VrrpSocket,
    /// The encoded advert per destination (the checksum covers the destination).
    frames: Vec<(IpAddr, Vec<u8>)>,
    interval: Duration,
    next: Instant,
}

#[derive(Default)]
struct Table {
    entries: HashMap<String, Entry>,
    /// Per instance, kept across entries: how late the repeats left, and how many.
    lateness: HashMap<String, Lateness>,
    sent: HashMap<String, u64>,
}

/// Handle to the pacer thread (it lives as long as the process).
#[derive(Clone)]
pub(super) struct Pacer(Arc<(Mutex<Table>, Condvar)>);

impl Pacer {
    /// Starts the pacer thread, SCHED_RR if `realtime` can be entered.
    pub(super) fn start() -> std::io::Result<Pacer> {
        let shared = Arc::new((Mutex::new(Table::default()), Condvar::new()));
        let pacer = Pacer(Arc::clone(&shared));
        std::thread::Builder::new()
            .name("pacer".into())
            .spawn(move || {
                match crate::sys::realtime::enter() {
                    Ok(()) => tracing::info!(
                        priority = crate::sys::realtime::RT_PRIORITY,
                        "realtime: advert pacer SCHED_RR, memory locked"
                    ),
                    Err(e) => tracing::error!(error = %e, "realtime = true but SCHED_RR/mlockall failed (needs CAP_SYS_NICE and CAP_IPC_LOCK, or LimitRTPRIO/LimitMEMLOCK)"),
                }
                run(&shared)
            })?;
        Ok(pacer)
    }

    /// Repeat `frames` on `socket` every `interval`, the first one `interval` from now (the
    /// caller just sent it); None stops the repeats.
    pub(super) fn set(&self, name: &str, repeat: Option<Repeat>) {
        let (lock, wake) = &*self.0;
        let Ok(mut table) = lock.lock() else {
            return;
        };
        match repeat {
            Some((socket, frames, interval)) => {
                table.entries.insert(
                    name.to_string(),
                    Entry {
                        socket,
                        frames,
                        interval,
                        next: Instant::now() + interval,
                    },
                );
            }
            None => {
                table.entries.remove(name);
            }
        }
        wake.notify_one();
    }

    /// How late the repeats of `name` left, and how many were sent.
    pub(super) fn stats(&self, name: &str) -> (Lateness, u64) {
        let Ok(table) = self.0 .0.lock() else {
            return Default::default();
        };
        (
            table.lateness.get(name).cloned().unwrap_or_default(),
            table.sent.get(name).copied().unwrap_or(0),
        )
    }
}

fn run(shared: &(Mutex<Table>, Condvar)) {
    let (lock, wake) = shared;
    let Ok(mut table) = lock.lock() else {
        return;
    };
    loop {
        let now = Instant::now();
        let mut due = Vec::new();
        for (name, e) in &mut table.entries {
            if e.next <= now {
                let late = now.duration_since(e.next);
                for (dst, frame) in &e.frames {
                    if let Err(err) = e.socket.send_to(frame, *dst) {
                        tracing::warn!(instance = %name, %dst, error = %err, "paced advert failed");
                    }
                }
                // Keep the period; after a stall longer than one interval, start again from now
                // rather than sending a burst.
                e.next += e.interval;
                if e.next <= now {
                    e.next = now + e.interval;
                }
                due.push((name.clone(), late));
            }
        }
        for (name, late) in due {
            let us = u64::try_from(late.as_micros()).unwrap_or(u64::MAX);
            table.lateness.entry(name.clone()).or_default().record(us);
            *table.sent.entry(name).or_default() += 1;
        }
        let next = table.entries.values().map(|e| e.next).min();
        table = match next {
            Some(at) => {
                match wake.wait_timeout(table, at.saturating_duration_since(Instant::now())) {
                    Ok((t, _)) => t,
                    Err(_) => return,
                }
            }
            None => match wake.wait(table) {
                Ok(t) => t,
                Err(_) => return,
            },
        };
    }
}
