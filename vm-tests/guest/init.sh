#!/bin/sh
# /init of the guest initramfs (busybox). Mounts the kernel filesystems, the repository (9p
# tag "repo", read-only, under a tmpfs overlay so tests can write) at the path it has on the
# host, and the run directory (9p tag "run": shmr.ko, shmr-ioctl), then runs the suite for
# the target named on the kernel command line (vmtarget=...), prints VMTEST-RC=<exit code>
# and powers off. Any failure before the suite prints VMTEST-RC too: the host never waits for
# a line that cannot come.
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TMPDIR=/tmp LANG=C.UTF-8 SHMR_VM_GUEST=1

mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mkdir -p /dev/pts /dev/shm
mount -t devpts devpts /dev/pts
mount -t tmpfs -o mode=1777 tmpfs /tmp
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /dev/shm
ip link set lo up 2>/dev/null || ifconfig lo 127.0.0.1 up
# As on a server: the host's posix tests open 10,000 files at once.
ulimit -n 1048576

finish() {
  echo "VMTEST-RC=$1"
  sync
  poweroff -f
}

repo=${vmrepo:-/work/main}
mkdir -p /mnt/repo /mnt/run /tmp/overlay/upper /tmp/overlay/work "$repo"
mount -t 9p -o trans=virtio,version=9p2000.L,ro,msize=512000,cache=loose repo /mnt/repo || finish 90
mount -t 9p -o trans=virtio,version=9p2000.L,ro repo-run /mnt/run || finish 91
mount -t overlay overlay \
  -o lowerdir=/mnt/repo,upperdir=/tmp/overlay/upper,workdir=/tmp/overlay/work "$repo" || finish 92

cd "$repo" || finish 93
echo "VMTEST-BOOTED target=${vmtarget:-none} kernel=$(uname -r)"
node "$repo/dist/vm-tests/guest/main.js" --target "${vmtarget:-none}" --run /mnt/run
finish $?
