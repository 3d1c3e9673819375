// SPDX-License-Identifier: GPL-2.0-only

//! `/dev/shmr`: the block store as a character device.
//!
//! `pread`/`pwrite` at any offset (and `read`/`write` at the file position) store and return
//! bytes through the store; `lseek(fd, 0, SEEK_END)` reports the size; `fsync` succeeds once
//! every earlier write is in the store (writes are synchronous, so at once). The ioctls are in
//! `shmr_ioctl.h`.
//!
//! The Rust `MiscDevice` abstraction of 7.3 has no `fsync` or `llseek`, so `Registration`
//! registers the misc device itself: it copies the `file_operations` table the abstraction
//! builds, adds those two entries, and hands that copy to `misc_register`.

use crate::decode::{self, DecodeAs, Text};
use crate::store::{CorruptTarget, Store};
use kernel::{
    bindings,
    error::to_result,
    fs::{File, Kiocb},
    ioctl::{_IOR, _IOW, _IOWR},
    iov::{IovIterDest, IovIterSource},
    miscdevice::{MiscDevice, MiscDeviceOptions, MiscDeviceRegistration},
    new_mutex,
    prelude::*,
    sync::{Arc, Mutex},
    types::{ForeignOwnable, Opaque},
    uaccess::UserSlice,
};

/// `struct shmr_decode`, `struct shmr_corrupt` and `struct shmr_info` are this many bytes.
const DECODE_ARG_BYTES: usize = 32;
const CORRUPT_ARG_BYTES: usize = 16;
const INFO_ARG_BYTES: usize = 32;
/// ioctl numbers, as `shmr_ioctl.h` defines them.
const SHMR_IOC_DECODE: u32 = _IOWR::<[u8; DECODE_ARG_BYTES]>('S' as u32, 1);
const SHMR_IOC_CORRUPT: u32 = _IOW::<[u8; CORRUPT_ARG_BYTES]>('S' as u32, 2);
const SHMR_IOC_INFO: u32 = _IOR::<[u8; INFO_ARG_BYTES]>('S' as u32, 3);
/// Largest buffer the decode ioctl accepts, and largest description it writes.
const DECODE_INPUT_BYTES_MAX: usize = 4 << 20;
const DECODE_OUTPUT_BYTES_MAX: usize = 64 << 10;
/// `copy` of `struct shmr_corrupt` that damages every copy.
const CORRUPT_EVERY_COPY: u32 = u32::MAX;

/// What every open file of the device shares.
pub(crate) struct Shared {
    pub(crate) store: Arc<Store>,
    pub(crate) allow_corrupt: bool,
}

/// The registered misc device and the file operations it was registered with.
///
/// # Invariants
///
/// `misc` is a registered misc device whose `fops` points to `fops`, and both stay at their
/// address until `drop` has deregistered the device.
#[pin_data(PinnedDrop)]
pub(crate) struct Registration {
    shared: Shared,
    #[pin]
    fops: Opaque<bindings::file_operations>,
    #[pin]
    misc: Opaque<bindings::miscdevice>,
}

// SAFETY: after registration the C side only reads `misc` and `fops`, and the Rust side never
// touches them until `drop`, so sharing or moving the owner between threads is sound (as for
// `MiscDeviceRegistration`).
unsafe impl Send for Registration {}
// SAFETY: see `Send`; `shared` is `Sync` itself.
unsafe impl Sync for Registration {}

impl Registration {
    /// Registers `/dev/shmr` over `shared`.
    pub(crate) fn register(shared: Shared) -> impl PinInit<Self, Error> {
        try_pin_init!(&this in Self {
            shared,
            fops <- Opaque::ffi_init(|slot: *mut bindings::file_operations| {
                let options = MiscDeviceOptions { name: c"shmr" }.into_raw::<ShmrFile>();
                // SAFETY: `into_raw` points `fops` at the static table of the abstraction.
                let mut fops = unsafe { core::ptr::read(options.fops) };
                fops.llseek = Some(llseek);
                fops.fsync = Some(fsync);
                // SAFETY: `slot` is valid for writes, as `ffi_init` guarantees.
                unsafe { slot.write(fops) };
            }),
            misc <- Opaque::try_ffi_init(move |slot: *mut bindings::miscdevice| {
                let mut options = MiscDeviceOptions { name: c"shmr" }.into_raw::<ShmrFile>();
                // SAFETY: `this` is the struct being initialized; `fops` was initialized
                // above and is pinned with it.
                options.fops = unsafe { (*this.as_ptr()).fops.get() };
                // SAFETY: `slot` is valid for writes, as `try_ffi_init` guarantees.
                unsafe { slot.write(options) };
                // SAFETY: `slot` holds a complete miscdevice. It stays pinned, and is
                // deregistered in `drop` before its memory goes away.
                // INVARIANT: on success the device is registered with `fops`.
                to_result(unsafe { bindings::misc_register(slot) })
            }),
        })
    }
}

#[pinned_drop]
impl PinnedDrop for Registration {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: by the type invariant, `misc` is registered.
        unsafe { bindings::misc_deregister(self.misc.get()) };
    }
}

/// One open file of `/dev/shmr`.
#[pin_data]
pub(crate) struct ShmrFile {
    store: Arc<Store>,
    allow_corrupt: bool,
    /// One block of bounce buffer: user memory is never touched with the store locked.
    #[pin]
    bounce: Mutex<KVVec<u8>>,
}

#[vtable]
impl MiscDevice for ShmrFile {
    type Ptr = Pin<KBox<Self>>;

    fn open(_file: &File, misc: &MiscDeviceRegistration<Self>) -> Result<Pin<KBox<Self>>> {
        let raw = misc.as_raw().cast::<Opaque<bindings::miscdevice>>();
        // SAFETY: `misc_open` hands over the `miscdevice` it found registered, and the only
        // one registered with these operations is the `misc` field of a `Registration`,
        // which outlives every open of the device (deregistering waits for opens in flight).
        let registration = unsafe { &*kernel::container_of!(raw, Registration, misc) };
        let shared = &registration.shared;
        let block_bytes = shared.store.config().block_bytes as usize;
        let bounce = KVVec::from_elem(0u8, block_bytes, GFP_KERNEL)?;
        KBox::try_pin_init(
            try_pin_init!(ShmrFile {
                store: shared.store.clone(),
                allow_corrupt: shared.allow_corrupt,
                bounce <- new_mutex!(bounce),
            }),
            GFP_KERNEL,
        )
    }

    fn read_iter(mut kiocb: Kiocb<'_, Self::Ptr>, iov: &mut IovIterDest<'_>) -> Result<usize> {
        let me = kiocb.file();
        let position = u64::try_from(kiocb.ki_pos()).map_err(|_| EINVAL)?;
        let done = me.read_at(position, iov)?;
        *kiocb.ki_pos_mut() += done as i64;
        Ok(done)
    }

    fn write_iter(mut kiocb: Kiocb<'_, Self::Ptr>, iov: &mut IovIterSource<'_>) -> Result<usize> {
        let me = kiocb.file();
        let position = u64::try_from(kiocb.ki_pos()).map_err(|_| EINVAL)?;
        let done = me.write_at(position, iov)?;
        *kiocb.ki_pos_mut() += done as i64;
        Ok(done)
    }

    fn ioctl(me: Pin<&ShmrFile>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        let user = UserPtr::from_addr(arg);
        match cmd {
            SHMR_IOC_DECODE => me.decode(user)?,
            SHMR_IOC_CORRUPT => me.corrupt(user)?,
            SHMR_IOC_INFO => me.info(user)?,
            _ => return Err(ENOTTY),
        }
        Ok(0)
    }
}

/// Ends a transfer that stopped after `done` bytes: a short count, or `error` if none moved.
fn partial(done: usize, error: Error) -> Result<usize> {
    if done > 0 {
        Ok(done)
    } else {
        Err(error)
    }
}

/// Moves `total` bytes from `position` in pieces that never cross a block boundary (the store
/// works block by block). `step` moves one piece of `length` bytes at `at` and returns how many
/// bytes the user buffer took or gave; a short piece means the user buffer faulted. Returns the
/// bytes moved, or the error when none moved.
fn transfer_by_block(
    position: u64,
    total: usize,
    block_bytes: u32,
    mut step: impl FnMut(u64, usize) -> Result<usize>,
) -> Result<usize> {
    let block_bytes = u64::from(block_bytes);
    let mut done = 0;
    while done < total {
        let at = position + done as u64;
        let length = (total - done).min((block_bytes - at % block_bytes) as usize);
        match step(at, length) {
            Ok(moved) => {
                done += moved;
                if moved < length {
                    return partial(done, EFAULT);
                }
            }
            Err(error) => return partial(done, error),
        }
    }
    Ok(done)
}

impl ShmrFile {
    fn read_at(&self, position: u64, iov: &mut IovIterDest<'_>) -> Result<usize> {
        let config = *self.store.config();
        if position >= config.size_bytes {
            return Ok(0);
        }
        let total = (iov.len() as u64).min(config.size_bytes - position) as usize;
        let mut bounce = self.bounce.lock();
        transfer_by_block(position, total, config.block_bytes, |at, length| {
            self.store.read(at, &mut bounce[..length])?;
            Ok(iov.copy_to_iter(&bounce[..length]))
        })
    }

    fn write_at(&self, position: u64, iov: &mut IovIterSource<'_>) -> Result<usize> {
        let config = *self.store.config();
        if iov.is_empty() {
            return Ok(0);
        }
        if position >= config.size_bytes {
            return Err(ENOSPC);
        }
        let total = (iov.len() as u64).min(config.size_bytes - position) as usize;
        let mut bounce = self.bounce.lock();
        transfer_by_block(position, total, config.block_bytes, |at, length| {
            let copied = iov.copy_from_iter(&mut bounce[..length]);
            if copied > 0 {
                self.store.write(at, &bounce[..copied], GFP_KERNEL)?;
            }
            Ok(copied)
        })
    }

    /// `SHMR_IOC_DECODE`: decodes the user's buffer and writes back the description.
    fn decode(&self, user: UserPtr) -> Result {
        let (mut reader, mut writer) = UserSlice::new(user, DECODE_ARG_BYTES).reader_writer();
        let mut arg = [0u8; DECODE_ARG_BYTES];
        reader.read_slice(&mut arg)?;
        let input_pointer = le_u64(&arg, 0);
        let output_pointer = le_u64(&arg, 8);
        let input_bytes = le_u32(&arg, 16) as usize;
        let output_bytes = (le_u32(&arg, 20) as usize).min(DECODE_OUTPUT_BYTES_MAX);
        let what = DecodeAs::try_from(le_u32(&arg, 24))?;
        if input_bytes > DECODE_INPUT_BYTES_MAX {
            return Err(E2BIG);
        }
        let mut input = KVVec::new();
        UserSlice::new(UserPtr::from_addr(input_pointer as usize), input_bytes)
            .read_all(&mut input, GFP_KERNEL)?;
        let mut text = Text::new(output_bytes)?;
        let kind = decode::describe(what, &input, &mut text)?;
        UserSlice::new(UserPtr::from_addr(output_pointer as usize), output_bytes)
            .writer()
            .write_slice(text.as_bytes())?;
        arg[20..24].copy_from_slice(&(text.as_bytes().len() as u32).to_le_bytes());
        arg[28..32].copy_from_slice(&u32::from(kind).to_le_bytes());
        writer.write_slice(&arg)
    }

    /// `SHMR_IOC_CORRUPT`: damages a stored shard; only with `allow_corrupt=1`.
    fn corrupt(&self, user: UserPtr) -> Result {
        if !self.allow_corrupt {
            return Err(EPERM);
        }
        let mut arg = [0u8; CORRUPT_ARG_BYTES];
        UserSlice::new(user, CORRUPT_ARG_BYTES)
            .reader()
            .read_slice(&mut arg)?;
        let copy = match le_u32(&arg, 8) {
            CORRUPT_EVERY_COPY => None,
            copy => Some(copy as usize),
        };
        let target = match le_u32(&arg, 12) {
            0 => CorruptTarget::Payload,
            1 => CorruptTarget::Header,
            _ => return Err(EINVAL),
        };
        self.store.corrupt(le_u64(&arg, 0), copy, target)
    }

    /// `SHMR_IOC_INFO`: size, block size, topology, copies and blocks in use.
    fn info(&self, user: UserPtr) -> Result {
        let info = self.store.info();
        let mut arg = [0u8; INFO_ARG_BYTES];
        arg[0..8].copy_from_slice(&info.config.size_bytes.to_le_bytes());
        arg[8..16].copy_from_slice(&info.blocks_stored.to_le_bytes());
        arg[16..20].copy_from_slice(&info.config.block_bytes.to_le_bytes());
        arg[20..24].copy_from_slice(&u32::from(info.config.topology.value()).to_le_bytes());
        arg[24..28].copy_from_slice(&(info.config.copies() as u32).to_le_bytes());
        UserSlice::new(user, INFO_ARG_BYTES)
            .writer()
            .write_slice(&arg)
    }
}

fn le_u64(bytes: &[u8], offset: usize) -> u64 {
    let mut value = [0u8; 8];
    value.copy_from_slice(&bytes[offset..offset + 8]);
    u64::from_le_bytes(value)
}

fn le_u32(bytes: &[u8], offset: usize) -> u32 {
    let mut value = [0u8; 4];
    value.copy_from_slice(&bytes[offset..offset + 4]);
    u32::from_le_bytes(value)
}

/// `llseek`: `fixed_size_llseek` over the device size.
///
/// # Safety
///
/// Called by the VFS with an open file of this device, whose `private_data` the abstraction's
/// `open` set to a `Pin<KBox<ShmrFile>>` that lives until `release`.
unsafe extern "C" fn llseek(file: *mut bindings::file, offset: i64, whence: c_int) -> i64 {
    // SAFETY: by the function's safety requirements, `private_data` came from `into_foreign`
    // of a `Pin<KBox<ShmrFile>>` and is not released while the VFS calls `llseek`.
    let me = unsafe { <Pin<KBox<ShmrFile>> as ForeignOwnable>::borrow((*file).private_data) };
    let size = me.store.config().size_bytes as i64;
    // SAFETY: `file` is valid, by the function's safety requirements.
    unsafe { bindings::fixed_size_llseek(file, offset, whence, size) }
}

/// `fsync`: every write has reached the store when `write` returns, so there is nothing left
/// to flush.
///
/// # Safety
///
/// Called by the VFS with an open file of this device.
unsafe extern "C" fn fsync(
    _file: *mut bindings::file,
    _start: i64,
    _end: i64,
    _datasync: c_int,
) -> c_int {
    0
}
