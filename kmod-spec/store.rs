// SPDX-License-Identifier: GPL-2.0-only

//! The in-kernel shmr block store behind `/dev/shmr` and `/dev/shmrb0`.
//!
//! The device is cut into blocks of `block_bytes`. A block that was never written reads as
//! zeros and holds no memory. A written block is held as one shard per copy (Single: one,
//! Mirror: two), each a complete shard file in RAM: the generated header, the chunk checksum
//! table, padding and the payload, exactly as shmr writes shard files to disk.
//!
//! Every read verifies the shard it reads from (header checksum and fields, chunk table
//! checksum, the identity of the block, the checksum of every chunk it returns) and falls back
//! to the next copy; when no copy verifies, the read fails with `EIO`, never with wrong data.
//! A partial write verifies the whole block first, so a damaged block is never re-checksummed
//! into a valid-looking one.
//!
//! # Invariants
//!
//! - `blocks[i]` is `None` or holds `copies` shards of `payload_offset + block_bytes` bytes.
//! - A block's `generation` is the generation its shards' headers were last written with.

use crate::layout::{Compression, Topology};
use crate::shard::{self, ShardIdentity, CHUNK_BYTES};
use kernel::{
    alloc::Flags,
    new_spinlock,
    prelude::*,
    sync::{Arc, SpinLock},
};

/// The inode number written into every shard header: the device is shmr's file 1.
const DEVICE_INO: u64 = 1;
/// Smallest and largest block sizes: shmr's `BLOCK_BYTES_MIN`, and what kmalloc serves.
const BLOCK_BYTES_MIN: u32 = 4096;
const BLOCK_BYTES_MAX: u32 = 1 << 20;

/// How the store is laid out; fixed at load by the module parameters.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Config {
    pub(crate) size_bytes: u64,
    pub(crate) block_bytes: u32,
    pub(crate) topology: Topology,
}

impl Config {
    /// Checks the module parameters.
    ///
    /// # Errors
    ///
    /// `EINVAL` for a topology other than Single or Mirror, a block size that is not a multiple
    /// of 4096 in [4 KiB, 1 MiB], or a size that is not a positive multiple of the block size.
    pub(crate) fn new(size_mib: u64, block_bytes: u32, topology: u32) -> Result<Self> {
        let topology = match Topology::try_from(u8::try_from(topology).map_err(|_| EINVAL)?) {
            Ok(topology @ (Topology::Single | Topology::Mirror)) => topology,
            _ => return Err(EINVAL),
        };
        if !(BLOCK_BYTES_MIN..=BLOCK_BYTES_MAX).contains(&block_bytes)
            || block_bytes % CHUNK_BYTES != 0
        {
            return Err(EINVAL);
        }
        let size_bytes = size_mib.checked_mul(1 << 20).ok_or(EINVAL)?;
        if size_bytes == 0 || size_bytes % u64::from(block_bytes) != 0 {
            return Err(EINVAL);
        }
        Ok(Self {
            size_bytes,
            block_bytes,
            topology,
        })
    }

    /// Shards per block: 1 for Single, 2 for Mirror.
    pub(crate) fn copies(&self) -> usize {
        match self.topology {
            Topology::Mirror => 2,
            _ => 1,
        }
    }

    fn block_count(&self) -> usize {
        (self.size_bytes / u64::from(self.block_bytes)) as usize
    }

    /// Bytes of one shard file: prefix and a whole block of payload.
    fn shard_bytes(&self) -> usize {
        self.payload_offset() + self.block_bytes as usize
    }

    fn payload_offset(&self) -> usize {
        shard::geometry(u64::from(self.block_bytes), u64::from(CHUNK_BYTES)).payload_offset as usize
    }
}

/// One written block: a shard per copy.
struct Block {
    generation: u64,
    shards: KVec<KVVec<u8>>,
}

/// What a corrupt request damages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum CorruptTarget {
    /// A payload byte (caught by the chunk checksum).
    Payload,
    /// A header byte (caught by the header checksum).
    Header,
}

/// A snapshot of the store for the info ioctl.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Info {
    pub(crate) config: Config,
    pub(crate) blocks_stored: u64,
}

/// The block store; shared by the misc device and the block device.
#[pin_data]
pub(crate) struct Store {
    config: Config,
    #[pin]
    blocks: SpinLock<KVec<Option<KBox<Block>>>>,
}

impl Store {
    /// An empty store of `config`.
    pub(crate) fn new(config: Config) -> Result<Arc<Self>> {
        let mut blocks = KVec::with_capacity(config.block_count(), GFP_KERNEL)?;
        for _ in 0..config.block_count() {
            blocks.push(None, GFP_KERNEL)?;
        }
        Arc::pin_init(
            pin_init!(Self {
                config,
                blocks <- new_spinlock!(blocks, "shmr_store"),
            }),
            GFP_KERNEL,
        )
    }

    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// Where `offset` falls: the block index and the offset inside the block.
    fn locate(&self, offset: u64) -> (usize, usize) {
        let block_bytes = u64::from(self.config.block_bytes);
        (
            (offset / block_bytes) as usize,
            (offset % block_bytes) as usize,
        )
    }

    /// Fills `out` with the bytes at `offset`; `out` must not cross a block boundary.
    ///
    /// # Errors
    ///
    /// `EINVAL` for a range outside the device or across blocks; `EIO` when no copy of the
    /// block verifies.
    pub(crate) fn read(&self, offset: u64, out: &mut [u8]) -> Result {
        let (index, start) = self.locate(offset);
        if start + out.len() > self.config.block_bytes as usize
            || index >= self.config.block_count()
        {
            return Err(EINVAL);
        }
        let blocks = self.blocks.lock();
        let Some(block) = &blocks[index] else {
            out.fill(0);
            return Ok(());
        };
        for (copy, shard) in block.shards.iter().enumerate() {
            if let Some(payload) =
                self.verified_payload(index, block, copy, shard, start, out.len())
            {
                out.copy_from_slice(&payload[start..start + out.len()]);
                return Ok(());
            }
        }
        Err(EIO)
    }

    /// The payload of `shard` if its prefix, its identity and the chunks covering
    /// `[start, start + len)` of the payload verify.
    fn verified_payload<'a>(
        &self,
        index: usize,
        block: &Block,
        copy: usize,
        shard: &'a [u8],
        start: usize,
        len: usize,
    ) -> Option<&'a [u8]> {
        let prefix = shard::decode_prefix(shard).ok()?;
        let header = &prefix.header;
        let is_ours = header.ino == DEVICE_INO
            && header.block_index == index as u64
            && header.generation == block.generation
            && header.topology == self.config.topology.value()
            && usize::from(header.shard_index) == copy
            && usize::from(header.data_shards) == self.config.copies()
            && header.payload_bytes == self.config.block_bytes
            && header.data_bytes == self.config.block_bytes
            // This module writes raw blocks only; a compressed one is userspace's to read.
            && header.compression == Compression::None.value();
        if !is_ours {
            return None;
        }
        let payload = shard.get(header.payload_offset as usize..)?;
        let payload = payload.get(..self.config.block_bytes as usize)?;
        let chunk = CHUNK_BYTES as usize;
        let first_chunk = start / chunk;
        let end = (start + len).div_ceil(chunk) * chunk;
        let checked = &payload[first_chunk * chunk..end.min(payload.len())];
        match shard::find_bad_chunk(&prefix, checked, first_chunk) {
            None => Some(payload),
            Some(_) => None,
        }
    }

    /// Writes `data` at `offset`; the range must not cross a block boundary. `flags` is for
    /// the first allocation of a block (`GFP_NOWAIT` where the caller cannot sleep).
    ///
    /// # Errors
    ///
    /// `EINVAL` for a range outside the device or across blocks, `ENOMEM`, and `EIO` for a
    /// partial write into a block none of whose copies verifies.
    pub(crate) fn write(&self, offset: u64, data: &[u8], flags: Flags) -> Result {
        let (index, start) = self.locate(offset);
        if start + data.len() > self.config.block_bytes as usize
            || index >= self.config.block_count()
        {
            return Err(EINVAL);
        }
        let mut fresh = None;
        loop {
            let mut blocks = self.blocks.lock();
            if blocks[index].is_none() {
                match fresh.take() {
                    Some(block) => blocks[index] = Some(block),
                    None => {
                        // Allocate without the lock held, then look again.
                        drop(blocks);
                        fresh = Some(self.new_block(flags)?);
                        continue;
                    }
                }
            }
            let Some(block) = blocks[index].as_mut() else {
                return Err(EINVAL);
            };
            let result = self.rewrite(index, block, start, data);
            drop(blocks);
            // A block allocated by us while another writer created it is freed here, unlocked.
            drop(fresh);
            return result;
        }
    }

    fn new_block(&self, flags: Flags) -> Result<KBox<Block>> {
        let mut shards = KVec::with_capacity(self.config.copies(), flags)?;
        for _ in 0..self.config.copies() {
            shards.push(
                KVVec::from_elem(0u8, self.config.shard_bytes(), flags)?,
                flags,
            )?;
        }
        // Generation 0 with an all-zero shard: the first rewrite encodes generation 1.
        Ok(KBox::new(
            Block {
                generation: 0,
                shards,
            },
            flags,
        )?)
    }

    /// Applies `data` at `start` of block `index` and re-encodes every copy.
    fn rewrite(&self, index: usize, block: &mut Block, start: usize, data: &[u8]) -> Result {
        let payload_offset = self.config.payload_offset();
        let block_bytes = self.config.block_bytes as usize;
        let is_whole = start == 0 && data.len() == block_bytes;
        let source = if block.generation == 0 || is_whole {
            0
        } else {
            // The whole block must verify: its checksums are about to be recomputed.
            (0..block.shards.len())
                .find(|&copy| {
                    let shard = &block.shards[copy];
                    self.verified_payload(index, block, copy, shard, 0, block_bytes)
                        .is_some()
                })
                .ok_or(EIO)?
        };
        block.generation += 1;
        let copies = block.shards.len();
        for copy in 0..copies {
            if copy != source {
                let (from, to) = pick_two(&mut block.shards, source, copy);
                to[payload_offset..].copy_from_slice(&from[payload_offset..]);
            }
        }
        for (copy, shard) in block.shards.iter_mut().enumerate() {
            let (prefix, payload) = shard.split_at_mut(payload_offset);
            payload[start..start + data.len()].copy_from_slice(data);
            let identity = ShardIdentity {
                topology: self.config.topology,
                shard_index: copy as u8,
                data_shards: copies as u8,
                parity_shards: 0,
                ino: DEVICE_INO,
                block_index: index as u64,
                generation: block.generation,
                block_bytes: self.config.block_bytes,
                data_bytes: self.config.block_bytes,
                compression: Compression::None.value(),
                compressed_bytes: 0,
            };
            shard::encode_prefix(&identity, payload, prefix)?;
        }
        Ok(())
    }

    /// Fills `out` from `offset`, across blocks.
    ///
    /// # Errors
    ///
    /// As `read`; on an error, `out` holds the blocks before the failed one.
    pub(crate) fn read_span(&self, offset: u64, out: &mut [u8]) -> Result {
        let mut done = 0;
        while done < out.len() {
            let at = offset + done as u64;
            let length = (out.len() - done).min(self.block_room(at));
            self.read(at, &mut out[done..done + length])?;
            done += length;
        }
        Ok(())
    }

    /// Writes `data` at `offset`, across blocks.
    ///
    /// # Errors
    ///
    /// As `write`; the blocks before the failed one are written.
    pub(crate) fn write_span(&self, offset: u64, data: &[u8], flags: Flags) -> Result {
        let mut done = 0;
        while done < data.len() {
            let at = offset + done as u64;
            let length = (data.len() - done).min(self.block_room(at));
            self.write(at, &data[done..done + length], flags)?;
            done += length;
        }
        Ok(())
    }

    /// Bytes from `offset` to the end of its block.
    fn block_room(&self, offset: u64) -> usize {
        self.config.block_bytes as usize - self.locate(offset).1
    }

    /// Damages copy `copy` (every copy when `None`) of the block holding `offset`, for tests of
    /// the `EIO` path.
    ///
    /// # Errors
    ///
    /// `EINVAL` outside the device or for a copy the topology does not have; `ENOENT` when the
    /// block was never written.
    pub(crate) fn corrupt(
        &self,
        offset: u64,
        copy: Option<usize>,
        target: CorruptTarget,
    ) -> Result {
        let (index, start) = self.locate(offset);
        if index >= self.config.block_count()
            || copy.is_some_and(|copy| copy >= self.config.copies())
        {
            return Err(EINVAL);
        }
        let payload_offset = self.config.payload_offset();
        let mut blocks = self.blocks.lock();
        let block = blocks[index].as_mut().ok_or(ENOENT)?;
        for (index, shard) in block.shards.iter_mut().enumerate() {
            if copy.is_some_and(|copy| copy != index) {
                continue;
            }
            let byte = match target {
                CorruptTarget::Payload => payload_offset + start,
                CorruptTarget::Header => 20,
            };
            shard[byte] ^= 0x10;
        }
        Ok(())
    }

    /// The configuration and how many blocks hold data.
    pub(crate) fn info(&self) -> Info {
        let blocks = self.blocks.lock();
        let blocks_stored = blocks.iter().filter(|block| block.is_some()).count() as u64;
        Info {
            config: self.config,
            blocks_stored,
        }
    }
}

/// Borrows two different shards of one block, the first shared and the second mutable.
fn pick_two(shards: &mut [KVVec<u8>], from: usize, to: usize) -> (&KVVec<u8>, &mut KVVec<u8>) {
    if from < to {
        let (low, high) = shards.split_at_mut(to);
        (&low[from], &mut high[0])
    } else {
        let (low, high) = shards.split_at_mut(from);
        (&high[0], &mut low[to])
    }
}
