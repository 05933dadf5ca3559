//! Runtime pieces under every connection task of a worker: the deadline table and its
//! per-connection [`deadline::Timer`] (the only timer connections use), the I/O buffer pool,
//! a thread-local one-shot event, panic containment per task, splice(2) forwarding, and
//! waking another worker.

pub mod backoff;
pub mod buffers;
pub mod deadline;
pub mod event;
pub mod splice;
pub mod unwind;
pub mod wakeup;
