# shellcheck shell=bash
# Sourced by ci/bench. Ceilings measured in the same run as the transfer (issue 16): what
# loopback carries on this machine without harddrive-party's own work, so the transfer's
# MB/s reads as a ratio that does not move with the machine.
#   raw quinn: the `ceiling` example, two endpoints in one process built by the daemon's own
#              QuicNode (same TLS, suites, congestion controller, windows), bytes discarded
#   TCP:       iperf3 if installed, else the same example's loopback copy loop
#   sendme:    only with BENCH_SENDME=PATH, an anchor: `sendme send` / `sendme receive` of the
#              same file in a network namespace of our own with only loopback (no relays)
# Each is run once with the transfer's size.

ceilings_stage() {
    stage_begin ceilings
    local bin="${BENCH_CEILING_BIN:-}" out port iperf_pid
    if [[ -z "$bin" ]]; then
        (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -p harddrive-party --example ceiling) \
            || die "ceilings: cargo build --example ceiling failed"
        bin="$TARGET_DIR/release/examples/ceiling"
    fi
    out="$("$bin" quic "$TRANSFER_BYTES")" || die "ceilings: the raw quinn run failed: $out"
    CEIL_QUIC_MBPS="$(sed -n 's/.*mbps=\([0-9.]*\).*/\1/p' <<< "$out")"
    CEIL_QUIC_CPU="$(sed -n 's/.*cpu_secs=\([0-9.]*\).*/\1/p' <<< "$out")"
    if command -v iperf3 >/dev/null; then
        port="$(free_port)"
        iperf3 -s -1 -B 127.0.0.1 -p "$port" > /dev/null 2>&1 &
        iperf_pid=$!
        sleep 0.5
        out="$(iperf3 -c 127.0.0.1 -p "$port" -n "$TRANSFER_BYTES" -f m)" || die "ceilings: iperf3 failed"
        wait "$iperf_pid" || true
        # The receiver's line: "... sec  N MBytes  R Mbits/sec  receiver"
        CEIL_TCP_MBPS="$(awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i == "Mbits/sec") print $(i - 1) / 8 * 1.048576 }' <<< "$out" | tail -n 1)"
        CEIL_TCP_HOW="iperf3"
    else
        out="$("$bin" tcp "$TRANSFER_BYTES")" || die "ceilings: the TCP run failed: $out"
        CEIL_TCP_MBPS="$(sed -n 's/.*mbps=\([0-9.]*\).*/\1/p' <<< "$out")"
        CEIL_TCP_HOW="a 1 MiB copy loop; no iperf3 here"
    fi
    log "ceilings: raw quinn $(fmt "$CEIL_QUIC_MBPS" 0) MB/s, TCP $(fmt "$CEIL_TCP_MBPS" 0) MB/s ($CEIL_TCP_HOW)"
    CEIL_SENDME_MBPS=""
    [[ -z "${BENCH_SENDME:-}" ]] || sendme_anchor
    stage_end
}

# BENCH_SENDME=PATH: sendme in a namespace made here, with only its loopback up, so neither
# relays nor discovery reach anything; the namespace is removed on return.
sendme_anchor() {
    local ns="hdp-bench-sendme-$$" dir="$WORK/sendme" ticket t0 t1 send_pid
    mkdir -p "$dir/send" "$dir/recv"
    head -c "$TRANSFER_BYTES" /dev/urandom > "$dir/send/anchor.bin"
    ip netns add "$ns" || die "sendme: cannot make a network namespace"
    ip -n "$ns" link set lo up
    (cd "$dir/send" && ip netns exec "$ns" "$BENCH_SENDME" send anchor.bin > "$dir/send.out" 2>&1) &
    send_pid=$!
    for _ in $(seq 1 300); do
        ticket="$(grep -o 'blob[a-z0-9]*' "$dir/send.out" | head -n 1 || true)"
        [[ -n "$ticket" ]] && break
        sleep 0.1
    done
    if [[ -z "$ticket" ]]; then
        kill "$send_pid" 2>/dev/null || true
        ip netns del "$ns"
        die "sendme: no ticket from 'sendme send': $(head -c 500 "$dir/send.out")"
    fi
    t0="$(now)"
    (cd "$dir/recv" && timeout "$TIMEOUT" ip netns exec "$ns" "$BENCH_SENDME" receive "$ticket" > "$dir/recv.out" 2>&1) \
        || { kill "$send_pid" 2>/dev/null || true; ip netns del "$ns"; die "sendme: receive failed: $(tail -c 500 "$dir/recv.out")"; }
    t1="$(now)"
    kill "$send_pid" 2>/dev/null || true
    wait "$send_pid" 2>/dev/null || true
    ip netns del "$ns"
    cmp -s "$dir/send/anchor.bin" "$dir/recv/anchor.bin" || die "sendme: the received file differs"
    CEIL_SENDME_MBPS="$(calc "$TRANSFER_BYTES / 1000000 / ($t1 - $t0)")"
    rm -rf "$dir"
}

ratio_line() { # ratio_line LABEL CEILING_MBPS [TARGET, e.g. ">= 0.85"]
    local ratio verdict=""
    ratio="$(calc "$MBPS / $2")"
    [[ -z "${3:-}" ]] || verdict="$(yesno "$ratio $3")"
    echo "| our transfer ÷ $1 | $(fmt "$ratio" 2) ($(fmt "$MBPS" 0) / $(fmt "$2" 0) MB/s) | | ${3:-} | $verdict |"
}

ceilings_lines() {
    echo "| ceiling: raw quinn, one stream, same TLS and transport settings, $TRANSFER_MIB MiB discarded | $(fmt "$CEIL_QUIC_MBPS" 0) MB/s, $(fmt "$(calc "$CEIL_QUIC_CPU / $GIB")" 2) CPU s per GiB (both ends) | | | |"
    echo "| ceiling: TCP over loopback ($CEIL_TCP_HOW) | $(fmt "$CEIL_TCP_MBPS" 0) MB/s | | | |"
    ratio_line "raw quinn" "$CEIL_QUIC_MBPS" ">= 0.85"
    ratio_line "TCP" "$CEIL_TCP_MBPS"
    if [[ -n "$CEIL_SENDME_MBPS" ]]; then
        echo "| anchor: sendme, same file, loopback-only namespace | $(fmt "$CEIL_SENDME_MBPS" 0) MB/s | | | |"
        ratio_line "sendme" "$CEIL_SENDME_MBPS" ">= 2.5"
    fi
}
