#!/usr/bin/env bash
# Builds the release binary and runs the deploy checks against it: the
# compose config (deploy/compose/tlsgate.toml, also the image's default)
# started for real in front of two local backends, the Kubernetes and
# systemd configs through check-config, the unit through
# systemd-analyze verify, and the notify protocol.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p tlsgate
TLSGATE_BIN="$PWD/target/release/tlsgate" cargo test -p tlsgate --test deploy
