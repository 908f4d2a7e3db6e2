#!/usr/bin/env bash
# Runs every check CI runs: formatting, clippy, unit and integration tests, and the
# end-to-end suite (real kubectl 1.27 and 1.33, the Python client, real etcd).
set -euo pipefail
cd "$(dirname "$0")/.."
# runc and busybox-static: the node agent's tests run real containers of an image built from busybox;
# docker-registry: a registry on loopback they pull from.
scripts/deps.sh protobuf-compiler libseccomp-dev etcd-server python3-pip runc busybox-static nftables docker-registry
python3 -m pip install -q -r tests/e2e/requirements.txt

cargo fmt --all --check
cargo clippy --workspace --all-targets -- -D warnings
cargo test --workspace
cargo build -p krust
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
KRUST_BIN="$target_dir/debug/krust" python3 -m pytest tests/e2e -q -x --durations=10 "$@"
