# shellcheck shell=bash
# Sourced by ci/bench: the many-small-files stage (issue 16). A friend's folder of
# BENCH_SMALL_FILES files of 4 KiB (default 10,000, in 10 subfolders), hashed by the sharer
# beforehand (a library shared for a while), downloaded on loopback. The time runs from the
# `download` command to the receiver's "download … finished" log line (tracing timestamps, so
# the client's 300 ms polling does not count). Every file is compared with its original.

small_files_stage() {
    stage_begin small-files
    local n="${BENCH_SMALL_FILES:-10000}" d t0 t1 deadline name
    mkdir -p "$WORK/smallshare/small" "$WORK/empty-share"
    # One read of urandom per subfolder, cut into files: a process per file would take longer
    # than the download.
    for d in 0 1 2 3 4 5 6 7 8 9; do
        mkdir -p "$WORK/smallshare/small/d$d"
        head -c $(( (n / 10 + (d < n % 10)) * 4096 )) /dev/urandom \
            | (cd "$WORK/smallshare/small/d$d" && split -a 6 -d -b 4096 - f) \
            || die "small-files: could not make the files"
    done
    start_daemon smallsend "$WORK/smallshare" --background-hash-rate 0
    start_daemon smallrecv "$WORK/empty-share"
    wait_api smallsend
    wait_api smallrecv
    deadline=$(( SECONDS + TIMEOUT ))
    until hdp smallsend info --json 2>/dev/null \
        | perl -0ne 'exit !(/"active"\s*:\s*false/ && /"hashed_files"\s*:\s*'"$n"'\b/)'; do
        (( SECONDS < deadline )) || die "small-files: the sharer did not hash $n files"
        sleep 0.2
    done
    befriend smallrecv smallsend
    name="$(json_field "$WORK/smallsend/info.json" name)"
    local recv_pid send_pid c0r c0s
    recv_pid="$(pid_of smallrecv)"
    send_pid="$(pid_of smallsend)"
    c0r="$(cpu_ticks "$recv_pid")"
    c0s="$(cpu_ticks "$send_pid")"
    t0="$(now)"
    hdp smallrecv download "$name/smallshare/small" --wait -q \
        || die "small-files: the folder download failed"
    t1="$(log_time "$WORK/smallrecv/daemon.log" "download .*/small finished")" \
        || die "small-files: no 'finished' line in the receiver's log"
    SMALL_N="$n"
    SMALL_SECS="$(calc "$t1 - $t0")"
    SMALL_RATE="$(calc "$n / $SMALL_SECS")"
    SMALL_CPU_RECV="$(calc "($(cpu_ticks "$recv_pid" | awk '{ print $1 + $2 }') - $(echo "$c0r" | awk '{ print $1 + $2 }')) / $HZ")"
    SMALL_CPU_SEND="$(calc "($(cpu_ticks "$send_pid" | awk '{ print $1 + $2 }') - $(echo "$c0s" | awk '{ print $1 + $2 }')) / $HZ")"
    diff -r -q "$WORK/smallshare/small" "$WORK/smallrecv/dl/$name/smallshare/small" > /dev/null \
        || die "small-files: the downloaded folder differs from the original"
    stop_daemon smallsend
    stop_daemon smallrecv
    rm -rf "$WORK/smallshare" "$WORK/smallrecv/dl"
    log "small-files: $n files in $(fmt "$SMALL_SECS" 2) s, $(fmt "$SMALL_RATE" 0) files/s; CPU receiver $(fmt "$SMALL_CPU_RECV" 2) s, sender $(fmt "$SMALL_CPU_SEND" 2) s"
    stage_end
}

small_files_line() {
    echo "| a folder of $SMALL_N files of 4 KiB from a friend, hashed by the sharer beforehand (download → receiver's \`finished\` line) | $(fmt "$SMALL_RATE" 0) files/s ($(fmt "$SMALL_SECS" 2) s; CPU receiver $(fmt "$SMALL_CPU_RECV" 2) s, sender $(fmt "$SMALL_CPU_SEND" 2) s) | 629 files/s before issue 16 | ≥ 3,000 files/s | $(yesno "$SMALL_RATE >= 3000") |"
}
