# Shared helpers for ci/ and packaging/: stages with timing lines, messages, apt installs
# and other retries, free loopback ports, bounded waits, stopping our own processes.
# Source it, do not run it. It sets no build settings (packaging/lib.sh adds those), so
# ci/test can source it without changing what its cargo commands do.
# shellcheck shell=bash

log() { printf '%s\n' "--- $*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

# stage NAME COMMAND...: runs the command between "=== stage: NAME" and
# "=== timing: NAME <seconds> s" (the lines ci/test and ci/package print per stage).
stage() {
  local name=$1
  shift
  local t0
  t0=$(date +%s)
  echo "=== stage: $name"
  "$@"
  echo "=== timing: $name $(($(date +%s) - t0)) s"
}

# Installs the Debian packages that are missing, idempotently, with bounded retries; waits
# for another apt to release its lock instead of failing. Recommends are left out unless
# APT_RECOMMENDS=1.
apt_install() {
  local missing=() p recommends=--no-install-recommends
  [ "${APT_RECOMMENDS:-0}" = 0 ] || recommends=--install-recommends
  for p in "$@"; do
    dpkg-query -W -f='${Status}\n' "$p" 2>/dev/null | grep -q '^install ok installed$' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "apt-get install ${missing[*]}"
  local attempt
  for attempt in 1 2 3 4; do
    if apt-get -o DPkg::Lock::Timeout=300 -o Acquire::Retries=3 update -qq &&
      DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=300 -o Acquire::Retries=3 \
        install -y -qq "$recommends" "${missing[@]}" >/dev/null; then
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

# A loopback port that no TCP or UDP socket uses now (racy by nature: callers check that
# what they start came up). It is drawn from below the kernel's ephemeral range, so an
# outgoing connection cannot take it between this check and the bind (CI once saw that
# happen: "Address in use" on a port picked as free seconds before). Bounded: gives up
# after 200 tries.
free_port() {
  local port hex i ephemeral_low
  ephemeral_low=$(awk '{print $1}' /proc/sys/net/ipv4/ip_local_port_range 2>/dev/null) || true
  [[ "$ephemeral_low" =~ ^[0-9]+$ ]] && [ "$ephemeral_low" -gt 12000 ] || ephemeral_low=32768
  for ((i = 0; i < 200; i++)); do
    port=$((10000 + (RANDOM * 32768 + RANDOM) % (ephemeral_low - 10000)))
    hex=$(printf ':%04X ' "$port")
    if ! cat /proc/net/tcp /proc/net/tcp6 /proc/net/udp /proc/net/udp6 2>/dev/null | grep -q "$hex"; then
      echo "$port"
      return 0
    fi
  done
  die "no free port found"
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

# may_await_approval COMMAND...: runs a `connect` command that either links up (exit 0) or
# leaves our request with a peer that does not know us yet (exit 3: the first `connect` of
# two people befriending each other, whose message is then not shown). Fails on anything
# else, showing its message.
may_await_approval() {
  local rc=0 said
  { said=$("$@" 2>&1 1>&3 3>&-) || rc=$?; } 3>&1
  case $rc in
    0 | 3) return 0 ;;
    *) printf '%s\n' "$said" >&2; return 1 ;;
  esac
}

# stop_pid PID [SECONDS]: SIGTERM to a process this script started, a bounded wait (default
# 10 s), then SIGKILL; reaps it. Quiet when it is gone already.
stop_pid() {
  local pid=$1 i limit=$((${2:-10} * 10))
  [ -n "$pid" ] || return 0
  kill -TERM "$pid" 2>/dev/null || { wait "$pid" 2>/dev/null || true; return 0; }
  for ((i = 0; i < limit; i++)); do
    kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  kill -KILL "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}

# daemon_api STORAGE PORT METHOD PATH [BODY]: an API request to a daemon of ours on
# loopback, with the token from its storage directory; BODY is sent as JSON. Prints the
# answer; fails on an HTTP error or after 10 s.
daemon_api() {
  local storage=$1 port=$2 method=$3 path=$4 body=${5:-}
  curl -fsS -m 10 -X "$method" -H "Authorization: Bearer $(cat "$storage/api-token")" \
    ${body:+-H 'Content-Type: application/json' --data "$body"} "http://127.0.0.1:$port$path"
}
