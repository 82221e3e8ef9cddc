# A minimal Debian 12 root filesystem with systemd, made once with debootstrap and cached
# under target/ (delete target/pkg/rootfs to rebuild it). Source it; call ensure_rootfs,
# which prints the path. Tests boot or chroot into it with `systemd-nspawn -x`, so each run
# works on a throwaway copy and the cache stays clean.
# shellcheck shell=bash

ROOTFS_SUITE=${ROOTFS_SUITE:-bookworm}
ROOTFS_MIRROR=${ROOTFS_MIRROR:-http://deb.debian.org/debian}
# adduser: the package depends on it; systemd, systemd-sysv, dbus: a bootable system.
ROOTFS_INCLUDE=systemd,systemd-sysv,dbus,adduser
ROOTFS_DIR=${ROOTFS_DIR:-$PKG_ROOT/target/pkg/rootfs/$ROOTFS_SUITE}

ensure_rootfs() {
  local stamp="$ROOTFS_SUITE $ROOTFS_INCLUDE"
  if [ -f "$ROOTFS_DIR/.hdp-rootfs" ] && [ "$(cat "$ROOTFS_DIR/.hdp-rootfs")" = "$stamp" ]; then
    echo "$ROOTFS_DIR"
    return 0
  fi
  apt_install debootstrap systemd-container
  local tmp="$ROOTFS_DIR.tmp" attempt
  mkdir -p "$(dirname "$ROOTFS_DIR")"
  for attempt in 1 2 3; do
    rm -rf "$tmp"
    log "debootstrap $ROOTFS_SUITE into $ROOTFS_DIR (attempt $attempt)"
    if timeout 900 debootstrap --variant=minbase --include="$ROOTFS_INCLUDE" \
      "$ROOTFS_SUITE" "$tmp" "$ROOTFS_MIRROR" >"$tmp.log" 2>&1; then
      # Small and quiet: no apt caches, a fixed machine id for nspawn, a known hostname.
      rm -rf "$tmp"/var/cache/apt/archives/*.deb "$tmp"/var/lib/apt/lists/*
      echo hdp-test >"$tmp/etc/hostname"
      : >"$tmp/etc/machine-id"
      echo "$stamp" >"$tmp/.hdp-rootfs"
      rm -rf "$ROOTFS_DIR"
      mv "$tmp" "$ROOTFS_DIR"
      rm -f "$tmp.log"
      echo "$ROOTFS_DIR"
      return 0
    fi
    tail -n 20 "$tmp.log" >&2
    sleep $((attempt * 10))
  done
  rm -rf "$tmp"
  die "debootstrap failed 3 times"
}
