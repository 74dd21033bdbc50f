//! A global allocator that counts, for the tests that measure memory (each alone in its test
//! binary, so nothing else allocates while it counts): allocation calls, live bytes and the
//! peak of live bytes. Every call is forwarded unchanged to the system allocator.
#![allow(dead_code)] // each test binary reads the counters it needs

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

/// Counts what passes through; install with `#[global_allocator]`.
pub(crate) struct Counting;

/// Allocation calls (`alloc` and `realloc`).
pub(crate) static CALLS: AtomicUsize = AtomicUsize::new(0);
/// Bytes allocated and not yet freed.
pub(crate) static LIVE: AtomicUsize = AtomicUsize::new(0);
/// The highest `LIVE` since it was last reset.
pub(crate) static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counters only observe.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        CALLS.fetch_add(1, Relaxed);
        let now = LIVE.fetch_add(layout.size(), Relaxed) + layout.size();
        PEAK.fetch_max(now, Relaxed);
        // SAFETY: same layout, as the caller promised it to us.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: `ptr` came from `alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        CALLS.fetch_add(1, Relaxed);
        let now = if new_size >= layout.size() {
            LIVE.fetch_add(new_size - layout.size(), Relaxed) + (new_size - layout.size())
        } else {
            LIVE.fetch_sub(layout.size() - new_size, Relaxed) - (layout.size() - new_size)
        };
        PEAK.fetch_max(now, Relaxed);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
