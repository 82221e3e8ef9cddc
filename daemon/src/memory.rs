//! The process's global allocator: the C library's allocator for ordinary blocks, and
//! private anonymous mappings for large ones.
//!
//! Why: the static builds link zig's libc, whose `calloc` writes zeros over every block it
//! hands out. quinn allocates a 3 MB zeroed receive buffer for each endpoint at start, so an
//! idle daemon carried 3 MB of resident zeros (8.4 MB idle RSS instead of 5.4). A fresh
//! mapping reads as zeros without being touched; only the pages written later become
//! resident. Freeing a mapping also returns its memory to the system at once, which a
//! seedbox left running for months wants whatever libc it has.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ffi::c_void;
use std::num::NonZeroUsize;
use std::ptr::{self, NonNull};

use nix::sys::mman::{mmap_anonymous, mremap, munmap, MRemapFlags, MapFlags, ProtFlags};

/// Blocks of at least this size are mapped directly. glibc's own first threshold is 128 KiB;
/// above 256 KiB the system calls cost little next to filling the block, and the hot piece
/// buffers are pooled (`transfer::buffers`), so they are not mapped again for every piece.
pub const LARGE_BLOCK: usize = 256 * 1024;
/// A mapping starts on a page boundary, which satisfies any alignment up to the smallest
/// page size; stricter alignments stay with the C allocator.
const PAGE_ALIGN: usize = 4096;

pub struct MapLargeBlocks;

fn is_large(layout: Layout) -> bool {
    layout.size() >= LARGE_BLOCK && layout.align() <= PAGE_ALIGN
}

fn map(size: usize) -> *mut u8 {
    let Some(len) = NonZeroUsize::new(size) else {
        return ptr::null_mut();
    };
    let prot = ProtFlags::PROT_READ | ProtFlags::PROT_WRITE;
    // SAFETY: a new private anonymous mapping at an address the kernel picks aliases nothing.
    match unsafe { mmap_anonymous(None, len, prot, MapFlags::MAP_PRIVATE) } {
        Ok(block) => block.as_ptr().cast(),
        Err(_) => ptr::null_mut(),
    }
}

/// SAFETY: `block` must come from `map(size)` (or a `mremap` of it to `size`) and must not
/// be used afterwards.
unsafe fn unmap(block: *mut u8, size: usize) {
    if let Some(block) = NonNull::new(block.cast::<c_void>()) {
        // A failed unmap only leaks address space; nothing can be done about it here.
        let _ = unsafe { munmap(block, size) };
    }
}

// SAFETY: every block is released by the same kind of allocator that produced it, because
// `is_large` decides from the layout alone, and Rust hands the same layout to `dealloc`
// and `realloc` that the block was allocated with.
unsafe impl GlobalAlloc for MapLargeBlocks {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(layout) {
            map(layout.size())
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if is_large(layout) {
            map(layout.size())
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if is_large(layout) {
            unsafe { unmap(block, layout.size()) }
        } else {
            unsafe { System.dealloc(block, layout) }
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size`, rounded up to the alignment, fits isize.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (is_large(layout), is_large(new_layout)) {
            (false, false) => unsafe { System.realloc(block, layout, new_size) },
            (true, true) => {
                let Some(old) = NonNull::new(block.cast::<c_void>()) else {
                    return ptr::null_mut();
                };
                // On failure the old mapping is untouched, as `realloc` requires.
                match unsafe {
                    mremap(
                        old,
                        layout.size(),
                        new_size,
                        MRemapFlags::MREMAP_MAYMOVE,
                        None,
                    )
                } {
                    Ok(moved) => moved.as_ptr().cast(),
                    Err(_) => ptr::null_mut(),
                }
            }
            // Crossing the threshold: copy into the other kind of block.
            _ => unsafe {
                let new = self.alloc(new_layout);
                if !new.is_null() {
                    ptr::copy_nonoverlapping(block, new, layout.size().min(new_size));
                    self.dealloc(block, layout);
                }
                new
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout(size: usize) -> Layout {
        Layout::from_size_align(size, 8).unwrap()
    }

    fn fill(block: *mut u8, size: usize) {
        for i in 0..size {
            unsafe { block.add(i).write((i % 251) as u8) };
        }
    }

    fn check(block: *mut u8, size: usize) {
        for i in 0..size {
            assert_eq!(unsafe { block.add(i).read() }, (i % 251) as u8, "byte {i}");
        }
    }

    #[test]
    fn large_zeroed_blocks_are_zero_and_writable() {
        let size = 3 * LARGE_BLOCK + 17;
        unsafe {
            let block = MapLargeBlocks.alloc_zeroed(layout(size));
            assert!(!block.is_null());
            assert_eq!(
                block as usize % PAGE_ALIGN,
                0,
                "a mapped block is page aligned"
            );
            assert!((0..size).all(|i| block.add(i).read() == 0));
            fill(block, size);
            check(block, size);
            MapLargeBlocks.dealloc(block, layout(size));
        }
    }

    #[test]
    fn realloc_keeps_the_bytes_across_the_threshold_both_ways() {
        let small = LARGE_BLOCK / 2;
        let large = LARGE_BLOCK * 2;
        let larger = LARGE_BLOCK * 5 + 3;
        unsafe {
            let block = MapLargeBlocks.alloc(layout(small));
            fill(block, small);
            // small -> large: copied into a mapping
            let block = MapLargeBlocks.realloc(block, layout(small), large);
            assert!(!block.is_null());
            check(block, small);
            fill(block, large);
            // large -> larger: remapped, contents kept
            let block = MapLargeBlocks.realloc(block, layout(large), larger);
            assert!(!block.is_null());
            check(block, large);
            // larger -> small: copied back to the C allocator
            let block = MapLargeBlocks.realloc(block, layout(larger), small);
            assert!(!block.is_null());
            check(block, small);
            MapLargeBlocks.dealloc(block, layout(small));
        }
    }

    #[test]
    fn strict_alignments_and_small_blocks_stay_with_the_c_allocator() {
        assert!(!is_large(layout(LARGE_BLOCK - 1)));
        assert!(is_large(layout(LARGE_BLOCK)));
        let page_plus = Layout::from_size_align(LARGE_BLOCK * 2, PAGE_ALIGN * 4).unwrap();
        assert!(!is_large(page_plus));
        unsafe {
            let block = MapLargeBlocks.alloc(page_plus);
            assert!(!block.is_null());
            assert_eq!(block as usize % (PAGE_ALIGN * 4), 0);
            MapLargeBlocks.dealloc(block, page_plus);
        }
    }
}
