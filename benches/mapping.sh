#!/usr/bin/env bash
# benches/mapping.sh [EVENTS] [RUNS] — weft's mapping throughput against jaq and the serde_json floor,
# using the shared benchmark kit (shared/bench: gen_events.py, mapping.jq, floor/, MAPPING.md).
#
#   benches/mapping.sh                 # 100000 events (seed 902), 5 runs each
#   RUNS=5 benches/mapping.sh 100000   # same
#
# What it does, in order:
#   1. finds the kit (shared/bench beside the repo, or /work/shared/bench, or $BENCH_KIT);
#   2. generates EVENTS events with the kit's gen_events.py (seed $SEED, default 902) into $BENCH_WORK
#      (default /tmp/benchkit), reusing the file if an earlier run made it;
#   3. installs jaq the way the kit does if `cargo install --list` lacks it
#      (`cargo install jaq --locked --version 3.1.2`), builds the kit's floor crate (`--release --locked`,
#      plain serde_json, no preserve_order) and weft (`cargo build --release --bin weft` in the working tree;
#      with WEFT_REV=<commit> it benchmarks that commit instead, exported with `git archive` into $BENCH_WORK
#      and built `--locked`, so uncommitted edits in the tree neither break nor skew the run);
#   4. checks correctness before timing anything: weft's output md5 and jaq's output md5 must both equal the
#      kit's expected md5 (MAPPING.md) for 100000 events / seed 902; for other sizes weft must be byte-equal
#      to jaq. Any mismatch stops the script with a non-zero exit;
#   5. times, interleaved per round (weft, jaq, floor, weft, jaq, floor, ...) so the tools share the machine's
#      noise: `weft map benches/data/mapping.yaml`, `jaq -c -f mapping.jq`, `floor`; stdin from the page
#      cache, stdout to /dev/null; wall from `date +%s%N`, CPU (user+sys) and peak RSS from /usr/bin/time
#      (without GNU time: bash `time`, RSS "n/a");
#   6. prints a markdown table and the two ratios the mapping issue asks for:
#      weft vs jaq throughput (target >= 2x) and weft as % of the serde_json floor (target >= 50%).
#
# Progress goes to stderr, the report to stdout. Network: only crates.io, through cargo (jaq install, builds).
# Environment: RUNS, SEED (902), BENCH_WORK (/tmp/benchkit), BENCH_KIT (path to shared/bench),
#   WEFT_REV (a commit to benchmark instead of the working tree), JAQ (a jaq binary to use instead of the
#   installed one), JAQ_VERSION (3.1.2), NO_GNU_TIME=1.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
N=${1:-${EVENTS:-100000}}
RUNS=${2:-${RUNS:-5}}
SEED=${SEED:-902}
WORK=${BENCH_WORK:-/tmp/benchkit}
JAQ_VERSION=${JAQ_VERSION:-3.1.2}
EXPECTED_MD5=e45116bb6e20f9e0eb2d6cc96619e0c9   # MAPPING.md: gen_events.py 100000 902 | jaq -c -f mapping.jq
CARGO_HOME=${CARGO_HOME:-$HOME/.cargo}
export PATH="$CARGO_HOME/bin:$PATH"

log() { printf '%s\n' "$*" >&2; }
die() { log ""; log "FAIL: $*"; exit 1; }

case "$N" in '' | *[!0-9]* | 0) die "EVENTS must be a positive integer (got '$N')";; esac
case "$RUNS" in '' | *[!0-9]* | 0) die "RUNS must be a positive integer (got '$RUNS')";; esac
command -v python3 >/dev/null || die "python3 not found"
command -v cargo >/dev/null || die "cargo not found (install a Rust toolchain)"
command -v md5sum >/dev/null || die "md5sum not found"

# ---------- the kit ----------
find_kit() {
  local c d
  for c in "${BENCH_KIT:-}" "$REPO/../shared/bench" "$REPO/shared/bench" /work/shared/bench; do
    [ -n "$c" ] && [ -f "$c/gen_events.py" ] && [ -f "$c/mapping.jq" ] && [ -f "$c/floor/Cargo.toml" ] \
      && { (cd "$c" && pwd); return 0; }
  done
  # any ancestor of the repo that has shared/bench
  d=$REPO
  while [ "$d" != / ]; do
    d=$(dirname "$d")
    [ -f "$d/shared/bench/gen_events.py" ] && [ -f "$d/shared/bench/floor/Cargo.toml" ] \
      && { (cd "$d/shared/bench" && pwd); return 0; }
  done
  return 1
}
KIT=$(find_kit) || die "benchmark kit not found: looked for shared/bench beside $REPO, in its ancestors and at /work/shared/bench (set BENCH_KIT=/path/to/shared/bench)"
MAPPING_JQ="$KIT/mapping.jq"
MAPPING_YAML="$REPO/benches/data/mapping.yaml"
[ -f "$MAPPING_YAML" ] || die "missing $MAPPING_YAML"
mkdir -p "$WORK"
log "kit:    $KIT"
log "work:   $WORK"

TMP=$(mktemp -d "$WORK/mapping-bench.XXXXXX")
trap 'rm -rf "$TMP"' EXIT

# ---------- events ----------
EVENTS_FILE="$WORK/events-$N-seed$SEED.ndjson"
if [ -s "$EVENTS_FILE" ] && [ "$(wc -l < "$EVENTS_FILE")" -eq "$N" ]; then
  log "events: reusing $EVENTS_FILE"
else
  log "events: python3 gen_events.py $N $SEED > $EVENTS_FILE"
  python3 "$KIT/gen_events.py" "$N" "$SEED" > "$TMP/events.ndjson"
  mv -f "$TMP/events.ndjson" "$EVENTS_FILE"
fi
LINES=$(wc -l < "$EVENTS_FILE")
BYTES=$(wc -c < "$EVENTS_FILE")
[ "$LINES" -eq "$N" ] || die "$EVENTS_FILE has $LINES lines, expected $N"

# ---------- jaq (exactly as the kit installs it) ----------
if [ -z "${JAQ:-}" ]; then
  if ! cargo install --list | grep -q '^jaq v'; then
    log "jaq:    not in 'cargo install --list'; running: cargo install jaq --locked --version $JAQ_VERSION"
    cargo install jaq --locked --version "$JAQ_VERSION" >&2
  fi
  JAQ="${CARGO_INSTALL_ROOT:-$CARGO_HOME}/bin/jaq"
fi
[ -x "$JAQ" ] || die "jaq binary not found at $JAQ"
JAQ_VER=$("$JAQ" --version 2>&1 | head -1)
case "$JAQ_VER" in *"$JAQ_VERSION"*) ;; *) log "note: using $JAQ_VER (the kit was calibrated with jaq $JAQ_VERSION)";; esac

# ---------- floor (plain serde_json, as the kit builds it) ----------
log "build:  floor (cargo build --release --locked) ..."
CARGO_TARGET_DIR="$WORK/floor-target" cargo build --release --locked -q --manifest-path "$KIT/floor/Cargo.toml" >&2 \
  || die "building the kit's floor crate failed"
FLOOR="$WORK/floor-target/release/floor"
[ -x "$FLOOR" ] || die "floor binary not found at $FLOOR"

# ---------- weft ----------
if [ -z "${WEFT_REV:-}" ]; then
  # the working tree, as it is
  log "build:  weft (cargo build --release --bin weft) ..."
  (cd "$REPO" && cargo build --release -q --bin weft >&2) || die "building weft failed"
  WEFT=$(cd "$REPO" && cargo metadata --format-version 1 --no-deps 2>/dev/null \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' || echo "$REPO/target")/release/weft
  WEFT_DESC=$(cd "$REPO" && git rev-parse --short HEAD 2>/dev/null || echo '?')
  if [ -n "$(cd "$REPO" && git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
    WEFT_DESC="working tree at $WEFT_DESC + uncommitted changes"
  else
    WEFT_DESC="commit $WEFT_DESC (clean working tree)"
  fi
else
  # a committed revision, exported with git archive (the working tree is not touched)
  REV=$(cd "$REPO" && git rev-parse --verify "$WEFT_REV^{commit}") || die "WEFT_REV=$WEFT_REV is not a commit"
  SRC="$WORK/weft-src-${REV:0:12}"
  if [ ! -f "$SRC/Cargo.toml" ]; then
    rm -rf "$SRC.tmp" && mkdir -p "$SRC.tmp"
    (cd "$REPO" && git archive "$REV") | tar -x -C "$SRC.tmp" && mv "$SRC.tmp" "$SRC"
  fi
  log "build:  weft at ${REV:0:12} (cargo build --release --locked --bin weft, in $SRC) ..."
  CARGO_TARGET_DIR="$WORK/weft-target" cargo build --release --locked -q --bin weft --manifest-path "$SRC/Cargo.toml" >&2 \
    || die "building weft at ${REV:0:12} failed"
  WEFT="$WORK/weft-target/release/weft"
  WEFT_DESC="commit ${REV:0:12} (WEFT_REV=$WEFT_REV, built from git archive)"
fi
[ -x "$WEFT" ] || die "weft binary not found at $WEFT"

cat "$EVENTS_FILE" > /dev/null   # page cache

# ---------- correctness, before any timing ----------
log "check:  weft map ... --input $EVENTS_FILE"
"$WEFT" map "$MAPPING_YAML" --input "$EVENTS_FILE" > "$TMP/weft.out" || die "weft map exited non-zero"
log "check:  jaq -c -f mapping.jq"
"$JAQ" -c -f "$MAPPING_JQ" < "$EVENTS_FILE" > "$TMP/jaq.out" || die "jaq exited non-zero"
WEFT_MD5=$(md5sum < "$TMP/weft.out" | cut -d' ' -f1)
JAQ_MD5=$(md5sum < "$TMP/jaq.out" | cut -d' ' -f1)
[ "$(wc -l < "$TMP/weft.out")" -eq "$N" ] || die "weft wrote $(wc -l < "$TMP/weft.out") lines for $N events"
show_first_diff() {
  local ln
  ln=$(cmp "$TMP/jaq.out" "$TMP/weft.out" 2>/dev/null | sed -n 's/.* line \([0-9]*\)$/\1/p' || true)
  [ -n "$ln" ] || return 0
  log "first differing line: $ln"
  log "  jaq : $(sed -n "${ln}p" "$TMP/jaq.out")"
  log "  weft: $(sed -n "${ln}p" "$TMP/weft.out")"
}
if [ "$N" = 100000 ] && [ "$SEED" = 902 ]; then
  if [ "$JAQ_MD5" != "$EXPECTED_MD5" ]; then
    die "jaq output md5 $JAQ_MD5 != expected $EXPECTED_MD5 (wrong events file or jaq version?)"
  fi
  if [ "$WEFT_MD5" != "$EXPECTED_MD5" ]; then
    show_first_diff
    die "weft output md5 $WEFT_MD5 != expected $EXPECTED_MD5: weft's mapping output is WRONG; not timing it"
  fi
  CHECK="weft md5 = jaq md5 = $EXPECTED_MD5 (the kit's expected md5 for 100000 events, seed 902), all $N lines"
else
  if [ "$WEFT_MD5" != "$JAQ_MD5" ]; then
    show_first_diff
    die "weft output (md5 $WEFT_MD5) differs from jaq's (md5 $JAQ_MD5): not timing it"
  fi
  CHECK="weft byte-identical to jaq on all $N lines (md5 $WEFT_MD5; the kit's expected md5 covers only 100000/902)"
fi
log "check:  OK — $CHECK"
rm -f "$TMP/weft.out" "$TMP/jaq.out"

# ---------- timing ----------
if [ -z "${NO_GNU_TIME:-}" ] && [ -x /usr/bin/time ] && /usr/bin/time -f '%M' -o /dev/null true 2>/dev/null; then
  TIMER="GNU /usr/bin/time (CPU = %U+%S, peak RSS = %M)"; GNU_TIME=1
else
  TIMER="bash time (no GNU /usr/bin/time: peak RSS n/a)"; GNU_TIME=
fi

# one_run CMD... -> "WALL_S CPU_S RSS_KB" (RSS_KB "n/a" without GNU time); stdin = events, stdout = /dev/null
one_run() {
  local s e
  if [ -n "$GNU_TIME" ]; then
    s=$(date +%s%N)
    /usr/bin/time -f '%U %S %M' -o "$TMP/time" "$@" < "$EVENTS_FILE" > /dev/null || die "command failed: $*"
    e=$(date +%s%N)
    tail -1 "$TMP/time" | awk -v w="$(( e - s ))" '{printf "%.6f %.2f %s\n", w / 1e9, $1 + $2, $3}'
  else
    local TIMEFORMAT='%U %S'
    s=$(date +%s%N)
    { time "$@" < "$EVENTS_FILE" > /dev/null 2> "$TMP/stderr"; } 2> "$TMP/time" || die "command failed: $*"
    e=$(date +%s%N)
    tail -1 "$TMP/time" | awk -v w="$(( e - s ))" '{printf "%.6f %.2f n/a\n", w / 1e9, $1 + $2}'
  fi
}

NAMES=("weft map (benches/data/mapping.yaml)" "jaq -c -f mapping.jq" "floor (serde_json)")
RESULTS="$TMP/results.tsv"
: > "$RESULTS"
log "timing: $RUNS rounds of weft, jaq, floor (interleaved); $LINES events, $BYTES bytes, stdout to /dev/null"
for r in $(seq 1 "$RUNS"); do
  for i in 0 1 2; do
    case $i in
      0) cmd=("$WEFT" map "$MAPPING_YAML") ;;
      1) cmd=("$JAQ" -c -f "$MAPPING_JQ") ;;
      2) cmd=("$FLOOR") ;;
    esac
    wall= cpu= rss=
    read -r wall cpu rss < <(one_run "${cmd[@]}") || true
    [ -n "${rss:-}" ] || die "round $r of '${NAMES[$i]}' failed"
    printf '%s\t%s\t%s\t%s\t%s\n' "$i" "$r" "$wall" "$cpu" "$rss" >> "$RESULTS"
    log "  round $r  $(printf '%-38s' "${NAMES[$i]}") wall $(printf '%.3f' "$wall") s  cpu $cpu s  rss ${rss} KB"
  done
done

# ---------- report ----------
echo "# weft mapping benchmark"
echo
echo "- date: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
echo "- host: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null | cut -d: -f2- | sed 's/^ //'), $(free -g 2>/dev/null | awk '/Mem:/{print $2" GiB RAM"}')"
echo "- input: \`gen_events.py $N $SEED\` ($LINES events, $BYTES bytes, $(( BYTES / LINES )) B/event avg)"
echo "- weft: $WEFT_DESC, \`weft map benches/data/mapping.yaml < events > /dev/null\`"
echo "- jaq: $JAQ_VER, \`jaq -c -f mapping.jq < events > /dev/null\`"
echo "- floor: kit's floor crate (serde_json $(grep -A1 '^name = "serde_json"' "$KIT/floor/Cargo.lock" | sed -n 's/version = "\(.*\)"/\1/p'), no preserve_order), \`floor < events > /dev/null\`"
echo "- rustc: $(rustc --version 2>/dev/null || echo '?')"
echo "- check: $CHECK"
echo "- timing: $RUNS interleaved rounds (weft, jaq, floor per round); $TIMER; wall = date +%s%N around each run"
echo
python3 - "$RESULTS" "$LINES" "$BYTES" "${NAMES[@]}" <<'PY'
import sys, statistics as st
path, lines, nbytes, names = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
runs = {0: {}, 1: {}, 2: {}}
for ln in open(path):
    i, r, wall, cpu, rss = ln.rstrip("\n").split("\t")
    runs[int(i)][int(r)] = (float(wall), float(cpu), None if rss == "n/a" else int(rss))
def col(i, k): return [runs[i][r][k] for r in sorted(runs[i])]
med = {i: st.median(col(i, 0)) for i in runs}
cols = ("tool", "median wall s", "events/s (median)", "MB/s (median)", "best-run events/s",
        "median CPU s", "peak RSS MiB", "x floor time", "all runs, wall s")
print("| " + " | ".join(cols) + " |")
print("|" + "|".join("---" for _ in cols) + "|")
for i in (0, 1, 2):
    walls, cpus, rss = col(i, 0), col(i, 1), [x for x in col(i, 2) if x is not None]
    print("| " + " | ".join([
        names[i], "%.3f" % med[i], "{:,.0f}".format(lines / med[i]), "%.1f" % (nbytes / med[i] / 1e6),
        "{:,.0f}".format(lines / min(walls)), "%.2f" % st.median(cpus),
        ("%.1f" % (max(rss) / 1024.0)) if rss else "n/a", "%.2fx" % (med[i] / med[2]),
        " ".join("%.2f" % w for w in walls)]) + " |")
print()
# ratios of throughput = inverse ratios of wall time; also the median of the per-round ratios (paired, so
# noise shared within a round cancels) as a robustness check
rounds = sorted(runs[0])
vs_jaq = med[1] / med[0]
of_floor = med[2] / med[0] * 100
pr_jaq = st.median(runs[1][r][0] / runs[0][r][0] for r in rounds)
pr_floor = st.median(runs[2][r][0] / runs[0][r][0] * 100 for r in rounds)
print("| ratio | value (from medians) | median of per-round ratios | target | met |")
print("|---|---|---|---|---|")
print("| weft vs jaq throughput | %.2fx | %.2fx | >= 2x | %s |" % (vs_jaq, pr_jaq, "yes" if vs_jaq >= 2 else "NO"))
print("| weft as %% of serde_json floor throughput | %.0f%% | %.0f%% | >= 50%% | %s |"
      % (of_floor, pr_floor, "yes" if of_floor >= 50 else "NO"))
print()
print("events/s and MB/s use the median wall time (MB = 10^6 bytes of input NDJSON); best-run = fastest run.")
print("'x floor time' = median wall / floor median wall. CPU s = user+sys of the process; peak RSS = max over runs.")
PY
