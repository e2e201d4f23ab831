#!/usr/bin/env bash
# Hello under load while it is deployed ten times: wrk against cyclone
# serving examples/hello, once without deploys and once with 10 deploys
# during the run (alternating examples/hello and a second build that
# answers differently), through the admin API. Reports requests/s, p99 and
# errors for both runs, and for each deploy the time from sending the PUT
# to the first answer from the new version. Writes the "deploy" section of
# bench/RESULTS.md.
#
# Usage: bench/deploy.sh   (env: DURATION=20 CONNECTIONS=64)
# Needs wrk (installed with apt-get when missing and run as root).
set -euo pipefail

DURATION=${DURATION:-20}
CONNECTIONS=${CONNECTIONS:-64}
DEPLOYS=10

source "$(dirname "$0")/lib.sh"
need_apt wrk wrk

cd "$root"
cargo build --quiet --release -p cyclone-host
cargo build --quiet --profile guest --target wasm32-wasip2 -p hello -p wasip2-raw
guests="$root/target/wasm32-wasip2/guest"

export CYCLONE_ADMIN_TOKEN="bench-admin-token-$RANDOM$RANDOM"
admin_port=$(free_port)
port=$(free_port)
cat >"$work/cyclone.toml" <<EOF
[server]
data_dir = "$work/data"

[admin]
listen = "127.0.0.1:$admin_port"
token = { env = "CYCLONE_ADMIN_TOKEN" }

[apps.hello]
component = "$guests/hello.wasm"
routes = ["/..."]
EOF

CYCLONE_LOG=warn "$root/target/release/cyclone" serve --listen "127.0.0.1:$port" "$work/cyclone.toml" >"$work/cyclone.log" 2>&1 &
server_pid=$!
url="http://127.0.0.1:$port/"
wait_url "$url"

run_wrk() {
    wrk -t2 -c"$CONNECTIONS" -d"${DURATION}s" --latency "$url" >"$work/$1.out"
    local rps p99 errors
    rps=$(awk '/^Requests\/sec/ {print $2}' "$work/$1.out")
    p99=$(awk '$1 == "99%" {print $2}' "$work/$1.out")
    errors=$(awk '/Non-2xx|Socket errors/ {print}' "$work/$1.out" | tr '\n' ' ' | tr -s ' ')
    echo "$1|$rps|$p99|${errors:-none}" | tee -a "$work/runs" >&2
}

wrk -t2 -c"$CONNECTIONS" -d2s "$url" >/dev/null
run_wrk "no deploys"

# The deploys: PUT, then poll until the new version answers; one line per deploy.
python3 - "$admin_port" "$url" "$guests" "$DURATION" "$DEPLOYS" >"$work/deploys" <<'PY' &
import sys, time, urllib.request, os
admin_port, url, guests, duration, deploys = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4]), int(sys.argv[5])
token = os.environ["CYCLONE_ADMIN_TOKEN"]
versions = [(f"{guests}/wasip2_raw.wasm", b"raw wasip2 at /\n"), (f"{guests}/hello.wasm", b"Hello, world!")]
time.sleep(duration / (deploys + 1))
for i in range(deploys):
    path, body = versions[i % 2]
    data = open(path, "rb").read()
    request = urllib.request.Request(f"http://127.0.0.1:{admin_port}/apps/hello/component", data=data, method="PUT",
                                     headers={"Authorization": f"Bearer {token}"})
    start = time.monotonic()
    with urllib.request.urlopen(request) as response:
        assert response.status == 200
    answered = time.monotonic()
    while urllib.request.urlopen(url).read() != body:
        pass
    first = time.monotonic()
    print(f"{i + 1}|{(answered - start) * 1e3:.1f}|{(first - start) * 1e3:.1f}", flush=True)
    time.sleep(max(0, duration / (deploys + 1) - (first - start)))
PY
deployer=$!
run_wrk "10 deploys"
wait "$deployer"
cat "$work/deploys" >&2
kill "$server_pid"; wait "$server_pid" 2>/dev/null || true

table=$(python3 - "$work/runs" "$work/deploys" <<'PY'
import sys, statistics
print("| run | req/s | p99 | errors |")
print("|---|---:|---:|---|")
for line in open(sys.argv[1]):
    name, rps, p99, errors = line.rstrip("\n").split("|")
    print(f"| {name} | {float(rps):,.0f} | {p99} | {errors.strip()} |")
rows = [line.rstrip("\n").split("|") for line in open(sys.argv[2])]
put = [float(r[1]) for r in rows]
first = [float(r[2]) for r in rows]
print()
print("| deploy | PUT answered (compile, link, swap) | first answer from the new version |")
print("|---:|---:|---:|")
for n, p, f in rows:
    print(f"| {n} | {float(p):.1f} ms | {float(f):.1f} ms |")
print(f"| median | {statistics.median(put):.1f} ms | {statistics.median(first):.1f} ms |")
PY
)
header="Hello under load with and without ten deploys: $(machine_line bench/deploy.sh).
wrk -t2 -c$CONNECTIONS for ${DURATION}s against \`examples/hello\` served by \`cyclone\` (release build, log at warn); in the second run a client PUTs a component to the admin API every $((DURATION / (DEPLOYS + 1))) s or so, alternating \`examples/hello\` and \`tests/guests/wasip2-raw\` (the first deploy of wasip2-raw compiles it, every other deploy loads from the compile cache; each deploy also writes and fsyncs the component and a state file in the data folder), and polls \`/\` until the new version answers. Times are from sending the PUT. Client, server and deployer share the machine's cores."
write_section deploy "Deploys under load" "$header" "$table"
echo "$table"
