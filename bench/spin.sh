#!/usr/bin/env bash
# Busy handlers next to quick ones: `GET /hello` latency while two
# `GET /spin?ms=20000` requests compute, on cyclone (examples/limits, with a
# CPU budget large enough to let them spin) and Tornado (whose spinning
# handler blocks its event loop, the bcrypt problem). Also measured with no
# spinners.
#
# Then the seed's case itself, Tornado's blog demo: `GET /` of the blog (the
# five latest entries) while clients log in without pause, each login a
# bcrypt check at cost 12. cyclone serves examples/blog; Tornado serves
# bench/tornado/blog.py (the demo's handlers) checking passwords on its
# event loop and, as the demo does, in a thread pool.
#
# Writes both tables to bench/RESULTS.md (between the "spin" markers).
#
# Usage: bench/spin.sh            (env: DURATION=10 CONNECTIONS=4 LOGINS=2)
# Needs wrk (apt-get) and python3 (Tornado, bcrypt and markdown are installed
# with pip when missing).
set -euo pipefail

DURATION=${DURATION:-10}
CONNECTIONS=${CONNECTIONS:-4}
LOGINS=${LOGINS:-2}

source "$(dirname "$0")/lib.sh"
need_apt wrk wrk
python3 -c 'import tornado, bcrypt, markdown' 2>/dev/null || python3 -m pip install --quiet tornado bcrypt markdown

cd "$root"
cargo build --quiet --release -p cyclone-host
cargo build --quiet --profile guest --target wasm32-wasip2 -p limits -p blog
cat >"$work/cyclone.toml" <<TOML
[apps.limits]
component = "$root/target/wasm32-wasip2/guest/limits.wasm"
routes = ["/..."]
cpu_budget_ms = 60000
timeout_ms = 60000
TOML

# wrk_line NAME CASE FILE: "NAME|CASE|req/s|p50|p99|errors" from wrk's output.
wrk_line() {
    local rps p50 p99 errors
    rps=$(awk '/^Requests\/sec/ {print $2}' "$3")
    p50=$(awk '$1 == "50%" {print $2}' "$3")
    p99=$(awk '$1 == "99%" {print $2}' "$3")
    errors=$(awk '/Non-2xx|Socket errors/ {print}' "$3" | tr '\n' ' ' | sed 's/  */ /g')
    echo "$1|$2|${rps:-0}|${p50:--}|${p99:--}|${errors:-none}"
}

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
        wrk_line "$name" "$spinners" "$work/wrk.out" | tee -a "$work/results" >&2
        kill "$server_pid" "${spinning[@]}" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    done
done

# The blog. Every form carries the XSRF token of its cookie; any token will
# do for both frameworks, as long as the cookie and the field agree.
token=0123456789abcdef0123456789abcdef
cat >"$work/login.lua" <<LUA
wrk.method = "POST"
wrk.body = "_xsrf=$token&email=bench%40example.com&password=bench-password"
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Cookie"] = "_xsrf=$token"
LUA
mkdir -p "$work/blog"
cat >"$work/blog/cyclone.toml" <<TOML
[apps.blog]
component = "$root/target/wasm32-wasip2/guest/blog.wasm"
routes = ["/..."]
key_value_stores = ["default"]
static = { "/static/..." = "$root/examples/blog/public" }

[apps.blog.variables]
cookie_secret = "1:bench-secret"
TOML

start_blog() {
    local port=$2
    rm -rf "$work/blog/.cyclone" "$work/blog.db"
    case $1 in
        cyclone) exec "$root/target/release/cyclone" serve --listen "127.0.0.1:$port" "$work/blog/cyclone.toml" ;;
        tornado-loop) exec python3 "$root/bench/tornado/blog.py" "$port" --db "$work/blog.db" --bcrypt loop ;;
        tornado-pool) exec python3 "$root/bench/tornado/blog.py" "$port" --db "$work/blog.db" --bcrypt pool ;;
    esac >"$work/$1.log" 2>&1 &
    server_pid=$!
    wait_url "http://127.0.0.1:$port/"
}

# seed_blog URL: the author, then five entries of a few paragraphs each.
seed_blog() {
    local url=$1 user
    user=$(curl -s -D - -o /dev/null -H "Cookie: _xsrf=$token" \
        -d "_xsrf=$token&email=bench%40example.com&name=Bench&password=bench-password" "$url/auth/create" |
        awk -F': ' 'tolower($1) == "set-cookie" && $2 ~ /^blogdemo_user=/ {split($2, a, ";"); print a[1]}')
    [ -n "$user" ] || { echo "bench: creating the blog's author failed at $url" >&2; exit 1; }
    for n in 1 2 3 4 5; do
        curl -s -o /dev/null -f -H "Cookie: _xsrf=$token; $user" -d "_xsrf=$token" \
            --data-urlencode "title=Entry number $n" \
            --data-urlencode "markdown=$(printf '# Entry %s\n\nSome *Markdown* with [a link](/) and a list:\n\n- one\n- two\n\n%s' "$n" "$(printf 'A sentence of text for the page. %.0s' $(seq 1 20))")" \
            "$url/compose" || { echo "bench: composing entry $n failed at $url" >&2; exit 1; }
    done
}

for name in cyclone tornado-loop tornado-pool; do
    for logins in 0 "$LOGINS"; do
        port=$(free_port)
        start_blog "$name" "$port"
        seed_blog "http://127.0.0.1:$port"
        login_pid=
        if [ "$logins" -gt 0 ]; then
            wrk -t1 -c"$logins" -d"$((DURATION + 2))s" --timeout 30s -s "$work/login.lua" \
                "http://127.0.0.1:$port/auth/login" >"$work/login.out" &
            login_pid=$!
            sleep 1
        fi
        wrk -t1 -c"$CONNECTIONS" -d"${DURATION}s" --timeout 5s --latency "http://127.0.0.1:$port/" >"$work/wrk.out" || true
        login_rate=0
        if [ -n "$login_pid" ]; then
            wait "$login_pid" || true
            login_rate=$(awk '/^Requests\/sec/ {print $2}' "$work/login.out")
        fi
        echo "$(wrk_line "$name" "$logins" "$work/wrk.out")|${login_rate:-0}" | tee -a "$work/blog-results" >&2
        kill "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    done
done

table=$(python3 - "$work/results" "$work/blog-results" <<'PY'
import sys
print("| server | spinning requests | /hello req/s | p50 | p99 | errors |")
print("|---|---:|---:|---:|---:|---|")
for line in open(sys.argv[1]):
    name, spinners, rps, p50, p99, errors = line.rstrip("\n").split("|")
    if float(rps) == 0:
        p50 = p99 = "-"
        errors = "no response during the run"
    print(f"| {name} | {spinners} | {float(rps):,.0f} | {p50} | {p99} | {errors} |")
print()
print("| blog server | logging in at once | / req/s | p50 | p99 | logins/s | errors |")
print("|---|---:|---:|---:|---:|---:|---|")
for line in open(sys.argv[2]):
    name, logins, rps, p50, p99, errors, login_rate = line.rstrip("\n").split("|")
    if float(rps) == 0:
        p50 = p99 = "-"
        errors = "no response during the run"
    print(f"| {name} | {logins} | {float(rps):,.0f} | {p50} | {p99} | {float(login_rate):.1f} | {errors} |")
PY
)
header="\`GET /hello\` while two \`GET /spin?ms=20000\` compute, then the blog's \`GET /\` while clients log in: $(machine_line bench/spin.sh).
wrk -t1 -c$CONNECTIONS --timeout 5s for ${DURATION}s; client and server share the machine's cores. First table: starting 1 s after the spinners; cyclone serves \`examples/limits\` with \`cpu_budget_ms = 60000\` so the spinners run throughout (with its default budget they are stopped with 503 after 5 s of CPU); Tornado $(python3 -c 'import tornado; print(tornado.version)') runs the same busy loop in its handler.
Second table: the blog with five entries; $LOGINS more wrk connections (one thread) post \`/auth/login\` with the right password without pause, starting 1 s before the measurement, each a bcrypt check at cost 12. cyclone serves \`examples/blog\` (SQLite key-value store, bcrypt compiled into the component); tornado-loop and tornado-pool serve \`bench/tornado/blog.py\`, the demo's handlers with SQLite in place of PostgreSQL, checking the password on the event loop or, as the demo does, with \`run_in_executor\` (python bcrypt $(python3 -c 'import bcrypt; print(bcrypt.__version__)'))."
write_section spin "Busy handlers next to quick ones" "$header" "$table"
echo "$table"
