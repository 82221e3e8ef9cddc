# shellcheck shell=bash
# The cipher stage of ci/bench (sourced by it; BENCH_ONLY=cipher runs it alone): AES-GCM
# against ChaCha20-Poly1305 through the rustls QUIC packet keys the daemon uses
# (ci/cipher-speed: seal and open 64 MiB of 1452-byte packets on one core). Natively on
# this machine, and for aarch64 and armv7 under qemu-user, where only the ratio between the
# suites means anything (qemu's speed is not the board's).
#
#   BENCH_CIPHER_MIB=N       data sealed and opened per suite [default: 64]
#   BENCH_CIPHER_CROSS=0     skip the ARM builds (they need packaging/build-static's tools:
#                            Debian's rustc-web with std sources, zig and cargo-zigbuild in
#                            $HDP_TOOLS/zig, and qemu-user-static)
#   BENCH_CIPHER_TARGETS="…" the cross targets [default: aarch64-unknown-linux-musl
#                            armv7-unknown-linux-musleabihf]
# aarch64 runs as qemu's cortex-a72, which has the crypto extension (qemu 7.2 cannot take it
# away; the Raspberry Pi 4's Cortex-A72 has none); armv7 as a cortex-a7 (NEON, no AES
# instructions: the usual 32-bit board, and how 32-bit ARM is counted anyway).

CIPHER_LINES=()

# cipher_line LABEL OUTPUT : a table line from cipher-speed's output
cipher_line() {
    local label="$1" out="$2" aes chacha aes_hw
    aes="$(awk '$1 == "AES-128-GCM" { print $2 }' <<< "$out")"
    chacha="$(awk '$1 == "ChaCha20-Poly1305" { print $2 }' <<< "$out")"
    aes_hw="$(awk '$1 == "aes-instructions" { print $2 }' <<< "$out")"
    [[ -n "$aes" && -n "$chacha" ]] || die "cipher: no figures from $label: $out"
    CIPHER_LINES+=("| seal + open, $label (AES instructions seen: $aes_hw) | AES-128-GCM $aes MB/s, ChaCha20-Poly1305 $chacha MB/s | ChaCha20 at $(fmt "$(calc "$chacha / $aes")" 2)× AES-GCM | \`auto\` picks $( [[ "$aes_hw" == true ]] && echo AES-GCM || echo ChaCha20 ) | |")
}

# cipher_qemu LABEL COMMAND... : a table line, or a line saying qemu did not run it
cipher_qemu() {
    local label="$1" out
    shift
    if out="$("$@")"; then
        cipher_line "$label" "$out"
    else
        CIPHER_LINES+=("| seal + open, $label | qemu failed | | | |")
    fi
}

cipher_cross_build() { # cipher_cross_build TRIPLE -> path of the binary
    local t="$1" tools="${HDP_TOOLS:-/opt/hdp-tools}"
    (
        cd "$ROOT"
        export PATH="$tools/zig/bin:/usr/bin:/bin:$PATH" RUSTC=/usr/bin/rustc RUSTC_BOOTSTRAP=1
        unset RUSTUP_TOOLCHAIN RUSTFLAGS CARGO_ENCODED_RUSTFLAGS
        CARGO_TARGET_DIR="$TARGET_DIR/cross" /usr/bin/cargo zigbuild --release --locked \
            -p cipher-speed --target "$t" -Zbuild-std=std,panic_abort >&2
    ) || return 1
    echo "$TARGET_DIR/cross/$t/release/cipher-speed"
}

cipher_stage() {
    local mib="${BENCH_CIPHER_MIB:-64}" native t bin
    stage_begin cipher
    [[ "${BENCH_CIPHER_CROSS:-1}" == 0 ]] || apt_install qemu-user-static
    if [[ -z "${BENCH_CIPHER_BIN:-}" ]]; then
        (cd "$ROOT" && CARGO_TARGET_DIR="$TARGET_DIR" cargo build --release -p cipher-speed) \
            || die "cipher: cargo build -p cipher-speed failed"
    fi
    native="${BENCH_CIPHER_BIN:-$TARGET_DIR/release/cipher-speed}"
    cipher_line "$(uname -m) native" "$("$native" "$mib")"
    if [[ "${BENCH_CIPHER_CROSS:-1}" != 0 ]]; then
        for t in ${BENCH_CIPHER_TARGETS:-aarch64-unknown-linux-musl armv7-unknown-linux-musleabihf}; do
            if ! bin="$(cipher_cross_build "$t")"; then
                CIPHER_LINES+=("| seal + open, $t under qemu | not built (see the log) | | | |")
                continue
            fi
            case "$t" in
                aarch64-*) cipher_qemu "$t, qemu cortex-a72" qemu-aarch64-static -cpu cortex-a72 "$bin" "$mib" ;;
                *) cipher_qemu "$t, qemu cortex-a7" qemu-arm-static -cpu cortex-a7 "$bin" "$mib" ;;
            esac
        done
    fi
    stage_end
}

cipher_lines() {
    local line
    for line in "${CIPHER_LINES[@]}"; do echo "$line"; done
}
