// SPDX-License-Identifier: GPL-2.0-only

//! shmr: the kernel side of shmr's on-disk format.
//!
//! At load, decodes every shared test vector with the generated layout (`generated/`, from
//! `userspace/src/layout/` by `npm run codegen`) and refuses to load on any difference. Then
//! registers `/dev/shmr`, an in-kernel shmr block store (see `store.rs`), with a decode ioctl
//! that reports exactly what the TypeScript decoder reports, and a corrupt ioctl for tests,
//! and `/dev/shmrb0`, a blk-mq block device over the same store (`blk.rs`).

#[path = "generated/shmr_layout.rs"]
#[expect(
    dead_code,
    unreachable_pub,
    reason = "the generated layout is shared by every user; this module needs part of it"
)]
mod layout;

mod blk;
mod decode;
mod misc;
mod selftest;
mod shard;
mod store;

use kernel::prelude::*;

module! {
    type: ShmrModule,
    name: "shmr",
    authors: ["shmr developers"],
    description: "shmr block store with verified shards, and its layout self-test",
    license: "GPL",
    params: {
        size_mib: u32 {
            default: 64,
            description: "Device size in MiB (a multiple of the block size)",
        },
        block_bytes: u32 {
            default: 65536,
            description: "Block size in bytes: a multiple of 4096 from 4 KiB to 1 MiB",
        },
        topology: u32 {
            default: 1,
            description: "Shards per block: 1 = Single (one), 2 = Mirror (two copies)",
        },
        allow_corrupt: bool {
            default: false,
            description: "Enable the ioctl that damages a stored shard (tests of the EIO path)",
        },
        block_device: bool {
            default: true,
            description: "Also register the store as the blk-mq block device /dev/shmrb0",
        },
    },
}

#[pin_data]
struct ShmrModule {
    #[pin]
    misc: misc::Registration,
    /// `/dev/shmrb0`, unless `block_device=0`.
    disk: Option<blk::Disk>,
}

/// Runs the self-test and builds the store from the module parameters.
fn setup() -> Result<misc::Shared> {
    let vectors = selftest::run()?;
    let config = store::Config::new(
        u64::from(module_parameters::size_mib.value()),
        module_parameters::block_bytes.value(),
        module_parameters::topology.value(),
    )
    .inspect_err(|_| pr_err!("invalid size_mib, block_bytes or topology\n"))?;
    let store = store::Store::new(config)?;
    pr_info!(
        "{} test vectors pass; /dev/shmr: {} MiB, {} KiB blocks, {}\n",
        vectors,
        config.size_bytes >> 20,
        config.block_bytes >> 10,
        config.topology.name()
    );
    Ok(misc::Shared {
        store,
        allow_corrupt: module_parameters::allow_corrupt.value(),
    })
}

impl kernel::InPlaceModule for ShmrModule {
    fn init(_module: &'static ThisModule) -> impl PinInit<Self, Error> {
        let shared = setup();
        let store = shared.as_ref().ok().map(|shared| shared.store.clone());
        try_pin_init!(Self {
            misc <- misc::Registration::register(shared?),
            disk: match (store, module_parameters::block_device.value()) {
                (Some(store), true) => Some(blk::Disk::register(store)?),
                _ => None,
            },
        })
    }
}
