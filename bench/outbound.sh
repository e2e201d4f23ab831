#!/usr/bin/env bash
# Outbound HTTP: examples/aggregator fetching four upstream URLs at once per
# request, from a local native hyper upstream (bench/hyper-hello), on
# cyclone with its outbound connection pool (the default) and without it
# (`outbound_pool = { max_idle = 0 }`: a new connection for every upstream
# request, as before the pool), and on Tornado (the same handler with
# AsyncHTTPClient), alternating each round. Counts requests/s, latency,
# server CPU per request and the TCP connections opened per request
# (ActiveOpens in /proc/net/snmp). Writes the table to bench/RESULTS.md
# (between the "outbound" markers) and prints it.
#
# Usage: bench/outbound.sh          (env: ROUNDS=3 DURATION=10 CONNECTIONS=16 FANOUT=4)
# Needs wrk (installed with apt-get when missing and run as root) and python3
# (Tornado is installed with pip when missing).
set -euo pipefail

ROUNDS=${ROUNDS:-3}
DURATION=${DURATION:-10}
WARMUP=${WARMUP:-2}
CONNECTIONS=${CONNECTIONS:-16}
FANOUT=${FANOUT:-4}

source "$(dirname "$0")/lib.sh"
need_apt wrk wrk
python3 -c 'import tornado' 2>/dev/null || python3 -m pip install --quiet tornado

cd "$root"
cargo build --quiet --release -p cyclone-host -p hyper-hello
cargo build --quiet --profile guest --target wasm32-wasip2 -p aggregator
aggregator="$root/target/wasm32-wasip2/guest/aggregator.wasm"

up_port=$(free_port)
"$root/target/release/hyper-hello" "127.0.0.1:$up_port" >"$work/upstream.log" 2>&1 &
upstream_pid=$!
wait_url "http://127.0.0.1:$up_port/"
upstreams=$(for _ in $(seq 1 "$FANOUT"); do printf 'http://127.0.0.1:%s/,' "$up_port"; done)
upstreams=${upstreams%,}

# manifest FILE [LINE...]: the aggregator at every path, fetching $upstreams.
manifest() {
    local file=$1
    shift
    {
        app_table aggregator "$aggregator" "allowed_outbound_hosts = [\"http://127.0.0.1:$up_port\"]" "$@"
        printf '[apps.aggregator.variables]\nupstreams = "%s"\nupstream_timeout_ms = "5000"\n' "$upstreams"
    } >"$work/$file"
}
manifest pool.toml
manifest no-pool.toml "outbound_pool = { max_idle = 0 }"

# start NAME PORT: runs the server in the background, sets $server_pid.
start() {
    local port=$2
    case $1 in
        cyclone-pool) exec "$root/target/release/cyclone" serve --listen "127.0.0.1:$port" "$work/pool.toml" ;;
        cyclone-no-pool) exec "$root/target/release/cyclone" serve --listen "127.0.0.1:$port" "$work/no-pool.toml" ;;
        tornado) exec python3 "$root/bench/tornado/server.py" "$port" --upstreams "$upstreams" ;;
    esac >"$work/$1.log" 2>&1 &
    server_pid=$!
    wait_url "http://127.0.0.1:$port/aggregate"
}

# TCP connections this machine has opened (connect calls) so far.
active_opens() {
    awk '/^Tcp:/ { if (!c) { for (i = 1; i <= NF; i++) if ($i == "ActiveOpens") c = i } else print $c }' /proc/net/snmp
}

servers=(cyclone-no-pool cyclone-pool tornado)
for round in $(seq 1 "$ROUNDS"); do
    for name in "${servers[@]}"; do
        port=$(free_port)
        start "$name" "$port"
        url="http://127.0.0.1:$port/aggregate"
        oks=$(curl -s "$url" | grep -o '"status": *200' | wc -l)
        [ "$oks" = "$FANOUT" ] || { echo "bench: $name answered $(curl -s "$url")" >&2; exit 1; }
        wrk -t2 -c"$CONNECTIONS" -d"${WARMUP}s" "$url" >/dev/null
        cpu_before=$(cpu_ticks "$server_pid")
        opens_before=$(active_opens)
        wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url" >"$work/wrk.out"
        opens_after=$(active_opens)
        cpu_after=$(cpu_ticks "$server_pid")
        requests=$(awk '/requests in/ {print $1}' "$work/wrk.out")
        cpu_us=$(python3 -c "print(f'{($cpu_after - $cpu_before) * 1e6 / $(getconf CLK_TCK) / $requests:.0f}')")
        opens=$(python3 -c "print(f'{($opens_after - $opens_before) / $requests:.2f}')")
        rps=$(awk '/^Requests\/sec/ {print $2}' "$work/wrk.out")
        p50=$(awk '$1 == "50%" {print $2}' "$work/wrk.out")
        p99=$(awk '$1 == "99%" {print $2}' "$work/wrk.out")
        errors=$(awk '/Non-2xx|Socket errors/ {print}' "$work/wrk.out" | tr '\n' ' ')
        echo "$name $round $rps $p50 $p99 $cpu_us $opens ${errors:-none}" | tee -a "$work/results" >&2
        kill "$server_pid"; wait "$server_pid" 2>/dev/null || true
    done
done
kill "$upstream_pid"

table=$(python3 - "$work/results" <<'PY'
import sys
rows = {}
for line in open(sys.argv[1]):
    name, rnd, rps, p50, p99, cpu, opens, *err = line.split(maxsplit=7)
    rows.setdefault(name, []).append((float(rps), p50, p99, float(cpu), float(opens), " ".join(err).strip()))
def median(name):
    runs = sorted(rows[name], key=lambda r: r[0])
    return runs[len(runs) // 2]
base = median("cyclone-no-pool")
print("| server | req/s (median) | p50 | p99 | server CPU per request | connections opened per request | vs cyclone-no-pool | all rounds (req/s) | errors |")
print("|---|---:|---:|---:|---:|---:|---:|---|---|")
for name in ["cyclone-no-pool", "cyclone-pool", "tornado"]:
    med = median(name)
    print(f"| {name} | {med[0]:,.0f} | {med[1]} | {med[2]} | {med[3]:.0f} µs | {med[4]:.2f} | {med[0]/base[0]:.2f}x "
          f"| {', '.join(f'{r[0]:,.0f}' for r in rows[name])} | {med[5]} |")
PY
)

header="Outbound HTTP: $(machine_line bench/outbound.sh). \`examples/aggregator\` (WASI 0.2, a fresh instance per request) answers GET /aggregate by fetching $FANOUT URLs at once from a local native hyper upstream (\`bench/hyper-hello\`): cyclone-pool with the app's outbound connection pool (the default, \`outbound_pool = { max_idle = 128, idle_timeout_ms = 15000 }\`), cyclone-no-pool with \`outbound_pool = { max_idle = 0 }\` (a new connection for every upstream request, as cyclone did before the pool), tornado with the same handler on Tornado's AsyncHTTPClient (\`bench/tornado/server.py\`) at its defaults (\`simple_httpclient\`, 10 fetches at once, a new connection for each).
Server CPU per request = the server process's user + system time during the measured run / requests answered (the upstream's CPU not included). Connections opened per request = TCP connects on the machine (ActiveOpens) during the run / requests answered.
wrk -t2 -c$CONNECTIONS, ${DURATION}s per run after ${WARMUP}s warm-up, $ROUNDS rounds alternating the servers, all on this machine (client, server and upstream share the cores). RUST_BACKTRACE unset."
write_section outbound "Outbound HTTP" "$header" "$table"
echo "$table"
