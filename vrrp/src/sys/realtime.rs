//! `realtime = true`: the thread that repeats the masters' adverts (the daemon's pacer) runs
//! SCHED_RR at a fixed priority and the process memory is locked, so adverts leave on time
//! however many CPU-bound processes share the machine (the cause of false failovers at short
//! advert intervals is always a late master). keepalived only switches to realtime after a
//! timer was already 1 s late.
//!
//! SCHED_RESET_ON_FORK: anything the realtime thread would start runs at normal priority.

use std::io;

use nix::sys::mman::{mlockall, MlockAllFlags};

/// Low in the realtime range: above every normal process, below the kernel's own threads
/// (which run at 50) and below anything an administrator set up on purpose.
pub const RT_PRIORITY: i32 = 10;

/// Makes the calling thread SCHED_RR at [`RT_PRIORITY`] and locks the process's memory.
pub fn enter() -> io::Result<()> {
    let param = libc::sched_param {
        sched_priority: RT_PRIORITY,
    };
    // SAFETY: `param` is a valid sched_param for the duration of the call; pid 0 is this
    // thread; the kernel only reads it.
    let rc =
        unsafe { libc::sched_setscheduler(0, libc::SCHED_RR | libc::SCHED_RESET_ON_FORK, &param) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    mlockall(MlockAllFlags::MCL_CURRENT | MlockAllFlags::MCL_FUTURE)?;
    Ok(())
}
