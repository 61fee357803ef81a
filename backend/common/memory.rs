//! Handing freed memory back to the system once the service is idle.
//!
//! mimalloc (the global allocator, see `lib.rs`) keeps freed pages in the
//! heap of the thread that allocated them, and only that thread can collect
//! its heap. So a trim is a request that every long-lived thread honours the
//! next time it goes idle: runtime worker threads when they park, the
//! journal writer and Lua threads between their waits. Threads that stay
//! busy are, by definition, not idle, and keep their pages for the work.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Raised by every trim request.
static TRIM_EPOCH: AtomicU64 = AtomicU64::new(0);

thread_local! {
    /// The last request this thread honoured.
    static HONOURED_EPOCH: Cell<u64> = const { Cell::new(0) };
}

/// Asks every thread to hand its freed memory back when it next goes idle,
/// and does so at once for the calling thread and for glibc's arenas
/// (what C libraries such as SQLite allocate with malloc).
pub fn trim() {
    let epoch = TRIM_EPOCH.fetch_add(1, Ordering::Relaxed) + 1;
    HONOURED_EPOCH.with(|honoured| honoured.set(epoch));
    collect_this_thread();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free pages of glibc's own arenas;
    // it takes their locks and is safe to call from any thread.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// Called by long-lived threads as they go idle (a runtime's
/// `on_thread_park`, a loop's wait): collects this thread's heap if a trim
/// was asked since it last did. One atomic load otherwise.
pub fn collect_if_asked() {
    let epoch = TRIM_EPOCH.load(Ordering::Relaxed);
    if HONOURED_EPOCH.with(|honoured| honoured.replace(epoch)) != epoch {
        collect_this_thread();
    }
}

/// Returns the calling thread's freed memory at once (after a burst that
/// is known to have allocated much, such as a password hash).
pub fn collect_this_thread() {
    // SAFETY: mi_collect only returns the calling thread's free pages (and
    // abandoned ones) to the system; any thread may call it.
    unsafe {
        libmimalloc_sys::mi_collect(true);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thread_collects_once_per_request() {
        // Each thread starts having honoured nothing; what matters is that
        // a request is honoured once, then not again until the next one.
        std::thread::spawn(|| {
            collect_if_asked();
            let seen = HONOURED_EPOCH.with(Cell::get);
            assert_eq!(seen, TRIM_EPOCH.load(Ordering::Relaxed));
            std::thread::spawn(trim).join().unwrap();
            assert!(TRIM_EPOCH.load(Ordering::Relaxed) > seen);
            collect_if_asked();
            assert_eq!(
                HONOURED_EPOCH.with(Cell::get),
                TRIM_EPOCH.load(Ordering::Relaxed)
            );
        })
        .join()
        .unwrap();
    }
}
