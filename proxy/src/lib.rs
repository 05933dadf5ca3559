//! `proxy`: a thread-per-core io_uring HTTP/1.1 reverse proxy and load balancer.
//!
//! Pure logic (config validation, HTTP parsing and framing, balancing) lives in modules without
//! I/O so it can be unit-tested and fuzzed; `worker`, `forward`, `pool`, `admin` and `log` are the
//! thin I/O shell around it.

pub mod admin;
pub mod balance;
pub mod config;
pub mod forward;
pub mod http;
pub mod import;
pub mod log;
pub mod metrics;
pub mod pool;
pub mod worker;
pub mod zerocopy;
