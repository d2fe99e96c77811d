#!/usr/bin/env bash
# Builds and runs the libFuzzer targets in fuzz/:   bash scripts/fuzz.sh [SECONDS] [TARGET...]
#
#   SECONDS   fuzzing time per target (default 20)
#   TARGET    http, sse, json, pipeline, split_differential, messages, ollama, responses, gemini, anthropic (default: all of them)
#
# Needs clang++ with libFuzzer and the sanitizer runtimes (Debian: clang, libclang-rt-dev).
# Everything goes to build-fuzz/ (LLM_STREAM_FUZZ_DIR overrides it): binaries, seeds made from
# tests/data/streams/*.sse (and fuzz/seeds/<target>/ as they are), the growing corpora (kept between runs), logs and crash artifacts.
# Each target first replays fuzz/regressions/* (inputs that once broke something), then fuzzes
# with the dictionary fuzz/dict/sse_json.dict. A target fails when either step finds a crash,
# leak, timeout or broken invariant; the artifact path is printed. The last line is
# "N passed, M failed" (targets) and the exit status is 1 when any target failed.
#
# Environment:
#   LLM_STREAM_FUZZ_JOBS=N          targets fuzzed at once (default 1)
#   LLM_STREAM_FUZZ_SKIP_KNOWN=1    build the targets to skip inputs that trigger the known bugs
#                                   listed in fuzz/fuzz_common.hpp (to look for other ones)
#   CXX                             the compiler (default clang++)
set -uo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root" || exit 2
seconds="${1:-20}"
shift || true
all_targets=(http sse json pipeline split_differential messages ollama responses gemini anthropic dns)
targets=("$@")
[[ ${#targets[@]} -eq 0 ]] && targets=("${all_targets[@]}")
work="${LLM_STREAM_FUZZ_DIR:-$root/build-fuzz}"
jobs="${LLM_STREAM_FUZZ_JOBS:-1}"
cxx="${CXX:-clang++}"
dict="$root/fuzz/dict/sse_json.dict"

if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [[ "$seconds" -eq 0 ]]; then
    echo "usage: scripts/fuzz.sh [SECONDS] [TARGET...]" >&2
    exit 2
fi
for t in "${targets[@]}"; do
    if [[ ! -f "$root/fuzz/fuzz_$t.cpp" ]]; then
        echo "unknown target: $t (known: ${all_targets[*]})" >&2
        exit 2
    fi
done

mkdir -p "$work"/{logs,seeds,corpus,artifacts}
# shellcheck disable=SC2054  # the commas belong to -fsanitize=
flags=(-std=c++17 -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
       -Wall -Wextra -I"$root" -I"$root/fuzz")
if [[ "${LLM_STREAM_FUZZ_SKIP_KNOWN:-0}" == 1 ]]; then
    flags+=(-DLLM_STREAM_FUZZ_SKIP_KNOWN=1)
    echo "LLM_STREAM_FUZZ_SKIP_KNOWN=1: inputs that trigger known bugs are skipped"
fi

# 1. Build: the implementation once, then the targets (two compilers at a time), each linking it.
echo "== building ${#targets[@]} targets with $cxx"
implementation="$work/llm_stream_implementation.o"
if ! "$cxx" "${flags[@]}" -c tests/support/llm_stream_implementation.cpp -o "$implementation" \
        >"$work/logs/build_implementation.log" 2>&1; then
    echo "building tests/support/llm_stream_implementation.cpp failed:"; sed -n 1,30p "$work/logs/build_implementation.log"
    exit 1
fi
build_failed=()
pids=()
for t in "${targets[@]}"; do
    "$cxx" "${flags[@]}" "fuzz/fuzz_$t.cpp" "$implementation" -o "$work/fuzz_$t" >"$work/logs/build_$t.log" 2>&1 &
    pids+=("$!:$t")
    if [[ ${#pids[@]} -ge 2 ]]; then
        for p in "${pids[@]}"; do wait "${p%%:*}" || build_failed+=("${p#*:}"); done
        pids=()
    fi
done
for p in "${pids[@]}"; do wait "${p%%:*}" || build_failed+=("${p#*:}"); done
for t in "${build_failed[@]}"; do
    echo "build of fuzz_$t failed:"
    sed -n 1,30p "$work/logs/build_$t.log"
done

# 2. Seeds from the recorded streams, and the ones kept in fuzz/seeds/.
if ! "${CXX:-clang++}" -std=c++17 -O1 fuzz/make_seeds.cpp -o "$work/make_seeds" >"$work/logs/build_make_seeds.log" 2>&1; then
    echo "building fuzz/make_seeds.cpp failed:"; cat "$work/logs/build_make_seeds.log"
    exit 1
fi
rm -rf "$work/seeds"
mkdir -p "$work"/seeds/{http,sse,json,pipeline,split_differential,messages,ollama,gemini,anthropic}
"$work/make_seeds" "$work/seeds" tests/data/streams/*.sse || exit 1
cp fuzz/seeds/messages/* "$work/seeds/messages/"
mkdir -p "$work/seeds/dns" && cp fuzz/seeds/dns/* "$work/seeds/dns/"  # answers to the target's queries
cp tests/data/streams/ollama-*.ndjson "$work/seeds/ollama/"
mkdir -p "$work/seeds/responses"  # each Responses stream's messages, one per line, as fuzz_responses reads them
for f in tests/data/streams/responses-*.sse; do sed -n 's/^data: //p' "$f" >"$work/seeds/responses/$(basename "$f" .sse)"; done
cp "$work"/seeds/json/* "$work/seeds/gemini/"  # the recorded events, Gemini's among them

# 3. Regressions, then fuzzing; one target per job.
regressions=()
for f in fuzz/regressions/*; do [[ -f "$f" && "$f" != *.md ]] && regressions+=("$f"); done

run_target() {
    local t="$1"  # its own local first: the names below expand it
    local bin="$work/fuzz_$t" log="$work/logs/fuzz_$t.log" rlog="$work/logs/regressions_$t.log"
    local art="$work/artifacts/$t/" regression_status=0 fuzz_status=0
    mkdir -p "$work/corpus/$t" "$art"
    rm -f "$art"crash-* "$art"leak-* "$art"timeout-* "$art"oom-* "$art"slow-unit-*
    : >"$rlog"
    if [[ ${#regressions[@]} -gt 0 ]]; then
        "$bin" -timeout=10 -rss_limit_mb=2048 -artifact_prefix="$art" "${regressions[@]}" >"$rlog" 2>&1 || regression_status=1
    fi
    "$bin" "$work/corpus/$t" "$work/seeds/$t" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
        -dict="$dict" -artifact_prefix="$art" -print_final_stats=1 >"$log" 2>&1 || fuzz_status=1
    echo "$regression_status $fuzz_status" >"$work/logs/status_$t"
}

echo "== fuzzing ${#targets[@]} targets for ${seconds}s each (${jobs} at a time); logs in ${work#$root/}/logs"
running=0
for t in "${targets[@]}"; do
    [[ " ${build_failed[*]-} " == *" $t "* ]] && continue
    run_target "$t" &
    running=$((running + 1))
    if [[ $running -ge $jobs ]]; then wait -n; running=$((running - 1)); fi
done
wait

# 4. Report.
passed=0
failed=0
for t in "${targets[@]}"; do
    if [[ " ${build_failed[*]-} " == *" $t "* ]]; then
        printf '%-20s FAILED (build)\n' "$t"
        failed=$((failed + 1))
        continue
    fi
    log="$work/logs/fuzz_$t.log"
    # The last stat line looks like: #123456  DONE  cov: 812 ft: 3034 corp: 410/52Kb ... exec/s: 9001 rss: 512Mb
    stat="$(grep -a -E '^#[0-9]+[[:space:]]' "$log" | grep -a 'cov:' | tail -n 1)"
    execs="$(sed -n 's/^#\([0-9]*\).*/\1/p' <<<"$stat")"
    cov="$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$stat")"
    ft="$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$stat")"
    corp="$(sed -n 's/.* corp: \([0-9]*\/[0-9A-Za-z]*\).*/\1/p' <<<"$stat")"
    rate="$(sed -n 's/.* exec\/s: \([0-9]*\).*/\1/p' <<<"$stat")"
    done_line="$(grep -a -E '^Done [0-9]+ runs' "$log" | tail -n 1)"
    [[ -n "$done_line" ]] && execs="$(awk '{print $2}' <<<"$done_line")"
    status="$(cat "$work/logs/status_$t" 2>/dev/null || echo "1 1")"
    summary="$(printf '%-20s execs: %-10s exec/s: %-7s cov: %-6s ft: %-7s corpus: %s' \
        "$t" "${execs:-?}" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}")"
    artifacts=("$work/artifacts/$t/"*)
    if [[ "$status" == "0 0" && ! -e "${artifacts[0]}" ]]; then
        echo "$summary  ok"
        passed=$((passed + 1))
    else
        echo "$summary  FAILED"
        [[ "${status%% *}" != 0 ]] && echo "    a regression input failed: see ${work#$root/}/logs/regressions_$t.log"
        grep -a -h -m 3 -E 'FUZZ INVARIANT BROKEN|split dependence|ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error' \
            "$work/logs/regressions_$t.log" "$log" 2>/dev/null | sed 's/^/    /'
        for a in "${artifacts[@]}"; do
            [[ -e "$a" ]] || continue
            echo "    artifact: ${a#$root/}"
            # Its bytes too, when short: a CI machine's artifacts are gone with it (base64 -d to replay).
            [[ $(stat -c %s "$a") -le 4096 ]] && echo "    its bytes, base64: $(base64 -w 0 "$a")"
        done
        failed=$((failed + 1))
    fi
done
echo "$passed passed, $failed failed"
[[ $failed -eq 0 ]]
