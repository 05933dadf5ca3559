//! Load benchmarks for the proxy: a fast loopback backend, process-tree accounting from /proc,
//! configs for nginx / HAProxy / our proxy, a wrk driver and parser, idle keep-alive connections,
//! and the markdown + SVG report. `loadbench` (src/bin) wires them together.
//!
//! Everything talks to 127.0.0.1 only, and every load is bounded in time.

pub mod backend;
pub mod backends;
pub mod idle;
pub mod procfs;
pub mod report;
pub mod targets;
pub mod wrk;

use std::fmt;

/// What went wrong, and while doing what.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Other(String),
}

pub type Result<T> = std::result::Result<T, BenchError>;

/// Attach what was being done to an I/O error.
pub trait Context<T> {
    fn ctx(self, what: impl fmt::Display) -> Result<T>;
}

impl<T> Context<T> for std::io::Result<T> {
    fn ctx(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|source| BenchError::Io {
            what: what.to_string(),
            source,
        })
    }
}
