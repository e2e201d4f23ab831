#!/usr/bin/env bash
# Profile-guided build of the host and of the native hyper baseline, on top of
# the `dist` profile: an instrumented build, a training run, and the build
# that uses the profile. Writes
#   target/pgo/use/<host triple>/dist/cyclone
#   target/pgo/use/<host triple>/dist/hyper-hello
# and prints the first path.
#
# The training serves components that bench/hello.sh does not measure:
# examples/limits (`GET /hello`, WASI 0.2, a fresh instance per request) and
# tests/guests/wasip3-probe (`GET /hello`, WASI 0.3, fresh and with instance
# reuse), each under wrk for TRAIN_SECS seconds; hyper-hello serves its own
# hello. Code the training does not run (websockets, key-value, outbound
# HTTP, TLS) gets no profile and is compiled as rarely used: measure your own
# workload before you ship this build.
#
# Usage: bench/pgo.sh   (env: TRAIN_SECS=8)
# Needs wrk (installed with apt-get when missing and run as root) and rustup's
# llvm-tools component (added when missing). Each build has its own folder under
# target/pgo, because the compiler flags differ, and the first of each builds
# every crate (as long as a `dist` build: 13 minutes here on 2 cores).
set -euo pipefail

TRAIN_SECS=${TRAIN_SECS:-8}

source "$(dirname "$0")/lib.sh"
need_apt wrk wrk

cd "$root"
triple=$(rustc -vV | sed -n 's/^host: //p')
profdata="$(rustc --print sysroot)/lib/rustlib/$triple/bin/llvm-profdata"
if [ ! -x "$profdata" ]; then
    echo "bench: adding rustup's llvm-tools component (for llvm-profdata)" >&2
    rustup component add llvm-tools >/dev/null
fi

# build FOLDER RUSTFLAGS: the dist host and hyper-hello into target/pgo/FOLDER.
# --target keeps the flags off build scripts and procedural macros.
build() {
    RUSTFLAGS="$2" CARGO_TARGET_DIR="$root/target/pgo/$1" \
        cargo build --quiet --profile dist --target "$triple" -p cyclone-host -p hyper-hello
}

# Fixed paths, so that a second run reuses the instrumented build.
raw="$root/target/pgo/raw"
gen="$root/target/pgo/gen/$triple/dist"
echo "bench: instrumented build" >&2
build gen "-Cprofile-generate=$raw"

# train URL BINARY ARGS...: runs BINARY ARGS (which serves URL) under wrk at
# URL, then stops it with SIGINT: a process that exits normally writes its
# profile.
train() {
    local url=$1
    shift
    "$@" >"$work/train.log" 2>&1 &
    local pid=$!
    wait_url "$url"
    wrk -t2 -c64 -d"${TRAIN_SECS}s" "$url" >/dev/null
    kill -INT "$pid"
    wait "$pid" || { echo "bench: $1 did not exit cleanly under training" >&2; cat "$work/train.log" >&2; exit 1; }
}

# make_profile: trains the instrumented binaries, and sets $profile to the
# merged profile, named by its contents (a new profile changes the flags of
# the next build, and so rebuilds it).
make_profile() {
    rm -rf "$raw" "$root"/target/pgo/*.profdata
    cargo build --quiet --profile guest --target wasm32-wasip2 -p limits -p wasip3-probe
    local guests="$root/target/wasm32-wasip2/guest" target port
    app_table probe "$guests/wasip3_probe.wasm" "instance_reuse = {}" >"$work/reuse.toml"
    for target in "$guests/limits.wasm" "$guests/wasip3_probe.wasm" "$work/reuse.toml"; do
        port=$(free_port)
        train "http://127.0.0.1:$port/hello" "$gen/cyclone" serve --listen "127.0.0.1:$port" "$target"
    done
    port=$(free_port)
    train "http://127.0.0.1:$port/" "$gen/hyper-hello" "127.0.0.1:$port"
    "$profdata" merge -o "$work/merged.profdata" "$raw"
    profile="$root/target/pgo/$(sha256sum "$work/merged.profdata" | cut -c1-16).profdata"
    mv "$work/merged.profdata" "$profile"
}

# A profile newer than both instrumented binaries was made from them: it is
# used again, so that a second run builds nothing.
profile=$(ls -t "$root"/target/pgo/*.profdata 2>/dev/null | head -n 1 || true)
if [ -z "$profile" ] || [ "$gen/cyclone" -nt "$profile" ] || [ "$gen/hyper-hello" -nt "$profile" ]; then
    make_profile
fi
echo "bench: build with the profile" >&2
build use "-Cprofile-use=$profile"
echo "$root/target/pgo/use/$triple/dist/cyclone"
