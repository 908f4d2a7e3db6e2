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

# The end-to-end suite in two lanes side by side: tests that change host-wide state (pods on
# real nodes: cgroups, links, nf_tables) one at a time in one lane, the API's tests in the
# other. Each lane is a pytest run of its own; the host lane's output follows the API lane's.
e2e() { KRUST_BIN="$target_dir/debug/krust" python3 -m pytest tests/e2e -q -x -p no:cacheprovider --durations=10 "$@"; }
host_log=$(mktemp /tmp/krust-e2e-host.XXXXXX.log)
e2e -m host "$@" >"$host_log" 2>&1 &
host_lane=$!
trap 'pkill -TERM -P $host_lane 2>/dev/null; kill $host_lane 2>/dev/null || true' EXIT
api_status=0
e2e -m "not host" "$@" || api_status=$?
host_status=0
wait $host_lane || host_status=$?
trap - EXIT
echo "===== e2e: the host lane (tests of pods on real nodes) ====="
cat "$host_log"
rm -f "$host_log"
# pytest exits 5 when a lane selected no test (a narrowed run, "-k NAME", may leave one empty).
for status in $api_status $host_status; do
  if [ "$status" -ne 0 ] && [ "$status" -ne 5 ]; then exit "$status"; fi
done
if [ $api_status -eq 5 ] && [ $host_status -eq 5 ]; then echo "no e2e test selected"; exit 5; fi
