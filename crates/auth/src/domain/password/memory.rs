//! Argon2's working memory, backed by transparent huge pages where the kernel offers
//! them.
//!
//! Argon2 reads a data-dependent block of its 19 MiB on every step. With 4 KiB pages
//! that is about 4,900 pages, more than the processor's TLB holds, so nearly every such
//! read also walks the page tables, and under sign-in load the rest of the machine
//! competes for the caches those walks read. Ten 2 MiB pages fit in the TLB.
//! `docs/auth.md` ("Passwords") has the measurements.
//!
//! The standard allocator cannot ask for huge pages: the mapping has to be aligned to
//! 2 MiB and advised (`madvise(MADV_HUGEPAGE)`) before its first touch, so this maps
//! anonymous memory itself, with `libc`. (`memmap2` maps and advises too, but neither
//! aligns to 2 MiB nor spares the unsafe cast of bytes to blocks.) Where the kernel has
//! no transparent huge pages (`/sys/kernel/mm/transparent_hugepage/enabled` set to
//! `never`, or another OS) the advice fails or is ignored and the buffer is ordinary
//! memory.

// The workspace refuses `unsafe` (Cargo.toml); this module maps memory itself.
#![allow(unsafe_code)]

use std::{ops, ptr::NonNull};

use argon2::Block;

/// The size of a transparent huge page on x86-64 (and on arm64 with 4 KiB pages).
const HUGE_PAGE: usize = 2 << 20;

/// Zeroed memory for `len` Argon2 blocks, owned by one hashing thread.
pub struct Memory {
    /// The first block, at a 2 MiB boundary inside the mapping.
    blocks: NonNull<Block>,
    len: usize,
    /// The whole mapping, for `munmap`.
    mapping: NonNull<libc::c_void>,
    mapping_len: usize,
}

// SAFETY: `Memory` owns its mapping outright (nothing else holds a pointer into it),
// like a `Box<[Block]>`, and `Block` is plain data.
unsafe impl Send for Memory {}

impl Memory {
    pub fn new(len: usize) -> std::io::Result<Self> {
        let bytes = len.checked_mul(size_of::<Block>()).ok_or(std::io::ErrorKind::OutOfMemory)?.max(1);
        let advised_len = bytes.next_multiple_of(HUGE_PAGE);
        // One huge page more than needed, so that a 2 MiB boundary falls inside it.
        let mapping_len = advised_len + HUGE_PAGE;
        // SAFETY: a fresh private anonymous mapping; no existing memory is affected.
        let mapping = unsafe {
            libc::mmap(std::ptr::null_mut(), mapping_len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_PRIVATE | libc::MAP_ANONYMOUS, -1, 0)
        };
        if mapping == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        let mapping = NonNull::new(mapping).ok_or(std::io::ErrorKind::OutOfMemory)?;
        let offset = mapping.as_ptr().cast::<u8>().align_offset(HUGE_PAGE);
        // SAFETY: `offset < HUGE_PAGE`, so `offset + advised_len <= mapping_len`: the
        // advised range lies inside the mapping. A failure (no transparent huge pages
        // in this kernel) leaves ordinary pages, which is correct, only slower.
        let start = unsafe { mapping.as_ptr().cast::<u8>().add(offset) };
        let _ = unsafe { libc::madvise(start.cast(), advised_len, libc::MADV_HUGEPAGE) };
        let blocks = NonNull::new(start.cast::<Block>()).ok_or(std::io::ErrorKind::OutOfMemory)?;
        Ok(Self { blocks, len, mapping, mapping_len })
    }
}

impl ops::Deref for Memory {
    type Target = [Block];

    fn deref(&self) -> &[Block] {
        // SAFETY: `blocks` is aligned to 2 MiB (more than `Block`'s 64 bytes), the
        // `len` blocks lie inside the mapping, anonymous memory starts zeroed and a
        // zeroed `Block` is a valid one (`Block::default()`), and `&self` keeps the
        // mapping alive.
        unsafe { std::slice::from_raw_parts(self.blocks.as_ptr(), self.len) }
    }
}

impl ops::DerefMut for Memory {
    fn deref_mut(&mut self) -> &mut [Block] {
        // SAFETY: as in `deref`; `&mut self` makes the borrow unique.
        unsafe { std::slice::from_raw_parts_mut(self.blocks.as_ptr(), self.len) }
    }
}

impl Drop for Memory {
    fn drop(&mut self) {
        // SAFETY: the mapping came from `mmap` with this length and no borrow of it
        // outlives `self`.
        unsafe { libc::munmap(self.mapping.as_ptr(), self.mapping_len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_zeroed_aligned_and_keeps_what_is_written() {
        let mut memory = Memory::new(19 * 1024).unwrap();
        assert_eq!(memory.len(), 19 * 1024);
        assert_eq!(memory.as_ptr().cast::<u8>().align_offset(HUGE_PAGE), 0);
        assert!(memory.iter().all(|block| block.as_ref().iter().all(|&word| word == 0)));
        let last = memory.len() - 1;
        memory[last].as_mut()[127] = 7;
        memory[0].as_mut()[0] = 9;
        assert_eq!((memory[0].as_ref()[0], memory[last].as_ref()[127]), (9, 7));
    }
}
