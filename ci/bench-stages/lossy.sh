# shellcheck shell=bash
# The lossy-link stage of ci/bench (sourced by it; BENCH_ONLY=lossy runs it alone): a 4 MiB
# download across a link of 2 Mbit/s each way with 10 % random loss each way and an added
# delay, once per congestion controller, reported as a fraction of the link rate.
#
# Three network namespaces made here, none connected to the host: the sharer "a"
# (10.88.1.2), the downloader "b" (10.88.2.2) and between them "m", which holds the link:
# nft drops (numgen) and tbf rate on both of its egress interfaces, and the delay, a UDP
# relay (delay_relay.py) that b's datagrams to a's address reach through a DNAT; conntrack
# gives its answers a's address back, so b sees a plain path to a.
#
#   BENCH_LOSSY_MIB=N        download size [default: 4]
#   BENCH_LOSSY_DELAY_MS=N   delay added in each direction [default: 100]
#   BENCH_LOSSY_LOSS=N       percent dropped in each direction [default: 10]
#   BENCH_LOSSY_CC="a b"     the --congestion values measured [default: cubic bbr]

LOSSY_RATE_BPS=250000   # 2 Mbit/s
LOSSY_NETNS=()
LOSSY_LINES=()

lossy_ns() { ip netns exec "$LOSSY_PREFIX-$1" "${@:2}"; }

lossy_teardown() {
    local ns
    for ns in "${LOSSY_NETNS[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
    LOSSY_NETNS=()
}

lossy_lab() {
    local ns dev
    LOSSY_PREFIX="hdpl$$"
    for ns in a m b; do
        ip netns add "$LOSSY_PREFIX-$ns" || die "lossy: cannot create namespaces (root needed)"
        LOSSY_NETNS+=("$LOSSY_PREFIX-$ns")
        lossy_ns "$ns" ip link set lo up
    done
    lossy_ns a ip link add eth0 type veth peer name m1 netns "$LOSSY_PREFIX-m"
    lossy_ns b ip link add eth0 type veth peer name m2 netns "$LOSSY_PREFIX-m"
    lossy_ns a ip addr add 10.88.1.2/24 dev eth0
    lossy_ns b ip addr add 10.88.2.2/24 dev eth0
    lossy_ns m ip addr add 10.88.1.1/24 dev m1
    lossy_ns m ip addr add 10.88.2.1/24 dev m2
    for ns in a b; do lossy_ns "$ns" ip link set eth0 up; done
    lossy_ns m ip link set m1 up
    lossy_ns m ip link set m2 up
    lossy_ns b ip route add 10.88.1.0/24 via 10.88.2.1
    # m never forwards: the only way across is the relay.
    lossy_ns m nft -f - <<NFT || die "lossy: nft rules failed"
table ip lab {
    chain pre { type nat hook prerouting priority dstnat; iifname "m2" udp dport 4433 dnat to 10.88.2.1:4434; }
}
table netdev loss {
    chain to_a { type filter hook egress device "m1" priority 0; numgen random mod 100 < ${BENCH_LOSSY_LOSS:-10} counter drop; }
    chain to_b { type filter hook egress device "m2" priority 0; numgen random mod 100 < ${BENCH_LOSSY_LOSS:-10} counter drop; }
}
NFT
    for dev in m1 m2; do
        lossy_ns m tc qdisc add dev "$dev" root tbf rate 2mbit burst 32kb latency 400ms \
            || die "lossy: tbf on $dev failed"
    done
}

# lossy_hdp NS NAME ARGS... : a client command inside the daemon's namespace
lossy_hdp() {
    local ns="$1" name="$2"; shift 2
    lossy_ns "$ns" "$BIN" --storage "$WORK/$name/storage" --ui-address "$(cat "$WORK/$name/ui")" "$@"
}

# lossy_daemon NS NAME LISTEN ARGS... : like start_daemon, inside namespace NS
lossy_daemon() {
    local ns="$1" name="$2" listen="$3" dir="$WORK/$2" pid
    shift 3
    mkdir -p "$dir/storage" "$dir/dl" "$dir/share"
    echo "http://127.0.0.1:3030" > "$dir/ui"
    RUST_LOG=info ip netns exec "$LOSSY_PREFIX-$ns" "$BIN" --storage "$dir/storage" --ui-address "http://127.0.0.1:3030" \
        start --share-dir "$dir/share" --download-dir "$dir/dl" --listen "$listen" --no-mdns --no-stun --no-upnp "$@" \
        > "$dir/daemon.log" 2>&1 &
    pid=$!
    DAEMON_PIDS+=("$pid")
    echo "$pid" > "$dir/pid"
    local deadline=$(( SECONDS + 60 ))
    until lossy_hdp "$ns" "$name" info --json > "$dir/info.json" 2>/dev/null; do
        kill -0 "$pid" 2>/dev/null || die "lossy: daemon $name exited during start-up"
        (( SECONDS < deadline )) || die "lossy: daemon $name did not answer within 60 s"
        sleep 0.2
    done
}

# lossy_run CONGESTION : one download through a fresh lab; appends a table line
lossy_run() {
    local cc="$1" mib="${BENCH_LOSSY_MIB:-4}" delay="${BENCH_LOSSY_DELAY_MS:-100}" relay_pid
    local a="lossy-$cc-a" b="lossy-$cc-b" bname t0 t1 secs bytes dropped
    lossy_lab
    bytes=$(( mib * 1024 * 1024 ))
    mkdir -p "$WORK/$a/share"
    head -c "$bytes" /dev/urandom > "$WORK/$a/share/lossy.bin"
    lossy_daemon a "$a" 10.88.1.2:4433 --congestion "$cc"
    lossy_daemon b "$b" 10.88.2.2:4433 --congestion "$cc"
    ip netns exec "$LOSSY_PREFIX-m" python3 "$ROOT/ci/bench-stages/delay_relay.py" \
        10.88.2.1:4434 10.88.1.1 10.88.1.2:4433 "$delay" "$TIMEOUT" > "$WORK/relay-$cc.log" 2>&1 &
    relay_pid=$!
    DAEMON_PIDS+=("$relay_pid")
    sleep 0.5
    # a approves b below: until then `connect` exits 3 ("has not approved you yet").
    may_await_approval lossy_hdp b "$b" connect "$(json_field "$WORK/$a/info.json" announce_address)" > /dev/null \
        || die "lossy: $b could not connect to $a"
    bname="$(json_field "$WORK/$b/info.json" name)"
    local deadline=$(( SECONDS + 60 ))
    until lossy_hdp a "$a" approve "$bname" > /dev/null 2>&1; do
        (( SECONDS < deadline )) || die "lossy: $b's request never reached $a"
        sleep 0.5
    done
    # The sharer indexes its folder in the background; wait until the file is listed.
    deadline=$(( SECONDS + 60 ))
    until lossy_hdp b "$b" ls "$(json_field "$WORK/$a/info.json" name)/share" 2>/dev/null | grep -q lossy.bin; do
        (( SECONDS < deadline )) || die "lossy: $b never saw $a's file"
        sleep 0.5
    done
    t0="$(now)"
    timeout "$TIMEOUT" ip netns exec "$LOSSY_PREFIX-b" "$BIN" --storage "$WORK/$b/storage" \
        --ui-address "$(cat "$WORK/$b/ui")" download "$(json_field "$WORK/$a/info.json" name)/share/lossy.bin" --wait -q \
        || die "lossy: download with $cc failed or timed out"
    t1="$(log_time "$WORK/$b/daemon.log" 'download .*lossy\.bin finished')" || t1="$(now)"
    secs="$(calc "$t1 - $t0")"
    cmp -s "$WORK/$a/share/lossy.bin" "$(find "$WORK/$b/dl" -name lossy.bin | head -n1)" \
        || die "lossy: the downloaded file differs"
    dropped="$(lossy_ns m nft list table netdev loss | awk '/counter packets/ { for (i = 1; i < NF; i++) if ($i == "packets") s += $(i + 1) } END { print s + 0 }')"
    stop_daemon "$a"
    stop_daemon "$b"
    kill -TERM "$relay_pid" 2>/dev/null || true
    wait "$relay_pid" 2>/dev/null || true
    lossy_teardown
    LOSSY_LINES+=("| $mib MiB over 2 Mbit/s, ${BENCH_LOSSY_LOSS:-10} % loss and ${delay} ms each way, \`--congestion $cc\` | $(fmt "$secs" 1) s, $(fmt "$(calc "$bytes / $secs / 1000")" 0) kB/s ($dropped datagrams dropped) | $(fmt "$(calc "$bytes / $secs / $LOSSY_RATE_BPS")" 2)× the link rate | ≥ 0.60× | $(yesno "$bytes / $secs / $LOSSY_RATE_BPS >= 0.6") |")
}

lossy_stage() {
    local cc
    stage_begin lossy
    # A fresh machine has no nft: installed as ci/test does (iproute2 for ip).
    command -v nft >/dev/null || apt_install nftables
    command -v ip >/dev/null || apt_install iproute2
    for cc in ${BENCH_LOSSY_CC:-cubic bbr}; do lossy_run "$cc"; done
    stage_end
}

lossy_lines() {
    local line
    for line in "${LOSSY_LINES[@]}"; do echo "$line"; done
}
