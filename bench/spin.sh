#!/usr/bin/env bash
# Busy handlers next to quick ones: `GET /hello` latency while two
# `GET /spin?ms=20000` requests compute, on cyclone (examples/limits, with a
# CPU budget large enough to let them spin) and Tornado (whose spinning
# handler blocks its event loop, the bcrypt problem). Also measured with no
# spinners. Writes the table to bench/RESULTS.md (between the "spin" markers).
#
# Usage: bench/spin.sh            (env: DURATION=10 CONNECTIONS=4)
# Needs wrk (apt-get) and python3 (Tornado is installed with pip when missing).
set -euo pipefail

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-4}

source "$(dirname "$0")/lib.sh"
need_apt wrk wrk
python3 -c 'import tornado' 2>/dev/null || python3 -m pip install --quiet tornado

cd "$root"
cargo build --quiet --release -p cyclone-host
cargo build --quiet --profile guest --target wasm32-wasip2 -p limits
cat >"$work/cyclone.toml" <<TOML
[apps.limits]
component = "$root/target/wasm32-wasip2/guest/limits.wasm"
routes = ["/..."]
cpu_budget_ms = 60000
timeout_ms = 60000
TOML

start() {
    local port=$2
    case $1 in
        cyclone) exec "$root/target/release/cyclone" serve --listen "127.0.0.1:$port" "$work/cyclone.toml" ;;
        tornado) exec python3 "$root/bench/tornado/server.py" "$port" ;;
    esac >"$work/$1.log" 2>&1 &
    server_pid=$!
    wait_url "http://127.0.0.1:$port/hello"
}

for name in cyclone tornado; do
    for spinners in 0 2; do
        port=$(free_port)
        start "$name" "$port"
        spinning=()
        for _ in $(seq 1 "$spinners"); do
            curl -s -o /dev/null -m 60 "http://127.0.0.1:$port/spin?ms=20000" &
            spinning+=($!)
        done
        sleep 1
        wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s --latency "http://127.0.0.1:$port/hello" >"$work/wrk.out" || true
        rps=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.out")
        p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.out")
        p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.out")
        errors=$(awk '/Non-2xx|Socket errors/ {print}' "$work/wrk.out" | tr '\n' ' ' | sed 's/  */ /g')
        echo "$name|$spinners|${rps:-0}|${p50:--}|${p99:--}|${errors:-none}" | tee -a "$work/results" >&2
        kill "$server_pid" "${spinning[@]}" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    done
done

table=$(python3 - "$work/results" <<'PY'
import sys
print("| server | spinning requests | /hello req/s | p50 | p99 | errors |")
print("|---|---:|---:|---:|---:|---|")
for line in open(sys.argv[1]):
    name, spinners, rps, p50, p99, errors = line.rstrip("\n").split("|")
    if float(rps) == 0:
        p50 = p99 = "-"
        errors = "no response during the run"
    print(f"| {name} | {spinners} | {float(rps):,.0f} | {p50} | {p99} | {errors} |")
PY
)
header="\`GET /hello\` while two \`GET /spin?ms=20000\` compute: $(machine_line bench/spin.sh).
wrk -t1 -c$CONNECTIONS --timeout 5s for ${DURATION}s, starting 1 s after the spinners; client and server share the machine's cores. cyclone serves \`examples/limits\` with \`cpu_budget_ms = 60000\` so the spinners run throughout (with its default budget they are stopped with 503 after 5 s of CPU). Tornado $(python3 -c 'import tornado; print(tornado.version)') runs the same busy loop in its handler."
write_section spin "Busy handlers next to quick ones" "$header" "$table"
echo "$table"
