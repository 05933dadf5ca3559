//! `proxy`: a thread-per-core io_uring HTTP/1.1 reverse proxy and load balancer.
//!
//! Start here. The pure core has no I/O and no clock, so it is unit-tested and fuzzed on its
//! own: `config` (proxy.toml to a validated [`config::Config`], errors with file:line), `http`
//! (request and response heads, chunked framing, head rewriting, error pages), `balance`
//! (nginx's round robin, least_conn, ip_hash with max_fails/fail_timeout), `route` (listen
//! address -> server -> location) and `policy` (one [`policy::ExchangeError`] deciding retry,
//! status and keep-alive). The I/O shell around it: `worker` runs one monoio runtime per core
//! (its tick, reload and drain, its listeners and accept loops) over the per-worker `state`;
//! `conn` serves one client connection (request, exchange with upstreams, relay); `rt` holds
//! the runtime pieces they share (the deadline table every connection timeout uses, the buffer
//! pool, splice(2), panic containment); `pool` keeps idle upstream connections; `admin` serves
//! /healthz and /metrics from `metrics`, and the status page with its JSON from `status`;
//! `log` writes the nginx-format access log.

pub mod admin;
pub mod balance;
pub mod config;
pub mod conn;
pub mod control;
pub mod ctl;
pub mod http;
pub mod import;
pub mod log;
pub mod metrics;
pub mod policy;
pub mod pool;
pub mod route;
pub mod rt;
pub mod state;
pub mod status;
pub mod worker;
