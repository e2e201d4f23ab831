#!/usr/bin/env bash
# Hello-world throughput with a fresh instance per request: cyclone against
# native hyper and `wasmtime serve` (defaults, and with tuned pooling flags),
# in one run, alternating the servers each round. Writes the table to
# bench/RESULTS.md (between the "hello" markers) and prints it.
#
# Usage: bench/hello.sh            (env: ROUNDS=3 DURATION=10 CONNECTIONS=64 WRK_THREADS=2)
# Needs wrk (installed with apt-get when missing and run as root) and
# wasmtime-cli 48, installed from crates.io into bench/.cache when missing.
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-64}
WRK_THREADS=${WRK_THREADS:-2}

source "$(dirname "$0")/lib.sh"
need_apt wrk wrk
need_wasmtime

cd "$root"
cargo build --quiet --release -p cyclone-host -p hyper-hello
cargo build --quiet --profile guest --target wasm32-wasip2 -p hello
hello="$root/target/wasm32-wasip2/guest/hello.wasm"

# start NAME PORT: runs the server in the background, sets $server_pid.
# Each branch execs, so $! is the server itself and `kill` stops it.
start() {
    local port=$2
    case $1 in
        cyclone) exec "$root/target/release/cyclone" serve --listen "127.0.0.1:$port" "$hello" ;;
        hyper) exec "$root/target/release/hyper-hello" "127.0.0.1:$port" ;;
        # -Scli: the component (like any Rust std component) imports wasi:cli.
        wasmtime-serve) exec "$wasmtime" serve -Scli --addr "127.0.0.1:$port" "$hello" ;;
        wasmtime-serve-tuned)
            exec "$wasmtime" serve -Scli --addr "127.0.0.1:$port" \
                -O pooling-memory-keep-resident=2097152 \
                -O pooling-table-keep-resident=65536 \
                -O pooling-pagemap-scan=y "$hello" ;;
    esac >"$work/$1.log" 2>&1 &
    server_pid=$!
    wait_url "http://127.0.0.1:$port/"
}

servers=(hyper cyclone wasmtime-serve wasmtime-serve-tuned)
for round in $(seq 1 "$ROUNDS"); do
    for name in "${servers[@]}"; do
        port=$(free_port)
        start "$name" "$port"
        url="http://127.0.0.1:$port/"
        [ "$(curl -s "$url")" = "Hello, world!" ] || { echo "bench: $name answered wrong" >&2; exit 1; }
        wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${WARMUP}s" "$url" >/dev/null
        cpu_before=$(cpu_ticks "$server_pid")
        wrk -t"$WRK_THREADS" -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url" >"$work/wrk.out"
        cpu_after=$(cpu_ticks "$server_pid")
        requests=$(awk '/requests in/ {print $1}' "$work/wrk.out")
        cpu_us=$(python3 -c "print(f'{($cpu_after - $cpu_before) * 1e6 / $(getconf CLK_TCK) / $requests:.1f}')")
        rps=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.out")
        p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.out")
        p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.out")
        errors=$(awk '/Non-2xx|Socket errors/ {print}' "$work/wrk.out" | tr '\n' ' ')
        echo "$name $round $rps $p50 $p99 $cpu_us ${errors:-none}" | tee -a "$work/results" >&2
        kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
    done
done

# Median requests/s per server (and the p50/p99 of that round).
table=$(python3 - "$work/results" <<'PY'
import sys, statistics
rows = {}
for line in open(sys.argv[1]):
    name, rnd, rps, p50, p99, cpu, *err = line.split(maxsplit=6)
    rows.setdefault(name, []).append((float(rps), p50, p99, " ".join(err).strip(), float(cpu)))
hyper = statistics.median(r[0] for r in rows["hyper"])
serve = statistics.median(r[0] for r in rows["wasmtime-serve"])
tuned = statistics.median(r[0] for r in rows["wasmtime-serve-tuned"])
print("| server | req/s (median) | p50 | p99 | server CPU per request | vs hyper | vs `wasmtime serve` | vs tuned `wasmtime serve` | all rounds (req/s) | errors |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---|---|")
for name in ["hyper", "cyclone", "wasmtime-serve", "wasmtime-serve-tuned"]:
    runs = sorted(rows[name], key=lambda r: r[0])
    med = runs[len(runs) // 2]
    print(f"| {name} | {med[0]:,.0f} | {med[1]} | {med[2]} | {med[4]:.1f} µs | {med[0]/hyper:.2f}x | {med[0]/serve:.2f}x | {med[0]/tuned:.2f}x "
          f"| {', '.join(f'{r[0]:,.0f}' for r in rows[name])} | {med[3]} |")
PY
)

header="Hello world, fresh instance per request: $(machine_line bench/hello.sh).
Server CPU per request = the server process's user + system time during the measured run / requests answered.
wrk -t$WRK_THREADS -c$CONNECTIONS, ${DURATION}s per run after ${WARMUP}s warm-up, $ROUNDS rounds alternating the servers, all on this machine (client and server share the cores). RUST_BACKTRACE unset. wasmtime-cli $WASMTIME_VERSION with \`-Scli\` (the component imports wasi:cli, as Rust std components do); tuned adds \`-O pooling-memory-keep-resident=2097152 -O pooling-table-keep-resident=65536 -O pooling-pagemap-scan=y\`."
write_section hello "Hello world" "$header" "$table"
echo "$table"
