#!/usr/bin/env bash
# Side-by-side comparison of tlsgate, NGINX and HAProxy as single-core TLS
# terminators on loopback. Installs what is missing (Debian packages),
# builds tlsgate and the load generator, then hands over to compare.py.
#
#   benches/compare/run.sh                    # full run: 3 runs per figure, ~12 min
#   benches/compare/run.sh --quick            # 1 run of 3 s per figure, ~2 min
#   benches/compare/run.sh --only tlsgate,nginx
#   benches/compare/run.sh --help             # every option
#
# The report is printed and written to benches/compare/results/latest.md
# (quick runs: results/quick.md). See README.md beside this file.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"

missing=""
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing="$missing nginx"
command -v haproxy >/dev/null 2>&1 || [ -x /usr/sbin/haproxy ] || missing="$missing haproxy"
command -v wrk >/dev/null 2>&1 || missing="$missing wrk"
command -v h2load >/dev/null 2>&1 || missing="$missing nghttp2-client"
command -v openssl >/dev/null 2>&1 || missing="$missing openssl"
command -v taskset >/dev/null 2>&1 || missing="$missing util-linux"
if [ -n "$missing" ]; then
  echo "run.sh: installing$missing" >&2
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  # Wait for another apt/dpkg instead of failing at once.
  $sudo apt-get -o DPkg::Lock::Timeout=300 update -qq
  # policy-rc.d-less hosts start the packaged nginx/haproxy services on
  # ports 80/8404 etc.; they stay idle and use none of our ports.
  $sudo apt-get -o DPkg::Lock::Timeout=300 install -y -qq $missing >/dev/null
fi
# The Debian binaries live in /usr/sbin, which is not on every user's PATH.
export PATH="$PATH:/usr/sbin:/sbin"

cd "$repo"
echo "run.sh: building tlsgate and tlsgate-loadgen (release)" >&2
cargo build --release --quiet -p tlsgate --bin tlsgate
cargo build --release --quiet -p tlsgate-benches --bin tlsgate-loadgen

exec python3 "$here/compare.py" \
  --tlsgate-bin "$repo/target/release/tlsgate" \
  --loadgen-bin "$repo/target/release/tlsgate-loadgen" "$@"
