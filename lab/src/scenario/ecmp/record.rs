//! What the ECMP scenario watches while it runs, each from threads of its own:
//! - many client connections: `clients` threads in the client namespace, each opening a new
//!   connection per request (so the router hashes each onto a balancer by its source port) and
//!   asking for `/?ecmp=ID` with a unique ID, which the serving balancer's access log records:
//!   [`served_by`] attributes every answered request to its balancer afterwards;
//! - the router's paths: the nexthops of its route to the VIP, read over rtnetlink from a
//!   thread inside the router's namespace, by balancer name.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::error::{LabError, Result};
use crate::netlink::{self, Routes};
use crate::probe::{self, HolderChange};
use crate::sys;

/// One request of the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub id: u64,
    /// Since the recorder started.
    pub at: Duration,
    pub latency: Duration,
    /// The body on HTTP 200; otherwise what went wrong.
    pub result: std::result::Result<String, String>,
}

/// The query that carries a request's id into the access logs.
pub const QUERY: &str = "ecmp";

#[derive(Default)]
struct Shared {
    requests: Vec<Request>,
    paths: Vec<HolderChange>,
    current_paths: Vec<String>,
    error: Option<String>,
}

/// Everything recorded up to a moment.
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub requests: Vec<Request>,
    /// Changes of the router's paths to the VIP (balancer names, sorted).
    pub paths: Vec<HolderChange>,
}

pub struct Recorder {
    start: Instant,
    /// Tags this run's request ids: the access logs keep earlier runs' too.
    run: u64,
    stop: Arc<AtomicBool>,
    shared: Arc<Mutex<Shared>>,
    threads: Vec<JoinHandle<()>>,
}

impl Recorder {
    /// `balancers`: (name, address) of each.
    pub fn start(
        client_ns: &str,
        router_ns: &str,
        balancers: &[(String, Ipv4Addr)],
        vip: Ipv4Addr,
        clients: usize,
        period: Duration,
        timeout: Duration,
    ) -> Result<Recorder> {
        let run = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let mut rec = Recorder {
            start: Instant::now(),
            run,
            stop: Arc::new(AtomicBool::new(false)),
            shared: Arc::new(Mutex::new(Shared::default())),
            threads: Vec::new(),
        };
        rec.spawn_path_watcher(router_ns, balancers, vip)?;
        let ids = Arc::new(AtomicU64::new(1));
        for _ in 0..clients {
            rec.spawn_client(client_ns, vip, period, timeout, ids.clone())?;
        }
        Ok(rec)
    }

    /// Runs `body` on a thread inside `ns`, once it is there.
    fn spawn_in<F>(&mut self, ns: &str, body: F) -> Result<()>
    where
        F: FnOnce() + Send + 'static,
    {
        let ns = ns.to_string();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        self.threads.push(thread::spawn(move || {
            let entered = sys::enter_netns(&ns);
            let _ = ready_tx.send(entered.as_ref().map(|_| ()).map_err(|e| e.to_string()));
            if entered.is_ok() {
                body();
            }
        }));
        ready_rx
            .recv()
            .map_err(|_| LabError::Other("recorder thread died".into()))?
            .map_err(LabError::Other)
    }

    fn spawn_path_watcher(
        &mut self,
        router_ns: &str,
        balancers: &[(String, Ipv4Addr)],
        vip: Ipv4Addr,
    ) -> Result<()> {
        let (stop, shared, start) = (self.stop.clone(), self.shared.clone(), self.start);
        let balancers = balancers.to_vec();
        self.spawn_in(router_ns, move || {
            let mut routes = match Routes::open() {
                Ok(r) => r,
                Err(e) => {
                    if let Ok(mut sh) = shared.lock() {
                        sh.error = Some(format!("rtnetlink in the router: {e}"));
                    }
                    return;
                }
            };
            let mut last: Option<Vec<String>> = None;
            while !stop.load(Ordering::Relaxed) {
                let at = start.elapsed();
                let hops = routes.nexthops(vip).unwrap_or_default();
                let mut now: Vec<String> = balancers
                    .iter()
                    .filter(|(_, a)| hops.contains(a))
                    .map(|(n, _)| n.clone())
                    .collect();
                now.sort();
                if last.as_ref() != Some(&now) {
                    if let Ok(mut sh) = shared.lock() {
                        sh.paths.push(HolderChange {
                            at,
                            holders: now.clone(),
                        });
                        sh.current_paths.clone_from(&now);
                    }
                    last = Some(now);
                }
                thread::sleep(netlink::POLL);
            }
        })
    }

    fn spawn_client(
        &mut self,
        client_ns: &str,
        vip: Ipv4Addr,
        period: Duration,
        timeout: Duration,
        ids: Arc<AtomicU64>,
    ) -> Result<()> {
        let (stop, shared, start, run) =
            (self.stop.clone(), self.shared.clone(), self.start, self.run);
        self.spawn_in(client_ns, move || {
            let addr = SocketAddr::from((vip, 80));
            while !stop.load(Ordering::Relaxed) {
                let id = ids.fetch_add(1, Ordering::Relaxed);
                let t0 = Instant::now();
                let at = start.elapsed();
                let path = format!("/?{QUERY}={run}.{id}");
                let result = match probe::http_get_path(addr, &path, timeout) {
                    Ok((200, body)) => Ok(body.trim().to_string()),
                    Ok((status, _)) => Err(format!("HTTP {status}")),
                    Err(e) => Err(e),
                };
                let latency = t0.elapsed();
                if let Ok(mut sh) = shared.lock() {
                    sh.requests.push(Request {
                        id,
                        at,
                        latency,
                        result,
                    });
                }
                thread::sleep(period);
            }
        })
    }

    /// The tag of this run's request ids (see [`served_by`]).
    pub fn run(&self) -> u64 {
        self.run
    }

    /// When the recorder started (the timeline's zero).
    pub fn started(&self) -> Instant {
        self.start
    }

    /// Time since the recorder started (the timeline's clock).
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// The balancers the router routes the VIP to right now.
    pub fn paths(&self) -> Vec<String> {
        self.shared
            .lock()
            .map(|sh| sh.current_paths.clone())
            .unwrap_or_default()
    }

    /// A watcher that could not start (reported once the run ends).
    pub fn error(&self) -> Option<String> {
        self.shared.lock().ok().and_then(|sh| sh.error.clone())
    }

    pub fn snapshot(&self) -> Snapshot {
        self.shared
            .lock()
            .map(|sh| {
                let mut requests = sh.requests.clone();
                requests.sort_by_key(|r| r.at);
                Snapshot {
                    requests,
                    paths: sh.paths.clone(),
                }
            })
            .unwrap_or_default()
    }

    /// Stops the threads and returns everything recorded.
    pub fn finish(mut self) -> Snapshot {
        self.halt();
        self.snapshot()
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Request id -> the balancer whose access log holds it. `logs`: (balancer, its access log in
/// nginx's "main" format, whose request field is `"GET /?ecmp=RUN.ID HTTP/1.1"`); only run
/// `run`'s requests count.
pub fn served_by(logs: &[(String, String)], run: u64) -> HashMap<u64, String> {
    let key = format!("GET /?{QUERY}={run}.");
    let mut map = HashMap::new();
    for (balancer, text) in logs {
        for line in text.lines() {
            let Some((_, rest)) = line.split_once(&key) else {
                continue;
            };
            let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
            if let Ok(id) = digits.parse::<u64>() {
                map.insert(id, balancer.clone());
            }
        }
    }
    map
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_requests_by_access_log() {
        let s1 = "172.16.250.10 - - [30/Nov/2026:23:10:01 +0000] \"GET /?ecmp=5.7 HTTP/1.1\" 200 17 \"-\" \"lab-client\" \"-\"\n\
                  172.16.250.10 - - [30/Nov/2026:23:10:01 +0000] \"GET / HTTP/1.1\" 200 17 \"-\" \"curl\" \"-\"\n\
                  garbage line\n";
        // An earlier run's request 7 in server2's log must not count.
        let s2 = "172.16.250.10 - - [30/Nov/2026:23:10:01 +0000] \"GET /?ecmp=5.8 HTTP/1.1\" 200 17 \"-\" \"lab-client\" \"-\"\n\
                  x \"GET /?ecmp=4.7 HTTP/1.1\"\n\
                  x \"GET /?ecmp=5. HTTP/1.1\"\n";
        let m = served_by(
            &[("server1".into(), s1.into()), ("server2".into(), s2.into())],
            5,
        );
        assert_eq!(m.len(), 2);
        assert_eq!(m.get(&7).map(String::as_str), Some("server1"));
        assert_eq!(m.get(&8).map(String::as_str), Some("server2"));
    }
}
