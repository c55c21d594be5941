//! Decompression is bounded by the length the file announces: a small, checksum-valid
//! checkpoint whose body expands far past its header's `raw_len` is refused after at most
//! `raw_len + 1` bytes, not after inflating all of it (found while fuzzing checkpoint decoding:
//! 32 KiB of checkpoint made open allocate 1 GiB before refusing it).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

/// The system allocator, remembering the largest single allocation.
struct LargestAllocation;

static LARGEST: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to the system allocator.
#[allow(unsafe_code)]
unsafe impl GlobalAlloc for LargestAllocation {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LARGEST.fetch_max(layout.size(), Ordering::Relaxed);
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LARGEST.fetch_max(new_size, Ordering::Relaxed);
        // SAFETY: forwarded with the caller's pointer, layout and size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: LargestAllocation = LargestAllocation;

#[test]
fn checkpoint_body_is_not_inflated_past_its_announced_length() {
    const EXPANDS_TO: usize = 64 << 20;
    let body = vec![0u8; EXPANDS_TO];
    let mut file = strata::fuzzing::checkpoint_file(&body, 24, 1);
    drop(body);
    // Announce 100 bytes and seal the header again: the file is checksum-valid.
    file[40..48].copy_from_slice(&100u64.to_le_bytes());
    let crc = crc32fast::hash(&file[..60]);
    file[60..64].copy_from_slice(&crc.to_le_bytes());
    LARGEST.store(0, Ordering::Relaxed);
    let result = strata::fuzzing::decode_checkpoint(&file);
    let largest = LARGEST.load(Ordering::Relaxed);
    assert!(result.is_err(), "a body longer than announced was accepted");
    assert!(largest < EXPANDS_TO / 8, "decoding a {}-byte checkpoint allocated {largest} bytes at once", file.len());
}
