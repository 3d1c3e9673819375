#!/usr/bin/env bash
# Sets up everything shmr needs on a Debian 12 machine, as root: Debian packages, npm
# dependencies (npm ci), the native addons and the TypeScript build. Safe to run again: steps
# that are already done are skipped quickly.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES=(
  fuse3 libfuse3-dev pkg-config   # FUSE: kernel mount helper and the libfuse3 the binding uses
  libisal-dev                     # ISA-L: Reed-Solomon and CRC32C
  python3 make g++ gcc            # node-gyp builds (zstd-napi compiles its bundled zstd too)
  ccache                          # the same C/C++ builds again (npm ci) come from a cache
  mergerfs fio                    # npm run bench: the peer filesystem and the load generator
  attr acl                        # tests: getfattr/setfattr
  prometheus                      # metrics tests: promtool checks the exposition format
  librsvg2-bin                    # metrics tests: rsvg-convert renders the _stat graphs
  qemu-utils libnbd-bin nbdkit    # NBD clients for tests and bench (qemu-io, nbdcopy), bench peer
  python3-libnbd nbd-client       # NBD: nbdsh (Debian ships it here), shmr volume attach/detach
  debootstrap qemu-system-x86     # npm run vm-test: the kernel build root and the guests
  busybox-static cpio e2fsprogs   # npm run vm-test: the guest's initramfs and ext4 rounds
  debian-archive-keyring vagrant  # debootstrap's keys; `vagrant validate` of the Vagrantfile
  dbus-daemon dbus-bin            # D-Bus: the bus the daemon serves on; tests start private ones
  libglib2.0-bin                  # gdbus: D-Bus interoperability tests
)

if [[ $(id -u) -ne 0 ]]; then
  echo "setup: run as root (apt-get, mounts)" >&2
  exit 1
fi

missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if ! command -v node >/dev/null; then missing+=(nodejs npm); fi
if ((${#missing[@]} > 0)); then
  echo "setup: installing ${missing[*]}"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# D-Bus control plane: the system bus policy (who may call what) and the group whose members
# may call mutating methods. A running system bus rereads its policy.
if ! getent group shmr >/dev/null; then groupadd --system shmr; fi
policy_target=/usr/share/dbus-1/system.d/co.volf.shmr.conf
if ! cmp -s scripts/dbus/co.volf.shmr.conf "$policy_target"; then
  install -D -m 0644 scripts/dbus/co.volf.shmr.conf "$policy_target"
  dbus-send --system --type=method_call --dest=org.freedesktop.DBus / org.freedesktop.DBus.ReloadConfig \
    >/dev/null 2>&1 || true
fi

# The codegen tests compile the generated Rust (offset_of! needs rustc >= 1.77). A rustup
# toolchain already on PATH is used as it is; otherwise Debian 12's rustc-web provides one.
if ! command -v rustc >/dev/null; then
  echo "setup: installing rustc-web (Rust for the codegen tests)"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq rustc-web >/dev/null
fi
for tool in clippy-driver rustfmt; do
  command -v "$tool" >/dev/null || echo "setup: warning: $tool not on PATH; the codegen lint test will fail (install a rustup toolchain with clippy and rustfmt)" >&2
done

node_major=$(node -p 'process.versions.node.split(".")[0]')
if ((node_major < 20)); then
  echo "setup: Node.js >= 20 is needed, found $(node --version)" >&2
  exit 1
fi

# npm ci compiles SQLite (better-sqlite3) and zstd (zstd-napi) from source: their prebuilt
# binaries are downloaded from GitHub, which may be out of reach. That is most of its 3 minutes
# on two cores; through ccache a machine that has built them once (a fresh clone in CI
# included) gets the objects from /var/cache/shmr-ccache. Only these builds see the wrappers.
compile_cached=(env CCACHE_DIR="${CCACHE_DIR:-/var/cache/shmr-ccache}" CC="ccache gcc" CXX="ccache g++")
if [[ ! -d node_modules ]] || [[ package-lock.json -nt node_modules/.package-lock.json ]]; then
  "${compile_cached[@]}" npm ci --no-audit --no-fund
fi
"${compile_cached[@]}" npm run --silent build
