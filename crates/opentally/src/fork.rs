//! Fork safety. A forked child has a copy of its parent's memory but only the thread that
//! called `fork`: the worker is gone, and a lock it held stays held forever. A `pthread_atfork`
//! handler counts forks in the child; each client compares that count with its own on every
//! event (one atomic load) and, when it moved, starts over with a fresh queue and worker. The
//! parent's queued events are not the child's to send: the parent sends them.
#![allow(unsafe_code)]

use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

static FORKS: AtomicU64 = AtomicU64::new(0);
static REGISTER: Once = Once::new();

extern "C" fn in_child() {
    // Only an atomic store: a fork handler may run in a child where no lock is safe to take.
    FORKS.fetch_add(1, Ordering::SeqCst);
}

/// Registers the handler once per process.
pub fn register() {
    REGISTER.call_once(|| {
        #[cfg(unix)]
        // SAFETY: `pthread_atfork` only records the function pointers; `in_child` is an
        // `extern "C"` function with no arguments that performs one atomic operation, which is
        // async-signal-safe as the child handler requires. Passing null for the prepare and
        // parent handlers is allowed.
        unsafe {
            libc::pthread_atfork(None, None, Some(in_child));
        }
    });
}

/// How many times this process is removed from the process that first loaded the library.
pub fn epoch() -> u64 {
    FORKS.load(Ordering::Relaxed)
}
