//! Heap allocations per broadcast message do not grow with the number of members: the message
//! is serialised and encoded once, and each member gets a reference-counted clone. Measured with
//! a counting allocator, not a clock.
#![allow(unsafe_code, clippy::unwrap_used)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;

use chatd::hub::{outbox, Hub, Me};

struct Counting;

static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator; the counter has no effect
// on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Relaxed);
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations per message for a room of `members`, in steady state.
fn allocations_per_message(members: usize) -> f64 {
    let hub = Hub::new(200, 10, 1 << 20, Arc::default());
    let drain = |inboxes: &mut Vec<chatd::hub::Inbox>| {
        for inbox in inboxes.iter_mut() {
            while let Ok(frame) = inbox.rx.try_recv() {
                inbox.taken(&frame);
            }
        }
    };
    let mut inboxes = Vec::new();
    let mut outboxes = Vec::new();
    for id in 0..members as u64 {
        let (out, inbox) = outbox(256, 1 << 20);
        outboxes.push(out);
        inboxes.push(inbox);
        let nick = format!("m{id}");
        hub.join(&Me { id, nick: &nick, outbox: &outboxes[id as usize], deflate: false }, "room", None).unwrap();
        if id % 100 == 99 {
            drain(&mut inboxes); // join notices, so nobody's queue overflows
        }
    }
    drain(&mut inboxes);
    // Warm up: fill the history ring and cycle every channel's blocks once.
    for i in 0..300 {
        hub.say(0, "room", &format!("warm {i}")).unwrap();
        drain(&mut inboxes);
    }
    let before = ALLOCATIONS.load(Relaxed);
    let rounds = 100;
    for i in 0..rounds {
        hub.say(0, "room", &format!("message {i:05}")).unwrap();
        drain(&mut inboxes);
    }
    (ALLOCATIONS.load(Relaxed) - before) as f64 / f64::from(rounds)
}

#[test]
fn allocations_per_broadcast_do_not_grow_with_members() {
    let small = allocations_per_message(10);
    let large = allocations_per_message(10_000);
    println!("allocations per message: {small} with 10 members, {large} with 10,000");
    assert!(large <= small + 1.0, "{small} allocations per message with 10 members, {large} with 10,000");
}
