//! [`BufferPool`]: a worker's free list of connection I/O buffers.

use std::cell::{Cell, RefCell};

/// Size of a pooled I/O buffer.
pub const BUFFER_SIZE: usize = 16 * 1024;
/// Buffers kept for reuse (16 requests in flight); more are freed, so a burst of connections
/// does not pin memory.
const POOL_KEEP: usize = 64;

/// Per-worker free list of I/O buffers: requests take them, idle connections give them back,
/// so neither a request nor an idle connection pays for an allocation in the steady state.
#[derive(Default)]
pub struct BufferPool {
    free: RefCell<Vec<Vec<u8>>>,
    /// Buffers freed to the allocator since the last trim.
    dropped: Cell<usize>,
}

impl BufferPool {
    pub fn take(&self) -> Vec<u8> {
        self.free
            .borrow_mut()
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(BUFFER_SIZE))
    }

    pub fn give(&self, mut buf: Vec<u8>) {
        // Only ordinary buffers go back: one that grew for a large head or body is freed.
        if buf.capacity() < BUFFER_SIZE || buf.capacity() > 4 * BUFFER_SIZE {
            return;
        }
        let mut free = self.free.borrow_mut();
        if free.len() < POOL_KEEP {
            buf.clear();
            free.push(buf);
        } else {
            self.dropped.set(self.dropped.get() + 1);
        }
    }

    /// After a burst, hand the freed buffers' memory back to the OS: glibc keeps freed heap
    /// chunks of this size resident otherwise, and idle connections would seem to cost it.
    pub fn trim(&self) {
        if self.dropped.replace(0) > 0 {
            // SAFETY: malloc_trim only releases free heap memory; it touches no live allocation.
            unsafe {
                libc::malloc_trim(0);
            }
        }
    }
}
