#!/usr/bin/env bash
# Times restarts of the release daemon on a data dir: from exec to /healthz answering, N times.
#
#   bench/scripts/restart-time.sh DATA_DIR [N]
#
# DATA_DIR is typically one `cargo run --release --bin index_walk -- --dir DATA_DIR` built
# (1,000,000 chunks by default). Prints each start's time and the median, and the index walk's
# own time from the daemon's log.
set -euo pipefail
dir=${1:?usage: restart-time.sh DATA_DIR [N]}
runs=${2:-10}
bin=${SCIPCACHED:-target/release/scipcached}
grpc=127.0.0.1:57051
http=127.0.0.1:57052
log=$(mktemp)
trap 'rm -f "$log"' EXIT
times=()
for i in $(seq "$runs"); do
  start=$(date +%s%N)
  "$bin" --data-dir "$dir" --cold-url "file://$(realpath "$dir")/cold" \
    --listen "$grpc" --metrics-listen "$http" >"$log" 2>&1 &
  pid=$!
  until curl -sf "http://$http/healthz" >/dev/null 2>&1; do
    kill -0 "$pid" 2>/dev/null || { cat "$log"; exit 1; }
    sleep 0.01
  done
  ms=$(( ($(date +%s%N) - start) / 1000000 ))
  walk=$(grep -o 'index walk passed ms=[0-9]*' "$log" | grep -o '[0-9]*$' || echo '?')
  echo "start $i: serving after $ms ms (index walk $walk ms)"
  times+=("$ms")
  kill -TERM "$pid"
  wait "$pid" || true
done
sorted=$(printf '%s\n' "${times[@]}" | sort -n)
echo "median: $(echo "$sorted" | sed -n "$(( (runs + 1) / 2 ))p") ms over $runs starts"
