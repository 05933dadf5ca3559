//! Runtime pieces under every connection task of a worker: the deadline table and its
//! per-connection [`deadline::Timer`] (the only timer connections use), the I/O buffer pool,
//! a thread-local one-shot event, panic containment per task, and splice(2) forwarding.

pub mod backoff;
pub mod buffers;
pub mod deadline;
pub mod event;
pub mod splice;
pub mod unwind;
