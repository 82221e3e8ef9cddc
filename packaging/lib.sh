# Helpers for the packaging scripts, on top of ci/lib.sh (stages, log/die, apt_install,
# retry, free_port, wait_http, stop_pid); source it, do not run it.
# shellcheck shell=bash

PKG_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# shellcheck source=ci/lib.sh
source "$PKG_ROOT/ci/lib.sh"
# Build into a target dir of our own so packaging never fights the debug builds of ci/test.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR_PKG:-$PKG_ROOT/target/pkg}
DIST=${DIST:-$PKG_ROOT/target/dist}
# Build tools (zig, cargo-zigbuild) live outside the work tree so reruns and later CI runs
# on the same machine reuse them; delete the directory for a cold start.
HDP_TOOLS=${HDP_TOOLS:-/opt/hdp-tools}
PKG_NAME=harddrive-party
# shellcheck disable=SC2034  # used by the scripts that source this
# The release targets and what each packaging format calls them: five static binaries and
# .ipk packages (the two MIPS ones are 32-bit, soft-float, as OpenWrt builds mips_24kc and
# mipsel_24kc), .debs for the three Debian architectures among them.
STATIC_TARGETS=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf
  mipsel-unknown-linux-musl mips-unknown-linux-musl)
# shellcheck disable=SC2034
DEB_TARGETS=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf)

# The crate version from Cargo.toml's [workspace.package].
pkg_version() {
  sed -n '/^\[workspace.package\]/,/^\[/{s/^version *= *"\(.*\)"/\1/p}' "$PKG_ROOT/Cargo.toml" | head -n1
}

# Reproducible timestamps: the last commit's time, else now.
source_date_epoch() {
  if [ -n "${SOURCE_DATE_EPOCH:-}" ]; then echo "$SOURCE_DATE_EPOCH"; return; fi
  git -C "$PKG_ROOT" log -1 --format=%ct 2>/dev/null || date +%s
}

deb_arch() {
  case $1 in
    x86_64-*) echo amd64 ;;
    aarch64-*) echo arm64 ;;
    armv7-*) echo armhf ;;
    *) die "no Debian architecture for $1" ;;
  esac
}

oci_arch() {
  case $1 in
    x86_64-*) echo amd64 ;;
    aarch64-*) echo arm64 ;;
    armv7-*) echo arm ;;
    *) die "no OCI architecture for $1" ;;
  esac
}

ipk_arch() {
  case $1 in
    x86_64-*) echo x86_64 ;;
    aarch64-*) echo aarch64_cortex-a53 ;;
    armv7-*) echo arm_cortex-a7_neon-vfpv4 ;;
    mipsel-*) echo mipsel_24kc ;;
    mips-*) echo mips_24kc ;;
    *) die "no OpenWrt architecture for $1" ;;
  esac
}

static_binary() { echo "$DIST/bin/$PKG_NAME-$1"; }

# The newest file in $DIST matching a glob, e.g. latest_dist "harddrive-party_*_amd64.deb".
latest_dist() {
  find "$DIST" -maxdepth 1 -name "$1" -printf '%f\n' 2>/dev/null | sort -V | tail -n1 | sed "s|^.|$DIST/&|"
}
