# shellcheck shell=bash
# Sourced by ci/bench. Many peers (issue 16): one file from one sharer to one downloader (the
# pair), to three downloaders at once (fan-out), and to one downloader from three sharers of
# the same content (swarm). Aggregate MB/s and CPU per GiB of the busy side of each, against
# the pair measured in the same run. Runnable alone: BENCH_ONLY=many-peers.
#   BENCH_MANY_MIB=N  size of the file [default: 512, quick mode 128]

# many_cpu NAME... -> CPU seconds the named daemons have used so far
many_cpu() {
    local name total=0 u s
    for name in "$@"; do
        read -r u s < <(cpu_ticks "$(pid_of "$name")")
        total=$(( total + u + s ))
    done
    calc "$total / $HZ"
}

# many_download PATH WHO... -> wall seconds for every WHO to download PATH at once
many_download() {
    local path="$1" who t0 pids=()
    shift
    t0="$(now)"
    for who in "$@"; do
        timeout "$TIMEOUT" "$BIN" --storage "$WORK/$who/storage" --ui-address "$(cat "$WORK/$who/ui")" \
            download "$path" --wait -q &
        pids+=($!)
    done
    for who in "${pids[@]}"; do wait "$who" || die "many-peers: a download of $path failed or timed out"; done
    calc "$(now) - $t0"
}

# many_hashed NAME FILES: waits until the daemon has hashed FILES files (bounded)
many_hashed() {
    local deadline=$(( SECONDS + TIMEOUT ))
    until hdp "$1" info --json 2>/dev/null | perl -0ne 'exit !(/"active"\s*:\s*false/ && /"hashed_files"\s*:\s*'"$2"'\b/)'; do
        (( SECONDS < deadline )) || die "many-peers: $1 did not hash its files in ${TIMEOUT} s"
        sleep 0.2
    done
}

many_verify() { # many_verify WHO SHARER_NAME
    [[ "$(sha256sum < "$WORK/$1/dl/$2/manyshare/many.bin")" == "$MANY_SHA" ]] \
        || die "many-peers: $1's copy differs"
}

# many_round WATCHED WHO...: every WHO downloads the file at once (an earlier copy removed
# first, each copy verified after); sets ROUND_MBPS (all of them together) and ROUND_CPU
# (WATCHED's CPU seconds per GiB moved).
many_round() {
    local watched=$1 cpu secs who
    shift
    for who in "$@"; do rm -f "$WORK/$who/dl/$MANY_FIRST/manyshare/many.bin"; done
    cpu="$(many_cpu "$watched")"
    secs="$(many_download "$MANY_FIRST/manyshare/many.bin" "$@")"
    ROUND_MBPS="$(calc "$# * $MANY_BYTES / 1000000 / $secs")"
    ROUND_CPU="$(calc "($(many_cpu "$watched") - $cpu) / ($# * $MANY_BYTES / 1073741824)")"
    for who in "$@"; do many_verify "$who" "$MANY_FIRST"; done
}

many_peers_stage() {
    local mib bytes who seeder
    mib="${BENCH_MANY_MIB:-$([[ "$MODE" == quick* ]] && echo 128 || echo 512)}"
    bytes=$(( mib * 1048576 ))
    MANY_MIB="$mib"
    stage_begin many-peers
    mkdir -p "$WORK/manyshare" "$WORK/empty-share"
    head -c "$bytes" /dev/urandom > "$WORK/manyshare/many.bin"
    MANY_SHA="$(sha256sum < "$WORK/manyshare/many.bin")"
    sync
    # Three sharers of the same content (the swarm), the first also the only one of the pair
    # and the fan-out; three downloaders.
    for seeder in seed1 seed2 seed3; do
        start_daemon "$seeder" "$WORK/manyshare" --background-hash-rate 0
    done
    for who in get1 get2 get3; do start_daemon "$who" "$WORK/empty-share"; done
    for who in seed1 seed2 seed3 get1 get2 get3; do wait_api "$who"; done
    for seeder in seed1 seed2 seed3; do many_hashed "$seeder" 1; done
    for who in get1 get2 get3; do befriend "$who" seed1; done
    MANY_FIRST="$(json_field "$WORK/seed1/info.json" name)"
    MANY_BYTES="$bytes"

    many_round seed1 get1   # the pair
    MANY_PAIR_MBPS="$ROUND_MBPS"; MANY_PAIR_SEND_CPU="$ROUND_CPU"
    many_round seed1 get1 get2 get3   # fan-out: the same file to three downloaders at once
    MANY_FAN_MBPS="$ROUND_MBPS"; MANY_FAN_SEND_CPU="$ROUND_CPU"
    # Swarm: get3 from all three sharers, against its own figure from seed1 alone.
    many_round get3 get3
    MANY_PAIR_RECV_MBPS="$ROUND_MBPS"; MANY_PAIR_RECV_CPU="$ROUND_CPU"
    for seeder in seed2 seed3; do befriend get3 "$seeder"; done
    many_round get3 get3
    MANY_SWARM_MBPS="$ROUND_MBPS"; MANY_SWARM_RECV_CPU="$ROUND_CPU"
    MANY_SWARM_SOURCES="$(hdp get3 transfers --json \
        | jq '[.[] | select(.direction == "download")] | max_by(.id) | [.sources[] | select(.bytes > 0)] | length')"
    for who in seed1 seed2 seed3 get1 get2 get3; do stop_daemon "$who"; done
    rm -rf "$WORK/manyshare" "$WORK"/seed? "$WORK"/get?
    log "many-peers: pair $(fmt "$MANY_PAIR_MBPS" 0) MB/s, fan-out $(fmt "$MANY_FAN_MBPS" 0) MB/s, swarm $(fmt "$MANY_SWARM_MBPS" 0) MB/s (pair into the same downloader $(fmt "$MANY_PAIR_RECV_MBPS" 0))"
    stage_end
}

many_peers_lines() {
    local fan_ratio fan_cpu swarm_ratio swarm_cpu
    fan_ratio="$(calc "$MANY_FAN_MBPS / $MANY_PAIR_MBPS")"
    fan_cpu="$(calc "$MANY_FAN_SEND_CPU / $MANY_PAIR_SEND_CPU")"
    swarm_ratio="$(calc "$MANY_SWARM_MBPS / $MANY_PAIR_RECV_MBPS")"
    swarm_cpu="$(calc "$MANY_SWARM_RECV_CPU / $MANY_PAIR_RECV_CPU")"
    echo "| many peers: one sharer to three downloaders at once, $MANY_MIB MiB each (aggregate ÷ one pair) | $(fmt "$MANY_FAN_MBPS" 0) / $(fmt "$MANY_PAIR_MBPS" 0) MB/s, ratio $(fmt "$fan_ratio" 2) | | ≥ 1 | $(yesno "$fan_ratio >= 1") |"
    echo "| many peers: sharer CPU per GiB sent, fan-out ÷ pair | $(fmt "$MANY_FAN_SEND_CPU" 2) / $(fmt "$MANY_PAIR_SEND_CPU" 2) s, ratio $(fmt "$fan_cpu" 2) | | ≤ 1.2 | $(yesno "$fan_cpu <= 1.2") |"
    echo "| many peers: one downloader from three sharers of the same file (÷ from one) | $(fmt "$MANY_SWARM_MBPS" 0) / $(fmt "$MANY_PAIR_RECV_MBPS" 0) MB/s, ratio $(fmt "$swarm_ratio" 2); sources that sent bytes: ${MANY_SWARM_SOURCES:-?} | | ≥ 1 | $(yesno "$swarm_ratio >= 1") |"
    echo "| many peers: downloader CPU per GiB, swarm ÷ one source | $(fmt "$MANY_SWARM_RECV_CPU" 2) / $(fmt "$MANY_PAIR_RECV_CPU" 2) s, ratio $(fmt "$swarm_cpu" 2) | | ≤ 1.2 | $(yesno "$swarm_cpu <= 1.2") |"
}
