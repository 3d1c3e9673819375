// SPDX-License-Identifier: GPL-2.0-only

//! `/dev/shmrb0`: the same block store as a blk-mq block device, so filesystems (ext4 in the
//! VM suite) run on verified shmr shards.
//!
//! The Rust block layer of 7.3 (`kernel::block::mq`) registers the disk and completes
//! requests, but gives no access to a request's data. `transfer` reads the request's bios and
//! their segments through the C structures directly (`struct request`, `struct bio`,
//! `struct bio_vec`), the way `rq_for_each_segment` does, with a `SAFETY` comment on each
//! step. Requests run synchronously in `queue_rq` (which may not sleep): new blocks are
//! allocated with `GFP_NOWAIT`, and a failed allocation asks blk-mq to retry.

use crate::store::Store;
use kernel::{
    bindings,
    block::mq::{
        self,
        gen_disk::{GenDisk, GenDiskBuilder},
        Operations, TagSet,
    },
    prelude::*,
    sync::{aref::ARef, Arc, ArcBorrow},
};

/// Bytes of a sector, the unit of `__sector`.
const SECTOR_BYTES: u64 = 512;
/// `REQ_OP_MASK`: the operation is the low 8 bits of `cmd_flags` (`REQ_OP_BITS`).
const REQ_OP_MASK: u32 = (1 << 8) - 1;
/// Requests in flight.
const QUEUE_DEPTH: u32 = 64;

/// The registered disk; dropping it removes `/dev/shmrb0`.
pub(crate) struct Disk {
    _disk: GenDisk<ShmrBlock>,
}

// SAFETY: `GenDisk` owns a `struct gendisk` and an `Arc<TagSet>`; 7.3 declares neither `Send`
// nor `Sync` only because `TagSet` wraps C pointers. The block layer synchronizes its own use
// of both, and the Rust side touches them once more, in `GenDisk::drop` at module exit, from
// whichever thread unloads the module: moving the owner across threads is sound.
unsafe impl Send for Disk {}
// SAFETY: `Disk` has no methods taking `&self`: a shared reference gives access to nothing.
unsafe impl Sync for Disk {}

impl Disk {
    /// Registers `/dev/shmrb0` over `store`: 4 KiB logical blocks, the store's size.
    pub(crate) fn register(store: Arc<Store>) -> Result<Self> {
        let size_bytes = store.config().size_bytes;
        let tagset = Arc::pin_init(TagSet::new(1, QUEUE_DEPTH, 1), GFP_KERNEL)?;
        let disk = GenDiskBuilder::new()
            .capacity_sectors(size_bytes / SECTOR_BYTES)
            .logical_block_size(4096)?
            .physical_block_size(4096)?
            .rotational(false)
            .build(fmt!("shmrb0"), tagset, store)?;
        Ok(Self { _disk: disk })
    }
}

/// The blk-mq operations of `/dev/shmrb0`.
pub(crate) struct ShmrBlock;

#[vtable]
impl Operations for ShmrBlock {
    type QueueData = Arc<Store>;

    fn queue_rq(
        store: ArcBorrow<'_, Store>,
        rq: ARef<mq::Request<Self>>,
        _is_last: bool,
    ) -> Result {
        let request = core::ptr::from_ref::<mq::Request<Self>>(&rq)
            .cast_mut()
            .cast::<bindings::request>();
        // SAFETY: `mq::Request<T>` is a transparent wrapper of `struct request`, and `rq`
        // keeps the request alive and owned by this driver until it is ended below.
        unsafe { transfer(&store, request) }?;
        // The block layer holds no other `ARef` to a request while the driver has it, so
        // this cannot fail; if it did, the error ends the request with an I/O error.
        mq::Request::end_ok(rq).map_err(|_| EIO)
    }

    fn commit_rqs(_store: ArcBorrow<'_, Store>) {}

    fn complete(rq: ARef<mq::Request<Self>>) {
        // Never reached: requests end in `queue_rq`. Ending here is still correct.
        let _ = mq::Request::end_ok(rq);
    }
}

/// Moves the data of `request` between its pages and the store.
///
/// # Safety
///
/// `request` points to a started request owned by this driver, whose bios and pages stay
/// valid until the request is ended.
unsafe fn transfer(store: &Store, request: *mut bindings::request) -> Result {
    // SAFETY: `request` is valid, by the function's safety requirements.
    let (flags, sector, mut bio) =
        unsafe { ((*request).cmd_flags, (*request).__sector, (*request).bio) };
    let is_write = match flags & REQ_OP_MASK {
        bindings::req_op_REQ_OP_READ => false,
        bindings::req_op_REQ_OP_WRITE => true,
        // Writes are synchronous: a flush has nothing left to do.
        bindings::req_op_REQ_OP_FLUSH => return Ok(()),
        _ => return Err(EOPNOTSUPP),
    };
    let mut position = sector * SECTOR_BYTES;
    while !bio.is_null() {
        // SAFETY: `bio` is a bio of `request`, valid until it ends (safety requirements);
        // its `bi_iter` says which part of `bi_io_vec` is still to be transferred.
        let (iter, vectors) = unsafe { ((*bio).bi_iter, (*bio).bi_io_vec) };
        let mut remaining = iter.bi_size as usize;
        let mut index = iter.bi_idx as usize;
        let mut skip = iter.bi_offset as usize;
        while remaining > 0 {
            // SAFETY: while bytes remain, `index` is within the bio's vector (the block layer
            // built `bi_size` from these entries).
            let vector = unsafe { *vectors.add(index) };
            let length = (vector.bv_len as usize - skip).min(remaining);
            // SAFETY: the segment's pages hold `bv_offset + bv_len` bytes, of which we take
            // `[bv_offset + skip, + length)`.
            unsafe { transfer_segment(store, &vector, skip, length, position, is_write) }?;
            position += length as u64;
            remaining -= length;
            skip = 0;
            index += 1;
        }
        // SAFETY: as above; `bi_next` links the bios of the request.
        bio = unsafe { (*bio).bi_next };
    }
    Ok(())
}

/// Moves `length` bytes at `skip` into the segment `vector`, page by page.
///
/// # Safety
///
/// `vector` describes pages valid for `bv_offset + skip + length` bytes, physically contiguous
/// (a multi-page segment), not accessed by anyone else during the request.
unsafe fn transfer_segment(
    store: &Store,
    vector: &bindings::bio_vec,
    skip: usize,
    length: usize,
    position: u64,
    is_write: bool,
) -> Result {
    let page_bytes = bindings::PAGE_SIZE;
    let mut offset = vector.bv_offset as usize + skip;
    let mut done = 0;
    while done < length {
        let in_page = offset % page_bytes;
        let chunk = (length - done).min(page_bytes - in_page);
        // SAFETY: the segment's pages are contiguous, so the page holding `offset` is
        // `offset / PAGE_SIZE` pages after `bv_page` (SPARSEMEM_VMEMMAP: `nth_page`).
        let page = unsafe { vector.bv_page.add(offset / page_bytes) };
        // SAFETY: `page` is a valid page of the request; the mapping is undone below.
        let address = unsafe { bindings::kmap_local_page(page) }.cast::<u8>();
        // SAFETY: `address` maps the whole page, so `[in_page, in_page + chunk)` is valid, and
        // nothing else touches the request's pages while the driver owns the request.
        let bytes = unsafe { core::slice::from_raw_parts_mut(address.add(in_page), chunk) };
        let at = position + done as u64;
        let result = if is_write {
            store.write_span(at, bytes, GFP_NOWAIT)
        } else {
            store.read_span(at, bytes)
        };
        // SAFETY: `address` came from `kmap_local_page` just above, unmapped once.
        unsafe { bindings::kunmap_local(address.cast::<c_void>()) };
        result?;
        offset += chunk;
        done += chunk;
    }
    Ok(())
}
