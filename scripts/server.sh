#!/usr/bin/env bash
# Builds krust (release) and starts a single-node cluster on the embedded store.
# Extra arguments go to `krust server` (for example --data-dir, --port).
set -euo pipefail
cd "$(dirname "$0")/.."
# runc runs the node agent's containers.
scripts/deps.sh protobuf-compiler libseccomp-dev runc
cargo build --release -p krust
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
exec "$target_dir/release/krust" server "$@"
