#!/usr/bin/env bash
# Times `weft validate` end to end on 1,000 generated realistic flows written to disk (the same templates
# as `cargo bench --bench validate`), against the baseline of `weft validate` on an empty flow directory
# (process start + catalog load) measured in the same run. Target (issue 3): under 1.5 s wall on 2 cores.
#
#   benches/validate_wall.sh [COUNT] [RUNS]
set -euo pipefail
cd "$(dirname "$0")/.."
count=${1:-1000}
runs=${2:-5}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

cargo build --release --quiet
bin=target/release/weft

mkdir -p "$work/many/flows" "$work/empty/flows"
cp benches/data/weft.yaml "$work/many/weft.yaml"
cp benches/data/weft.yaml "$work/empty/weft.yaml"
python3 - "$count" "$work/many/flows" <<'PY'
import sys
count, out = int(sys.argv[1]), sys.argv[2]
templates = open("benches/data/flow_templates.txt").read().split("%%\n")
for i in range(count):
    text = templates[i % len(templates)].replace("{n}", str(i)).replace("{m}", str(i % 60))
    open(f"{out}/generated-{i:05}.yaml", "w").write(text)
PY

time_runs() {
  local dir=$1 best=999999 total=0
  for _ in $(seq "$runs"); do
    local start end ms
    start=$(date +%s%N)
    (cd "$dir" && "$OLDPWD/$bin" validate flows >/dev/null)
    end=$(date +%s%N)
    ms=$(( (end - start) / 1000000 ))
    total=$(( total + ms ))
    (( ms < best )) && best=$ms
  done
  echo "$best $(( total / runs ))"
}

read -r base_best base_mean < <(time_runs "$work/empty")
read -r many_best many_mean < <(time_runs "$work/many")
rss=$( { /usr/bin/time -f '%M' "$bin" validate "$work/many/flows" >/dev/null; } 2>&1 | tail -1 || echo "?")
echo "| run | best ms | mean ms |"
echo "|---|---|---|"
echo "| weft validate, empty flows/ (process start only: the catalog loads with the first flow) | $base_best | $base_mean |"
echo "| weft validate, $count flows | $many_best | $many_mean |"
echo
echo "per flow (best, minus start-up): $(( (many_best - base_best) * 1000 / count )) µs; peak RSS: ${rss} KiB"
