# Shared by the bench scripts: sourced, not run. Sets $root, $cache, $work
# (removed on exit, with any server still running), $wasmtime; unsets
# RUST_BACKTRACE (wasmtime records a backtrace on every store drop when it is
# set).

WASMTIME_VERSION=48.0.8
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cache="$root/bench/.cache"
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null || true; rm -rf "$work"' EXIT
unset RUST_BACKTRACE RUST_LIB_BACKTRACE

# Every script builds guest components: add their target when rustup lacks it.
# (The list is read whole first: grep -q stopping early under pipefail
# would read as a missing target.)
if command -v rustup >/dev/null && ! grep -qx wasm32-wasip2 <<<"$(rustup target list --installed)"; then
    echo "bench: adding the wasm32-wasip2 target (rustup target add wasm32-wasip2)" >&2
    rustup target add wasm32-wasip2 >/dev/null
fi

# need_apt PROGRAM PACKAGE: installs PACKAGE with apt-get when PROGRAM is missing.
need_apt() {
    command -v "$1" >/dev/null && return 0
    if [ "$(id -u)" = 0 ]; then
        apt-get install -y "$2" >/dev/null || { apt-get update >/dev/null && apt-get install -y "$2" >/dev/null; }
    else
        echo "bench: $1 is missing (apt-get install $2)" >&2
        exit 1
    fi
}

# need_map_count N: raises vm.max_map_count to N when it is lower (as root;
# otherwise says which sysctl to run and stops).
need_map_count() {
    local have
    have=$(cat /proc/sys/vm/max_map_count 2>/dev/null) || return 0
    [ "$have" -ge "$1" ] && return 0
    if [ "$(id -u)" = 0 ]; then
        echo "bench: raising vm.max_map_count from $have to $1" >&2
        sysctl -qw "vm.max_map_count=$1"
    else
        echo "bench: vm.max_map_count is $have; this run needs $1 (sysctl -w vm.max_map_count=$1)" >&2
        exit 1
    fi
}

# need_wasmtime: wasmtime-cli $WASMTIME_VERSION in $cache (built from crates.io once).
need_wasmtime() {
    wasmtime="$cache/bin/wasmtime"
    if ! "$wasmtime" --version 2>/dev/null | grep -q "$WASMTIME_VERSION"; then
        echo "bench: installing wasmtime-cli $WASMTIME_VERSION into $cache (several minutes)" >&2
        cargo install --quiet --locked wasmtime-cli --version "$WASMTIME_VERSION" --root "$cache"
    fi
}

# app_table NAME COMPONENT [LINE...]: prints the manifest table of an app
# NAME that serves COMPONENT at every path, with each LINE in it.
app_table() {
    printf '[apps.%s]\ncomponent = "%s"\nroutes = ["/..."]\n' "$1" "$2"
    shift 2
    [ $# -eq 0 ] || printf '%s\n' "$@"
}

# pool_table POOL: prints a [server] table with POOL instances and POOL
# queue places.
pool_table() {
    printf '[server]\nmax_instances = %s\nmax_queued = %s\n\n' "$1" "$1"
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# wait_url URL: waits up to 60 s for URL to answer at all.
wait_url() {
    for _ in $(seq 1 600); do
        if curl -s -o /dev/null "$1"; then return 0; fi
        sleep 0.1
    done
    echo "bench: $1 did not answer" >&2
    return 1
}

# CPU time (user + system, in clock ticks) process $1 has used so far.
cpu_ticks() {
    awk '{print $14 + $15}' "/proc/$1/stat"
}

# machine_line SCRIPT: what ran where, for a section header.
machine_line() {
    echo "\`$1\` on $(date -u +%F), $(nproc) cores ($(awk -F': ' '/model name/ {print $2; exit}' /proc/cpuinfo)), commit $(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo none)"
}

# write_section NAME TITLE HEADER TABLE: replaces the NAME section of
# bench/RESULTS.md (between <!-- NAME:start --> and <!-- NAME:end -->), then
# draws it as bench/NAME.png.
write_section() {
    local results="$root/bench/RESULTS.md"
    [ -f "$results" ] || printf '# Benchmark results\n\nEach section is written by the script it names; rerun the script to refresh it.\n' >"$results"
    python3 - "$results" "$1" "$2" "$3" "$4" <<'PY'
import sys, re
path, name, title, header, table = sys.argv[1:6]
text = open(path).read()
start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
section = f"{start}\n## {title}\n\n{header}\n\n{table}\n{end}"
if start in text:
    text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda m: section, text, flags=re.S)
else:
    text = text.rstrip("\n") + "\n\n" + section + "\n"
open(path, "w").write(text)
PY
    chart "$1"
}

# chart NAME: draws the NAME section of bench/RESULTS.md as bench/NAME.png
# (bench/chart.py; matplotlib is installed with pip when missing).
chart() {
    python3 -c 'import matplotlib' 2>/dev/null || python3 -m pip install --quiet matplotlib
    python3 "$root/bench/chart.py" "$1"
}

# watch_memory PID FILE: until PID exits, appends "RSS PSS" (KiB, from
# /proc/PID/smaps_rollup) to FILE once a second. PSS divides each page among
# the mappings sharing it, so read-only pages mapped by many instances count
# once in all; RSS counts them once per mapping.
watch_memory() {
    while [ -r "/proc/$1/smaps_rollup" ]; do
        awk '/^Rss:/ {r = $2} /^Pss:/ {p = $2} END {if (r) print r, p}' "/proc/$1/smaps_rollup" 2>/dev/null || true
        sleep 1
    done >>"$2"
}

# pss_growth FILE: the largest PSS in FILE minus the first, in KiB.
pss_growth() {
    awk 'NR == 1 {first = $2} $2 > max {max = $2} END {print max - first}' "$1"
}

# pooled_app NAME POOL [LINE...]: builds the release host, loadgen and the
# component NAME (guest profile), sets $component to it, and writes
# $work/cyclone.toml serving it at every path with POOL instances (and POOL
# queue places), plus each LINE in the app's table.
pooled_app() {
    local name=$1 pool=$2
    shift 2
    cargo build --quiet --release -p cyclone-host -p loadgen
    cargo build --quiet --profile guest --target wasm32-wasip2 -p "$name"
    component="$root/target/wasm32-wasip2/guest/$name.wasm"
    {
        pool_table "$pool"
        app_table "$name" "$component" "$@"
    } >"$work/cyclone.toml"
}
