#!/usr/bin/env bash
# User-space instructions per proxied request, counted by callgrind.
#
# Requests per second on a shared VM drift by 10-30 % between runs; the
# instructions tlsgate executes per request repeat to within about 1 % for
# h2 (h1 lands on one of two values 3-4 % apart: run it twice), so
# this is the figure to compare two builds with when a change is smaller
# than the noise (kernel work is not counted: check syscalls with strace).
# The count includes the handshakes of h2load's 50 connections: compare
# builds at the same request count.
#
#   benches/compare/instructions.sh [h1|h2] [REQUESTS] [TLSGATE_BINARY]
#
# Defaults: h2 (h2load -c50 -m10), 20,000 requests, target/release/tlsgate.
# Starts a loopback nginx backend and tlsgate under callgrind on ports
# 28081/28443/28901, warms up with 2,000 requests, counts REQUESTS more.
# Needs valgrind, nginx, h2load, openssl and curl (apt-get install valgrind
# nginx nghttp2-client openssl curl). About a minute per run.
set -euo pipefail

mode=${1:-h2}
requests=${2:-20000}
repo=$(cd "$(dirname "$0")/../.." && pwd)
binary=$(realpath "${3:-$repo/target/release/tlsgate}")
case $mode in h1 | h2) ;; *) echo "mode is h1 or h2, not $mode" >&2; exit 2 ;; esac
for tool in valgrind callgrind_control nginx h2load openssl curl; do
  command -v "$tool" >/dev/null || { echo "needs $tool (see the header of $0)" >&2; exit 2; }
done
[ -x "$binary" ] || { echo "no tlsgate binary at $binary: cargo build --release" >&2; exit 2; }

work=$(mktemp -d)
pids=()
cleanup() {
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

mkdir -p "$work/store/server/site" "$work/tmp"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 \
  -keyout "$work/store/server/site/key.pem" -out "$work/store/server/site/cert.pem" \
  -subj /CN=localhost -addext subjectAltName=DNS:localhost,IP:127.0.0.1 2>/dev/null
cat >"$work/backend.conf" <<EOF
worker_processes 1; daemon off; pid $work/nginx.pid; error_log $work/error.log warn;
events { worker_connections 4096; }
http {
  access_log off; client_body_temp_path $work/tmp; proxy_temp_path $work/tmp;
  fastcgi_temp_path $work/tmp; uwsgi_temp_path $work/tmp; scgi_temp_path $work/tmp;
  keepalive_requests 1000000; keepalive_timeout 75s;
  server { listen 127.0.0.1:28081; location = / { default_type text/plain; return 200 "ok\n"; } }
}
EOF
cat >"$work/tlsgate.toml" <<EOF
[store]
dir = "store"
[admin]
bind = "127.0.0.1:28901"
[[listener]]
name = "web"
bind = "127.0.0.1:28443"
protocol = "https"
certificates = ["site"]
[listener.timeouts]
client_idle = "120s"
[[listener.backend]]
address = "127.0.0.1:28081"
EOF

# The proxy on CPU 0, everything else on CPU 1, as in the comparison.
taskset -c 1 nginx -p "$work" -c "$work/backend.conf" >/dev/null 2>&1 &
pids+=($!)
taskset -c 0 valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.%p" \
  "$binary" serve --config "$work/tlsgate.toml" --workers 1 >"$work/tlsgate.log" 2>&1 &
tlsgate=$!
pids+=("$tlsgate")
for _ in $(seq 300); do
  curl -sk -o /dev/null https://localhost:28443/ && break
  kill -0 "$tlsgate" 2>/dev/null || { cat "$work/tlsgate.log" >&2; exit 1; }
  sleep 0.2
done

load() {
  local flags=(-t1 -c50 -m10)
  [ "$mode" = h1 ] && flags=(--h1 -t1 -c50)
  taskset -c 1 h2load "${flags[@]}" -n "$1" https://localhost:28443/ |
    grep -E '^requests:' | grep -q " $1 succeeded" ||
    { echo "not every request succeeded (h2load)" >&2; exit 1; }
}
load 2000
callgrind_control -z "$tlsgate" >/dev/null 2>&1
load "$requests"
callgrind_control -d "$tlsgate" >/dev/null 2>&1
dump=""
for _ in $(seq 50); do
  dump=$(ls -t "$work"/callgrind."$tlsgate"* 2>/dev/null | head -1)
  [ -n "$dump" ] && grep -q '^totals:\|^summary:' "$dump" && break
  sleep 0.2
done
total=$(grep -E '^(totals|summary):' "$dump" | head -1 | awk '{print $2}')
echo "$(basename "$binary") $mode: $((total / requests)) instructions per request (user space, $requests requests)"
