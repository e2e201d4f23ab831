#!/usr/bin/env bash
# Suspended requests: N concurrent `GET /sleep?ms=MS`, each on its own
# connection (the -h2 rows: over H2_CONNECTIONS HTTP/2 connections), against
# cyclone (examples/limits), `wasmtime serve` (defaults, and with its pool
# sized for N) and Tornado (`await asyncio.sleep`), one
# after another in the same run; then a WASI 0.3 guest
# (tests/guests/wasip3-probe) on cyclone, fresh and with instance reuse, and
# on `wasmtime serve` (which reuses 0.3 instances by default). Counts successes and errors, requests/s and
# the server's peak RSS. Writes the table to bench/RESULTS.md (between the
# "sleep" markers) and prints it.
#
# Usage: bench/sleep.sh            (env: REQUESTS=10000 SLEEP_MS=2000 H2_CONNECTIONS=100)
# Needs python3 (Tornado is installed with pip when missing) and wasmtime-cli
# 48 (installed into bench/.cache when missing). A WASI 0.3 pool of REQUESTS
# instances needs about 10 memory mappings each: the script raises
# vm.max_map_count when it is lower (as root; otherwise it says how).
set -euo pipefail

REQUESTS=${REQUESTS:-10000}
SLEEP_MS=${SLEEP_MS:-2000}
H2_CONNECTIONS=${H2_CONNECTIONS:-100}

source "$(dirname "$0")/lib.sh"
need_wasmtime
python3 -c 'import tornado' 2>/dev/null || python3 -m pip install --quiet tornado

cd "$root"
pool=$((REQUESTS + 100))
need_map_count $((pool * 10 + 2000))
pooled_app limits "$pool" "timeout_ms = $((SLEEP_MS * 10))" "max_memory_mb = 16"
cargo build --quiet --profile guest --target wasm32-wasip2 -p wasip3-probe
probe="$root/target/wasm32-wasip2/guest/wasip3_probe.wasm"
# p3_manifest FILE [LINE...]: the probe at every path, pooled as above.
p3_manifest() {
    local file=$1
    shift
    {
        pool_table "$pool"
        app_table probe "$probe" "timeout_ms = $((SLEEP_MS * 10))" "max_memory_mb = 16" "$@"
    } >"$work/$file"
}
p3_manifest p3.toml
p3_manifest p3-reuse.toml "instance_reuse = {}"

# start NAME PORT: runs the server in the background, sets $server_pid.
start() {
    local port=$2
    case $1 in
        cyclone | cyclone-h2) exec "$root/target/release/cyclone" serve --listen "127.0.0.1:$port" "$work/cyclone.toml" ;;
        wasmtime-serve) exec "$wasmtime" serve -Scli --addr "127.0.0.1:$port" "$component" ;;
        wasmtime-serve-sized)
            exec "$wasmtime" serve -Scli --addr "127.0.0.1:$port" \
                -O pooling-total-component-instances=$pool \
                -O pooling-total-core-instances=$((pool * 8)) \
                -O pooling-total-memories=$((pool * 2)) \
                -O pooling-total-tables=$((pool * 4)) \
                -O pooling-total-stacks=$pool \
                -O pooling-max-memory-size=16777216 "$component" ;;
        tornado) exec python3 "$root/bench/tornado/server.py" "$port" ;;
        cyclone-p3) exec "$root/target/release/cyclone" serve --listen "127.0.0.1:$port" "$work/p3.toml" ;;
        cyclone-p3-reuse | cyclone-p3-reuse-h2)
            exec "$root/target/release/cyclone" serve --listen "127.0.0.1:$port" "$work/p3-reuse.toml" ;;
        wasmtime-serve-p3)
            exec "$wasmtime" serve -Scli -Sp3 -Wcomponent-model-async --addr "127.0.0.1:$port" "$probe" ;;
    esac >"$work/$1.log" 2>&1 &
    server_pid=$!
    wait_url "http://127.0.0.1:$port/sleep?ms=1"
}

kib() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }

for name in cyclone cyclone-h2 wasmtime-serve wasmtime-serve-sized tornado cyclone-p3 cyclone-p3-reuse cyclone-p3-reuse-h2 wasmtime-serve-p3; do
    case $name in
        *-h2) over=(--h2 "$H2_CONNECTIONS") ;;
        *) over=() ;;
    esac
    port=$(free_port)
    start "$name" "$port"
    base=$(kib "$server_pid" VmRSS)
    watch_memory "$server_pid" "$work/$name.memory" &
    watcher=$!
    line=$("$root/target/release/loadgen" --url "http://127.0.0.1:$port/sleep?ms=$SLEEP_MS" \
        --requests "$REQUESTS" --timeout-secs 60 "${over[@]}")
    peak=$(kib "$server_pid" VmHWM)
    kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
    wait "$watcher" 2>/dev/null || true
    echo "$name $base $peak $(pss_growth "$work/$name.memory") $line" | tee -a "$work/results" >&2
done

table=$(python3 - "$work/results" "$REQUESTS" <<'PY'
import sys
requests = int(sys.argv[2])
print("| server | succeeded | errors | wall time | requests/s | p50 | p99 | peak RSS | RSS per request (peak − idle) | PSS per request (peak − idle) |")
print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for line in open(sys.argv[1]):
    name, base, peak, pss, rest = line.split(maxsplit=4)
    f = dict(kv.split("=", 1) for kv in rest.split() if "=" in kv)
    failed = int(f["other_status"]) + int(f["errors"])
    kinds = ", ".join(x for x in (f["other"].strip("[]"), f["error_kinds"].strip("[]")) if x)
    per = (int(peak) - int(base)) / requests
    print(f"| {name} | {int(f['ok']):,} | {failed:,}{' (' + kinds + ')' if kinds else ''} | {float(f['elapsed_s']):.2f} s "
          f"| {float(f['rps']):,.0f} | {f['p50_ms']} ms | {f['p99_ms']} ms | {int(peak)/1024:,.0f} MiB | {per:,.1f} KiB | {int(pss) / requests:,.1f} KiB |")
PY
)
header="$REQUESTS concurrent \`GET /sleep?ms=$SLEEP_MS\`, one connection each, except the -h2 rows (the same servers as the rows without -h2, the requests spread over $H2_CONNECTIONS HTTP/2 connections with prior knowledge): $(machine_line bench/sleep.sh).
Client: \`bench/loadgen\` (tokio + hyper) on the same machine, all requests started at once, 60 s timeout. Peak RSS is the server's VmHWM; RSS per request divides its growth over the idle server by $REQUESTS (for a server that did not hold all $REQUESTS at once, this understates its cost per request). PSS is sampled once a second from \`/proc/PID/smaps_rollup\`: it counts a page shared by many mappings once, where RSS counts it once per mapping — each cyclone instance maps its component's data pages (read-only ones shared by all instances, and the kernel maps a fault's neighbouring pages too), so RSS overstates what the instances cost. cyclone, \`wasmtime serve\` and \`wasmtime serve\`-sized run \`examples/limits\` (a cyclone-sdk component, WASI 0.2); the -p3 rows run \`tests/guests/wasip3-probe\` (the \`wasip3\` crate, WASI 0.3; \`/sleep\` awaits \`monotonic-clock.wait-for\`): cyclone-p3 with a fresh instance per request, cyclone-p3-reuse with \`instance_reuse = {}\` (16 requests at once per instance), wasmtime-serve-p3 with \`-Scli -Sp3 -Wcomponent-model-async\` and its default reuse; \`wasmtime serve\` with \`-Scli\`, and \"sized\" adds pooling flags for $((REQUESTS + 100)) instances with 16 MiB memories, as cyclone's manifest asks for. Tornado $(python3 -c 'import tornado; print(tornado.version)'), one process, \`await asyncio.sleep\`. vm.max_map_count = $(cat /proc/sys/vm/max_map_count)."
write_section sleep "Suspended requests" "$header" "$table"
echo "$table"
