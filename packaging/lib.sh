# Shared helpers for the packaging scripts; source it, do not run it.
# shellcheck shell=bash

PKG_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
# Build into a target dir of our own so packaging never fights the debug builds of ci/test.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR_PKG:-$PKG_ROOT/target/pkg}
DIST=${DIST:-$PKG_ROOT/target/dist}
# Build tools (zig, cargo-zigbuild) live outside the work tree so reruns and later CI runs
# on the same machine reuse them; delete the directory for a cold start.
HDP_TOOLS=${HDP_TOOLS:-/opt/hdp-tools}
PKG_NAME=harddrive-party
# shellcheck disable=SC2034  # used by the scripts that source this
# The three release targets and what each packaging format calls them.
STATIC_TARGETS=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf)

log() { printf '%s\n' "--- $*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

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
    *) die "no OpenWrt architecture for $1" ;;
  esac
}

static_binary() { echo "$DIST/bin/$PKG_NAME-$1"; }

# Installs the Debian packages that are missing, idempotently, with bounded retries; waits
# for another apt to release its lock instead of failing.
apt_install() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  local attempt
  for attempt in 1 2 3 4; do
    if apt-get -o DPkg::Lock::Timeout=300 -o Acquire::Retries=3 update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -o Acquire::Retries=3 \
        install -y -qq --no-install-recommends "${missing[@]}" >/dev/null; then
      return 0
    fi
    log "apt attempt $attempt failed; retrying"
    sleep $((attempt * 5))
  done
  die "could not install ${missing[*]}"
}

# Runs a command with bounded retries (network-bound installs).
retry() {
  local attempt
  for attempt in 1 2 3; do
    "$@" && return 0
    log "attempt $attempt of '$*' failed; retrying"
    sleep $((attempt * 5))
  done
  return 1
}

# A port that no TCP or UDP socket uses now (racy by nature: callers check the daemon started).
free_port() {
  local port hex
  while :; do
    port=$((20000 + RANDOM % 40000))
    hex=$(printf ':%04X ' "$port")
    cat /proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6 2>/dev/null | grep -q "$hex" || break
  done
  echo "$port"
}

# Waits until URL answers, at most $2 seconds.
wait_http() {
  local url=$1 deadline=$(($(date +%s) + ${2:-30}))
  while [ "$(date +%s)" -lt "$deadline" ]; do
    curl -fsS -m 2 "$url" >/dev/null 2>&1 && return 0
    sleep 0.3
  done
  return 1
}

# The newest file in $DIST matching a glob, e.g. latest_dist "harddrive-party_*_amd64.deb".
latest_dist() {
  find "$DIST" -maxdepth 1 -name "$1" -printf '%f\n' 2>/dev/null | sort -V | tail -n1 | sed "s|^.|$DIST/&|"
}
