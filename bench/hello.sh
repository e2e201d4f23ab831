#!/usr/bin/env bash
# Hello-world throughput: cyclone against native hyper and `wasmtime serve`,
# in one run, alternating the servers each round. WASI 0.2: examples/hello
# with a fresh instance per request, on cyclone and on `wasmtime serve`
# (defaults, and with tuned pooling flags). WASI 0.3: a Spin SDK 7 hello
# (tests/guests/spin3-hello) on cyclone, fresh and with instance reuse, and
# on `wasmtime serve` (which reuses 0.3 instances by default). Writes the
# table to bench/RESULTS.md (between the "hello" markers) and prints it.
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
# The production build for cyclone and its native baseline alike: `dist`
# (whole-program optimisation) with profile-guided optimisation, trained on
# other components than the ones measured here (bench/pgo.sh: two dist
# builds).
pgo=$("$root/bench/pgo.sh")
dist=$(dirname "$pgo")
# ...and the `release` host too (cyclone-release), to show what the production build gives.
cargo build --quiet --release -p cyclone-host
cargo build --quiet --profile guest --target wasm32-wasip2 -p hello -p spin3-hello
hello="$root/target/wasm32-wasip2/guest/hello.wasm"
hello3="$root/target/wasm32-wasip2/guest/spin3_hello.wasm"
app_table hello "$hello3" "instance_reuse = {}" >"$work/reuse.toml"

# start NAME PORT: runs the server in the background, sets $server_pid.
# Each branch execs, so $! is the server itself and `kill` stops it.
start() {
    local port=$2
    case $1 in
        cyclone) exec "$dist/cyclone" serve --listen "127.0.0.1:$port" "$hello" ;;
        cyclone-release) exec "$root/target/release/cyclone" serve --listen "127.0.0.1:$port" "$hello" ;;
        hyper) exec "$dist/hyper-hello" "127.0.0.1:$port" ;;
        # -Scli: the component (like any Rust std component) imports wasi:cli.
        wasmtime-serve) exec "$wasmtime" serve -Scli --addr "127.0.0.1:$port" "$hello" ;;
        wasmtime-serve-tuned)
            exec "$wasmtime" serve -Scli --addr "127.0.0.1:$port" \
                -O pooling-memory-keep-resident=2097152 \
                -O pooling-table-keep-resident=65536 \
                -O pooling-pagemap-scan=y "$hello" ;;
        cyclone-p3) exec "$dist/cyclone" serve --listen "127.0.0.1:$port" "$hello3" ;;
        cyclone-p3-reuse) exec "$dist/cyclone" serve --listen "127.0.0.1:$port" "$work/reuse.toml" ;;
        wasmtime-serve-p3)
            exec "$wasmtime" serve -Scli -Sp3 -Wcomponent-model-async --addr "127.0.0.1:$port" "$hello3" ;;
        wasmtime-serve-p3-fresh)
            exec "$wasmtime" serve -Scli -Sp3 -Wcomponent-model-async --max-instance-reuse-count 1 \
                --addr "127.0.0.1:$port" "$hello3" ;;
    esac >"$work/$1.log" 2>&1 &
    server_pid=$!
    wait_url "http://127.0.0.1:$port/"
}

servers=(hyper cyclone cyclone-release wasmtime-serve wasmtime-serve-tuned cyclone-p3 cyclone-p3-reuse wasmtime-serve-p3 wasmtime-serve-p3-fresh)
for round in $(seq 1 "$ROUNDS"); do
    for name in "${servers[@]}"; do
        port=$(free_port)
        start "$name" "$port"
        url="http://127.0.0.1:$port/"
        case $name in
            *p3*) expected="hello from spin-sdk 7 on GET" ;;
            *) expected="Hello, world!" ;;
        esac
        [ "$(curl -s "$url")" = "$expected" ] || { echo "bench: $name answered wrong" >&2; exit 1; }
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
median = lambda name: statistics.median(r[0] for r in rows[name])
hyper = median("hyper")
print("| server | WASI | req/s (median) | p50 | p99 | server CPU per request | vs hyper | vs `wasmtime serve` on the same component | all rounds (req/s) | errors |")
print("|---|---|---:|---:|---:|---:|---:|---:|---|---|")
for name in ["hyper", "cyclone", "cyclone-release", "wasmtime-serve", "wasmtime-serve-tuned", "cyclone-p3", "cyclone-p3-reuse", "wasmtime-serve-p3", "wasmtime-serve-p3-fresh"]:
    runs = sorted(rows[name], key=lambda r: r[0])
    med = runs[len(runs) // 2]
    wasi = "-" if name == "hyper" else ("0.3" if "p3" in name else "0.2")
    serve = {"0.2": median("wasmtime-serve"), "0.3": median("wasmtime-serve-p3")}.get(wasi)
    vs_serve = f"{med[0]/serve:.2f}x" if serve else "-"
    print(f"| {name} | {wasi} | {med[0]:,.0f} | {med[1]} | {med[2]} | {med[4]:.1f} µs | {med[0]/hyper:.2f}x | {vs_serve} "
          f"| {', '.join(f'{r[0]:,.0f}' for r in rows[name])} | {med[3]} |")
PY
)

header="Hello world: $(machine_line bench/hello.sh). WASI 0.2 rows serve \`examples/hello\` (cyclone-sdk) with a fresh instance per request; WASI 0.3 rows serve \`tests/guests/spin3-hello\` (Spin SDK 7, \`#[http_service]\`): cyclone-p3 with a fresh instance per request, cyclone-p3-reuse with \`instance_reuse = {}\` (128 requests per instance, 16 at once), wasmtime-serve-p3 with \`-Scli -Sp3 -Wcomponent-model-async\` and its default reuse (128 requests per instance, 16 at once), wasmtime-serve-p3-fresh adds \`--max-instance-reuse-count 1\`. The column vs \`wasmtime serve\` compares with wasmtime-serve (0.2 rows) or wasmtime-serve-p3 (0.3 rows).
cyclone and hyper are built by \`bench/pgo.sh\`: the \`dist\` profile (link-time optimisation) with profile-guided optimisation, trained on other components (\`examples/limits\` and \`tests/guests/wasip3-probe\`); cyclone-release is the same host built with \`release\`, with neither.
Server CPU per request = the server process's user + system time during the measured run / requests answered.
wrk -t$WRK_THREADS -c$CONNECTIONS, ${DURATION}s per run after ${WARMUP}s warm-up, $ROUNDS rounds alternating the servers, all on this machine (client and server share the cores). RUST_BACKTRACE unset. wasmtime-cli $WASMTIME_VERSION with \`-Scli\` (the component imports wasi:cli, as Rust std components do); tuned adds \`-O pooling-memory-keep-resident=2097152 -O pooling-table-keep-resident=65536 -O pooling-pagemap-scan=y\`."
write_section hello "Hello world" "$header" "$table"
echo "$table"
