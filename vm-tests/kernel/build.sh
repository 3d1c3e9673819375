#!/usr/bin/env bash
# Builds (or reuses) the Rust-enabled test kernel and the shmr kernel module.
#
#   vm-tests/kernel/build.sh [buildroot|source|kernel|module|all]   (default: all)
#
# Stages, each cached under $SHMR_VM_CACHE (default /var/cache/shmr-vm) and skipped when its
# key has not changed:
#   buildroot  debootstrapped Debian 13 (trixie) with rustc, rust-src, bindgen, clang, lld:
#              the toolchain Linux 7.3 wants, from Debian's packages alone. Key: the package list.
#   source     linux-source-7.3 from trixie-backports, fetched with `apt-get download` inside the
#              build root (its trixie-backports source pinned at priority 1), so nothing from
#              trixie is ever installed on the host. Fallback (kernel only: the module needs
#              7.x's MiscDevice read_iter/write_iter): SHMR_VM_KERNEL_PACKAGE=linux-source-6.12
#              SHMR_VM_KERNEL_SUITE=trixie.
#   kernel     tinyconfig + kernel.config (beside this file), `make LLVM=1 bzImage modules` in
#              the build root under chroot. Key: source version + fragment + toolchain versions.
#   module     kmod-spec/ built out of tree against that kernel (not cached: seconds), and a copy
#              with one expectation of the vector manifest broken, which must refuse to load.
#
# Prints `KEY=VALUE` lines on stdout at the end (KERNEL_DIR, BZIMAGE, KERNEL_VERSION, MODULE,
# MODULE_BADVECTOR); progress on stderr.
# Runs the heavy steps under `nice -n 19`. As root (debootstrap, chroot, mounts).
set -euo pipefail

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
CACHE=${SHMR_VM_CACHE:-/var/cache/shmr-vm}
MIRROR=${SHMR_VM_MIRROR:-http://deb.debian.org/debian}
JOBS=${SHMR_VM_JOBS:-$(nproc)}
NICE=(nice -n 19)
KERNEL_PACKAGE=${SHMR_VM_KERNEL_PACKAGE:-linux-source-7.3}
KERNEL_SUITE=${SHMR_VM_KERNEL_SUITE:-trixie-backports}

# The toolchain of the build root; the key of the build root is this list.
BUILDROOT_PACKAGES=(
  rustc rust-src bindgen libclang-dev clang lld llvm
  make flex bison bc libelf-dev libssl-dev gcc libc6-dev xz-utils cpio kmod python3
  ca-certificates
)

log() { printf '[kernel %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
key_of() { sha256sum | cut -c1-16; }

[[ $(id -u) -eq 0 ]] || die "run as root (debootstrap, chroot)"
mkdir -p "$CACHE"

buildroot_key=$(printf '%s\n' trixie "${BUILDROOT_PACKAGES[@]}" | key_of)
BUILDROOT=$CACHE/buildroot-trixie-$buildroot_key

# Runs a command in the build root, in a private mount namespace: proc, sys and dev are
# mounted for it alone and vanish with it, so concurrent runs never unmount each other's.
in_root() {
  nice -n "${ROOT_NICE:-0}" unshare --mount --propagation private -- /bin/sh -c '
    root=$1; shift
    mount -t proc proc "$root/proc" && mount -t sysfs sys "$root/sys" && mount --rbind /dev "$root/dev" &&
      exec chroot "$root" env -i PATH=/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin HOME=/root \
        LANG=C.UTF-8 "$@"' sh "$BUILDROOT" "$@"
}

stage_buildroot() {
  if [[ -f $BUILDROOT/.shmr-ready ]]; then
    log "build root: cached ($BUILDROOT)"
    return
  fi
  local started=$SECONDS
  log "build root: debootstrap trixie into $BUILDROOT"
  rm -rf "$BUILDROOT.tmp"
  "${NICE[@]}" debootstrap --variant=minbase \
    --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
    --include="$(IFS=,; echo "${BUILDROOT_PACKAGES[*]}")" \
    trixie "$BUILDROOT.tmp" "$MIRROR" >"$CACHE/debootstrap.log" 2>&1 \
    || die "debootstrap failed; see $CACHE/debootstrap.log"
  # trixie-backports, pinned at priority 1: only asked-for packages come from it.
  cat >"$BUILDROOT.tmp/etc/apt/sources.list.d/trixie-backports.list" <<EOF
deb $MIRROR trixie-backports main
EOF
  cat >"$BUILDROOT.tmp/etc/apt/preferences.d/trixie-backports.pref" <<'EOF'
Package: *
Pin: release a=trixie-backports
Pin-Priority: 1
EOF
  mv "$BUILDROOT.tmp" "$BUILDROOT"
  in_root apt-get update -qq >&2
  in_root sh -c 'rustc --version; bindgen --version; clang --version | head -1; ld.lld --version' \
    >"$BUILDROOT/.shmr-toolchain"
  touch "$BUILDROOT/.shmr-ready"
  log "build root: ready in $((SECONDS - started)) s: $(tr '\n' ';' <"$BUILDROOT/.shmr-toolchain")"
}

# Downloads and unpacks the kernel source package into $BUILDROOT/src; sets SOURCE_DIR, SOURCE_ID.
stage_source() {
  local marker=$BUILDROOT/src/.shmr-source-$KERNEL_PACKAGE
  if [[ ! -f $marker ]]; then
    local started=$SECONDS
    log "source: apt-get download $KERNEL_PACKAGE/$KERNEL_SUITE (in the build root)"
    in_root apt-get update -qq >&2
    rm -rf "$BUILDROOT/src/dl" && mkdir -p "$BUILDROOT/src/dl"
    if ! in_root sh -c "cd /src/dl && apt-get download -qq $KERNEL_PACKAGE/$KERNEL_SUITE" >&2; then
      die "cannot download $KERNEL_PACKAGE; set SHMR_VM_KERNEL_PACKAGE=linux-source-6.12 SHMR_VM_KERNEL_SUITE=trixie to fall back"
    fi
    local deb
    deb=$(ls "$BUILDROOT"/src/dl/*.deb)
    local version
    version=$(dpkg-deb -f "$deb" Version)
    rm -rf "$BUILDROOT/src/pkg" && "${NICE[@]}" dpkg-deb -x "$deb" "$BUILDROOT/src/pkg"
    local tarball
    tarball=$(ls "$BUILDROOT"/src/pkg/usr/src/linux-source-*.tar.*)
    local tree=$BUILDROOT/src/$KERNEL_PACKAGE-$version
    rm -rf "$tree" "$tree.tmp" && mkdir -p "$tree.tmp"
    "${NICE[@]}" tar -xf "$tarball" -C "$tree.tmp" --strip-components=1
    mv "$tree.tmp" "$tree"
    rm -rf "$BUILDROOT/src/pkg"
    echo "$version" >"$marker"
    log "source: $KERNEL_PACKAGE $version unpacked in $((SECONDS - started)) s"
  fi
  SOURCE_VERSION=$(cat "$marker")
  SOURCE_DIR=/src/$KERNEL_PACKAGE-$SOURCE_VERSION
}

stage_kernel() {
  local key
  key=$( {
    echo "$KERNEL_PACKAGE $SOURCE_VERSION"
    cat "$HERE/kernel.config"
    cat "$BUILDROOT/.shmr-toolchain"
  } | key_of)
  KERNEL_OUT=/build/kernel-$SOURCE_VERSION-$key
  local out=$BUILDROOT$KERNEL_OUT
  if [[ -f $out/.shmr-ready ]]; then
    log "kernel: cached ($out)"
    return
  fi
  local started=$SECONDS
  mkdir -p "$out"
  cp "$HERE/kernel.config" "$out/shmr.config"
  log "kernel: tinyconfig + kernel.config in $out"
  local make=(make -C "$SOURCE_DIR" O="$KERNEL_OUT" LLVM=1)
  in_root "${make[@]}" -s tinyconfig >&2
  in_root sh -c "cd $SOURCE_DIR && KCONFIG_CONFIG=$KERNEL_OUT/.config \
    scripts/kconfig/merge_config.sh -m -O $KERNEL_OUT $KERNEL_OUT/.config $KERNEL_OUT/shmr.config" \
    >"$out/merge.log" 2>&1
  in_root "${make[@]}" -s olddefconfig >&2
  in_root "${make[@]}" rustavailable >&2 || die "make LLVM=1 rustavailable failed"
  # Every line of the fragment must have survived olddefconfig (a missing dependency drops it).
  local missing=0
  while IFS= read -r line; do
    [[ $line =~ ^CONFIG_ ]] || continue
    grep -qxF "$line" "$out/.config" || { log "kernel: config lost: $line"; missing=1; }
  done <"$HERE/kernel.config"
  ((missing == 0)) || die "config fragment not applied (see above)"
  log "kernel: make -j$JOBS bzImage modules (nice 19; ~10 min on 2 idle cores)"
  if ! ROOT_NICE=19 in_root "${make[@]}" -j"$JOBS" bzImage modules >"$out/build.log" 2>&1; then
    tail -40 "$out/build.log" >&2
    die "kernel build failed; see $out/build.log"
  fi
  touch "$out/.shmr-ready"
  log "kernel: built in $((SECONDS - started)) s"
}

# Builds kmod-spec/ into $BUILDROOT/build/$1 (a copy, so the clone stays clean); with a second
# argument, first breaks one expectation of the manifest copy (the module must refuse to load).
build_module() {
  local name=$1 tamper=${2:-}
  local work=$BUILDROOT/build/$name
  rm -rf "$work" && mkdir -p "$work"
  cp -r "$REPO/kmod-spec/." "$work/"
  rm -f "$work"/*.ko "$work"/*.o "$work/vectors_table.rs"
  if [[ -n $tamper ]]; then
    python3 - "$work/generated/vectors/manifest.json" <<'PY'
import json, sys
path = sys.argv[1]
manifest = json.load(open(path))
vector = next(v for v in manifest['vectors'] if v['name'] == 'shard-header-normal')
vector['expect']['fields']['ino'] = hex(int(vector['expect']['fields']['ino'], 16) ^ 1)
json.dump(manifest, open(path, 'w'), indent=2)
PY
  fi
  if ! in_root make -C "$KERNEL_OUT" M="/build/$name" LLVM=1 modules >"$CACHE/$name-build.log" 2>&1; then
    cat "$CACHE/$name-build.log" >&2
    die "module build failed ($name)"
  fi
  [[ -f $work/shmr.ko ]] || die "no shmr.ko after the build ($name)"
  if grep -q 'warning' "$CACHE/$name-build.log"; then
    grep -A5 'warning' "$CACHE/$name-build.log" | head -60 >&2
  fi
}

stage_module() {
  local started=$SECONDS
  build_module kmod-spec
  MODULE=$BUILDROOT/build/kmod-spec/shmr.ko
  log "module: built in $((SECONDS - started)) s ($MODULE)"
  started=$SECONDS
  build_module kmod-spec-badvector tamper
  MODULE_BADVECTOR=$BUILDROOT/build/kmod-spec-badvector/shmr.ko
  log "module with a broken expectation: built in $((SECONDS - started)) s"
}

main() {
  local what=${1:-all}
  stage_buildroot
  [[ $what == buildroot ]] && return
  stage_source
  [[ $what == source ]] && return
  stage_kernel
  echo "KERNEL_DIR=$BUILDROOT$KERNEL_OUT"
  echo "BZIMAGE=$BUILDROOT$KERNEL_OUT/arch/x86/boot/bzImage"
  echo "KERNEL_VERSION=$SOURCE_VERSION"
  [[ $what == kernel ]] && return
  stage_module
  echo "MODULE=$MODULE"
  echo "MODULE_BADVECTOR=$MODULE_BADVECTOR"
}

main "$@"
