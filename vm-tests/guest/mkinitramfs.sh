#!/usr/bin/env bash
# Builds (or reuses) the guest root: an uncompressed initramfs with busybox, the host's own
# Node.js and the Debian tools the suite drives (nbd-client, e2fsprogs, fusermount3, attr),
# each with the shared libraries `ldd` names, and the libraries of shmr's native addons.
#
#   vm-tests/guest/mkinitramfs.sh REPO OUT_DIR     prints the path of the cpio archive
#
# The archive is keyed by what goes in (path, size, mtime of every file, and this script and
# init), so it is rebuilt only when the host's node, tools or libraries change. The repository
# itself is not in it: the guest mounts it over 9p (read-only, with a tmpfs overlay).
# Uncompressed on purpose: decompressing ~100 MB under TCG costs more than loading it.
set -euo pipefail

REPO=$1
OUT_DIR=$2
HERE=$(cd "$(dirname "$0")" && pwd)

BINARIES=(
  /usr/bin/node
  /usr/sbin/nbd-client
  /usr/sbin/mke2fs /usr/sbin/e2fsck
  /usr/bin/fusermount3
  /usr/bin/getfattr /usr/bin/setfattr
  /usr/bin/python3.11 /usr/bin/setpriv   # the host's posix mount tests call both
)
PYTHON_LIB=/usr/lib/python3.11
# Libraries the native addons load (their .node files come over 9p with the repository),
# vitest's (rolldown, lightningcss) included: the fuse target runs the host's mount tests.
mapfile -t ADDONS < <(find "$REPO/userspace/native" "$REPO/node_modules" -name '*.node' \
  -not -path '*/obj.target/*' 2>/dev/null)

libraries_of() {
  ldd "$@" 2>/dev/null | awk '/=> \// { print $3 } /^\t\/lib64\// { print $1 }' | sort -u
}

mapfile -t LIBS < <(libraries_of "${BINARIES[@]}" "${ADDONS[@]}" "$PYTHON_LIB"/lib-dynload/*.so)
FILES=("${BINARIES[@]}" "${LIBS[@]}" /bin/busybox /etc/mke2fs.conf)
key=$( {
  for file in "${FILES[@]}"; do stat -L -c '%n %s %Y' "$file"; done
  stat -c '%n %s %Y' "$PYTHON_LIB"
  cat "$0" "$HERE/init.sh"
} | sha256sum | cut -c1-16)
archive=$OUT_DIR/initramfs-$key.cpio
if [[ -f $archive ]]; then
  echo "$archive"
  exit 0
fi

root=$(mktemp -d "$OUT_DIR/initramfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
chmod 755 "$root"   # the guest's /: mktemp made it 0700, which locks out every other user
mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,lib,lib64,etc,proc,sys,dev,tmp,run,mnt,root,work}
for file in "${FILES[@]}"; do
  mkdir -p "$root$(dirname "$file")"
  cp -L "$file" "$root$file"
done
mkdir -p "$root/usr/lib"
tar -C /usr/lib --exclude=python3.11/test --exclude='__pycache__' -cf - python3.11 | tar -C "$root/usr/lib" -xf -
ln -s python3.11 "$root/usr/bin/python3"
ln -s mke2fs "$root/usr/sbin/mkfs.ext4"
ln -s e2fsck "$root/usr/sbin/fsck.ext4"
# Every busybox applet not already provided by a real binary.
for applet in $(/bin/busybox --list-full); do
  [[ -e $root/$applet || -L $root/$applet ]] || ln -s /bin/busybox "$root/$applet"
done
cp "$HERE/init.sh" "$root/init"
chmod 755 "$root/init"
printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
printf 'root:x:0:\n' >"$root/etc/group"
printf '127.0.0.1 localhost\n' >"$root/etc/hosts"
(cd "$root" && find . -print0 | cpio --null -o -H newc --quiet) >"$archive.tmp"
mv "$archive.tmp" "$archive"
# Older archives are of no further use (the key covers every input).
find "$OUT_DIR" -maxdepth 1 -name 'initramfs-*.cpio' ! -path "$archive" -delete
echo "$archive"
