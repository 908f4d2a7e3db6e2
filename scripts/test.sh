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

e2e() { KRUST_BIN="$target_dir/debug/krust" python3 -m pytest tests/e2e -q -x --durations=10 "$@"; }
if [ $# -gt 0 ]; then
  # A narrowed run (arguments for pytest: -k NAME, -m, --lf, a file): one pytest, as asked.
  e2e "$@"
  exit
fi
# The whole suite in two lanes side by side: tests that change host-wide state (pods on real
# nodes: cgroups, links, nf_tables; marked `host`) one at a time in one lane, the API's tests
# in the other. The host lane's output follows the API lane's. Interrupted, both lanes get
# SIGINT, so that pytest tears down what they made.
host_log=$(mktemp /tmp/krust-e2e-host.XXXXXX.log)
e2e -p no:cacheprovider -m host >"$host_log" 2>&1 &
host_lane=$!
e2e -p no:cacheprovider -m "not host" &
api_lane=$!
trap 'kill -INT $host_lane $api_lane 2>/dev/null; pkill -INT -P "$host_lane,$api_lane" 2>/dev/null; wait; cat "$host_log"; rm -f "$host_log"' EXIT
api_status=0
wait $api_lane || api_status=$?
host_status=0
wait $host_lane || host_status=$?
trap - EXIT
echo "===== e2e: the host lane (tests of pods on real nodes) ====="
cat "$host_log"
rm -f "$host_log"
exit $(( api_status != 0 ? api_status : host_status ))
