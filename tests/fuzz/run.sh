#!/usr/bin/env bash
# Runs every libFuzzer target of a fuzz build for its share of a time budget.
#   bash tests/fuzz/run.sh BUILD_DIR SECONDS
# BUILD_DIR is a build configured with clang and -DTASKCODEC_FUZZ=ON (see the Makefile's
# `fuzz` target). Seeds are generated fresh into BUILD_DIR/fuzz-seeds; each target's
# working corpus lives in BUILD_DIR/fuzz-corpus/<target> and grows from run to run;
# crashing inputs go to BUILD_DIR/fuzz-artifacts. Prints one line per target and exits
# non-zero when any target crashed, leaked, timed out or failed an oracle.
set -uo pipefail

build=${1:?usage: run.sh BUILD_DIR SECONDS}
total=${2:?usage: run.sh BUILD_DIR SECONDS}
bin="$build/tests/fuzz"

targets=(fuzz_decode fuzz_decode_stamped fuzz_decode_table fuzz_roundtrip fuzz_table fuzz_sparse)
declare -A max_len=(
  [fuzz_decode]=8192 [fuzz_decode_stamped]=8192 [fuzz_decode_table]=12288
  [fuzz_roundtrip]=2048 [fuzz_table]=4096 [fuzz_sparse]=8192)
declare -A extra=([fuzz_decode]="-use_value_profile=1")

for t in "${targets[@]}" fuzz_make_corpus; do
  if [ ! -x "$bin/$t" ]; then
    echo "run.sh: $bin/$t is missing; build with CXX=clang++ -DTASKCODEC_FUZZ=ON first" >&2
    exit 2
  fi
done

share=$(( total / ${#targets[@]} ))
(( share < 1 )) && share=1

seeds="$build/fuzz-seeds"
corpus="$build/fuzz-corpus"
artifacts="$build/fuzz-artifacts"
logs="$build/fuzz-logs"
rm -rf "$seeds"
mkdir -p "$corpus" "$artifacts" "$logs"
if ! "$bin/fuzz_make_corpus" "$seeds" >"$logs/make_corpus.log" 2>&1; then
  echo "run.sh: the seed corpus generator failed:" >&2
  cat "$logs/make_corpus.log" >&2
  exit 1
fi

export ASAN_OPTIONS="${ASAN_OPTIONS:-abort_on_error=1:detect_leaks=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

echo "fuzzing ${#targets[@]} targets for ${share} s each"
failed=0
for t in "${targets[@]}"; do
  mkdir -p "$corpus/$t"
  log="$logs/$t.log"
  nseeds=$(find "$seeds/$t" -type f 2>/dev/null | wc -l)
  start=$(date +%s)
  # shellcheck disable=SC2086  # extra flags are deliberately word-split
  "$bin/$t" -max_total_time="$share" -max_len="${max_len[$t]}" -timeout=30 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$artifacts/$t-" ${extra[$t]:-} \
    "$corpus/$t" "$seeds/$t" >"$log" 2>&1
  rc=$?
  secs=$(( $(date +%s) - start ))
  runs=$(awk '/stat::number_of_executed_units/ {print $2}' "$log" | tail -n 1)
  done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "$log" | tail -n 1)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$done_line")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$done_line")
  corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$done_line")
  if [ "$rc" -eq 0 ]; then
    printf 'ok    %-20s %9s runs in %3d s, cov %s, ft %s, corpus %s (%d seeds)\n' \
      "$t" "${runs:-?}" "$secs" "${cov:-?}" "${ft:-?}" "${corp:-?}" "$nseeds"
  else
    failed=1
    printf 'FAIL  %-20s exit %d after %d s (%s runs); log %s\n' "$t" "$rc" "$secs" "${runs:-?}" "$log"
    grep -E 'ERROR|oracle|SUMMARY|Test unit written|runtime error' "$log" | head -n 20 | sed 's/^/      /'
  fi
done
exit "$failed"
