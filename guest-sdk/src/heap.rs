//! The component's memory allocator: dlmalloc, as before, but given its heap
//! a page at a time (the default `paged-heap` feature).
//!
//! wasi-libc's `malloc` takes the whole initial heap, from the end of the data
//! to the end of the linear memory's initial size, as one free chunk, and
//! writes a boundary word at its far end. That end is a 64 KiB boundary, so
//! every instance touched a 4 KiB page for that one word: for each waiting
//! request and each open websocket session, a page it never used. Here the
//! same allocator (the `dlmalloc` crate, a port of the same code) gets the
//! heap in pages from where the data ends, and grows the memory only past its
//! initial size, so an instance touches only the pages its heap reaches.
//!
//! Rust allocations come here through the global allocator below; C code in
//! wasi-libc (environment, preopens, directory reads) through `malloc` and
//! its kin, defined here so that the linker leaves wasi-libc's out. One
//! allocator must own the heap: two would hand out the same memory. Nothing
//! else in a component grows the memory.

use core::alloc::{GlobalAlloc, Layout};
use core::arch::wasm32;
use core::cell::UnsafeCell;
use core::ptr;

/// The step in which the heap takes memory (a host page).
const STEP: usize = 4096;

/// The size of a WebAssembly page, in which the memory grows.
const WASM_PAGE: usize = 65_536;

/// What C's `malloc` promises: alignment for any type (`max_align_t`).
const C_ALIGN: usize = 16;

unsafe extern "C" {
    /// Where the linker ends the data and starts the heap.
    static __heap_base: u8;
}

/// Hands dlmalloc the linear memory past the data, [`STEP`] bytes at a time.
struct Pages {
    /// The first byte not yet handed out; 0 until the first call.
    next: UnsafeCell<usize>,
}

// SAFETY: hands out each byte of memory once, in increasing addresses, and
// takes nothing back, as `dlmalloc::Allocator` allows.
unsafe impl dlmalloc::Allocator for Pages {
    fn alloc(&self, size: usize) -> (*mut u8, usize, u32) {
        // SAFETY: a component runs one thread, so nothing else reads or
        // writes `next` meanwhile.
        let next = unsafe { &mut *self.next.get() };
        if *next == 0 {
            *next = &raw const __heap_base as usize;
        }
        let start = *next;
        let Some(end) = start
            .checked_add(size)
            .and_then(|end| end.checked_next_multiple_of(STEP))
        else {
            return (ptr::null_mut(), 0, 0);
        };
        let have = wasm32::memory_size(0) * WASM_PAGE;
        if end > have && wasm32::memory_grow(0, (end - have).div_ceil(WASM_PAGE)) == usize::MAX {
            return (ptr::null_mut(), 0, 0);
        }
        *next = end;
        (start as *mut u8, end - start, 0)
    }

    fn remap(&self, _: *mut u8, _: usize, _: usize, _: bool) -> *mut u8 {
        ptr::null_mut()
    }

    fn free_part(&self, _: *mut u8, _: usize, _: usize) -> bool {
        false
    }

    fn free(&self, _: *mut u8, _: usize) -> bool {
        false
    }

    fn can_release_part(&self, _: u32) -> bool {
        false
    }

    fn allocates_zeros(&self) -> bool {
        // Memory past the data is zero in a fresh instance, and so is memory
        // the instance grows.
        true
    }

    fn page_size(&self) -> usize {
        STEP
    }
}

/// The one heap of the component.
struct Heap(UnsafeCell<dlmalloc::Dlmalloc<Pages>>);

// SAFETY: a component runs one thread.
unsafe impl Sync for Heap {}

static HEAP: Heap = Heap(UnsafeCell::new({
    let mut heap = dlmalloc::Dlmalloc::new_with_allocator(Pages {
        next: UnsafeCell::new(0),
    });
    // dlmalloc asks for what it needs, and `Pages` rounds up to the end of a
    // page: rounding in dlmalloc too would take a page past the one the
    // heap starts in on the first call.
    assert!(heap.set_granularity(C_ALIGN));
    heap
}));

/// The heap, for one call.
///
/// # Safety
/// The caller holds no other reference from an earlier call: calls into the
/// heap do not nest (it calls nothing that allocates).
unsafe fn heap() -> &'static mut dlmalloc::Dlmalloc<Pages> {
    // SAFETY: one thread, and the caller's promise that calls do not nest.
    unsafe { &mut *HEAP.0.get() }
}

/// Rust's allocations.
struct Global;

#[global_allocator]
static GLOBAL: Global = Global;

// SAFETY: forwards to dlmalloc, which keeps `GlobalAlloc`'s contract.
unsafe impl GlobalAlloc for Global {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { heap().malloc(layout.size(), layout.align()) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { heap().calloc(layout.size(), layout.align()) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { heap().free(ptr, layout.size(), layout.align()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded with the caller's guarantees.
        unsafe { heap().realloc(ptr, layout.size(), layout.align(), new_size) }
    }
}

// C's allocations. C frees without a size, so each C block is preceded by
// two words: its size, and its alignment, which is also how far it starts
// past the dlmalloc block it lies in.

/// Allocates `size` bytes aligned to `align` (a power of two, at least
/// [`C_ALIGN`]) for C, or null.
///
/// # Safety
/// `align` is a power of two.
unsafe fn c_alloc(size: usize, align: usize, zeroed: bool) -> *mut u8 {
    let align = align.max(C_ALIGN);
    let Some(total) = size.checked_add(align) else {
        return ptr::null_mut();
    };
    // SAFETY: `align` is a power of two, as dlmalloc needs.
    let block = unsafe {
        if zeroed {
            heap().calloc(total, align)
        } else {
            heap().malloc(total, align)
        }
    };
    if block.is_null() {
        return block;
    }
    // SAFETY: `block` holds `align + size` bytes, so the pointer handed out
    // and its header both lie inside it.
    unsafe {
        let user = block.add(align);
        user.cast::<usize>().sub(2).write(size);
        user.cast::<usize>().sub(1).write(align);
        user
    }
}

/// The size, alignment and dlmalloc block of a C block.
///
/// # Safety
/// `user` came from [`c_alloc`] and is not freed.
unsafe fn c_block(user: *mut u8) -> (usize, usize, *mut u8) {
    // SAFETY: `c_alloc` wrote both words just before `user`.
    unsafe {
        let size = user.cast::<usize>().sub(2).read();
        let align = user.cast::<usize>().sub(1).read();
        (size, align, user.sub(align))
    }
}

/// Frees a C block.
///
/// # Safety
/// `user` came from [`c_alloc`] and is not freed.
unsafe fn c_free(user: *mut u8) {
    // SAFETY: the caller's promise; the block goes back with the layout it
    // was allocated with.
    unsafe {
        let (size, align, block) = c_block(user);
        heap().free(block, size + align, align);
    }
}

/// C's `malloc`.
///
/// # Safety
/// As C's `malloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc(size: usize) -> *mut u8 {
    // SAFETY: `C_ALIGN` is a power of two.
    unsafe { c_alloc(size, C_ALIGN, false) }
}

/// C's `calloc`.
///
/// # Safety
/// As C's `calloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn calloc(count: usize, size: usize) -> *mut u8 {
    match count.checked_mul(size) {
        // SAFETY: `C_ALIGN` is a power of two.
        Some(total) => unsafe { c_alloc(total, C_ALIGN, true) },
        None => ptr::null_mut(),
    }
}

/// C's `free`.
///
/// # Safety
/// As C's `free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn free(user: *mut u8) {
    if !user.is_null() {
        // SAFETY: C's contract: `user` came from this file's functions.
        unsafe { c_free(user) }
    }
}

/// C's `realloc`.
///
/// # Safety
/// As C's `realloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn realloc(user: *mut u8, size: usize) -> *mut u8 {
    if user.is_null() {
        // SAFETY: as `malloc`.
        return unsafe { malloc(size) };
    }
    // SAFETY: C's contract: `user` came from this file's functions and is
    // live; it is freed only once the copy succeeded.
    unsafe {
        let (old_size, align, _) = c_block(user);
        let new = c_alloc(size, align, false);
        if !new.is_null() {
            ptr::copy_nonoverlapping(user, new, old_size.min(size));
            c_free(user);
        }
        new
    }
}

/// C's `aligned_alloc`.
///
/// # Safety
/// As C's `aligned_alloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn aligned_alloc(align: usize, size: usize) -> *mut u8 {
    if !align.is_power_of_two() {
        return ptr::null_mut();
    }
    // SAFETY: `align` is a power of two.
    unsafe { c_alloc(size, align, false) }
}

/// C's `posix_memalign`.
///
/// # Safety
/// As C's `posix_memalign`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn posix_memalign(out: *mut *mut u8, align: usize, size: usize) -> i32 {
    const EINVAL: i32 = 28;
    const ENOMEM: i32 = 48;
    if !align.is_power_of_two() || !align.is_multiple_of(size_of::<usize>()) {
        return EINVAL;
    }
    // SAFETY: `align` is a power of two.
    let user = unsafe { c_alloc(size, align, false) };
    if user.is_null() {
        return ENOMEM;
    }
    // SAFETY: C's contract: `out` is writable.
    unsafe { out.write(user) };
    0
}

/// C's `malloc_usable_size`.
///
/// # Safety
/// As C's `malloc_usable_size`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn malloc_usable_size(user: *mut u8) -> usize {
    if user.is_null() {
        return 0;
    }
    // SAFETY: C's contract: `user` came from this file's functions.
    unsafe { c_block(user).0 }
}

/// wasi-libc's internal name for `malloc`.
///
/// # Safety
/// As C's `malloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_malloc(size: usize) -> *mut u8 {
    // SAFETY: as `malloc`.
    unsafe { malloc(size) }
}

/// wasi-libc's internal name for `calloc`.
///
/// # Safety
/// As C's `calloc`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_calloc(count: usize, size: usize) -> *mut u8 {
    // SAFETY: as `calloc`.
    unsafe { calloc(count, size) }
}

/// wasi-libc's internal name for `free`.
///
/// # Safety
/// As C's `free`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn __libc_free(user: *mut u8) {
    // SAFETY: as `free`.
    unsafe { free(user) }
}
