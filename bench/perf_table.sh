#!/usr/bin/env bash
# The README's performance table (issue 8, item 5), measured and written by this one script from a clean
# clone on Debian: it installs what the benchmarks need when missing (apt-get, npm `openai` into the
# build directory), builds each program once (-O2 -DNDEBUG, into its own directory), runs the
# benchmarks of bench/ (each with its own interleaved medians), names the machine, and writes one
# markdown table whose met/missed column it computes from the measured figures against issue 8's
# targets (and the mission's for plain HTTP CPU: at most curl's).
#
#   bash bench/perf_table.sh [--quick] [--no-readme | --output FILE] [--build-dir DIR]
#
#   --quick          small runs (20,000 events, 3 runs, 100 and 1,000 streams, one 2 s game loop):
#                    checks the script works, the figures are not the README's
#   --no-readme      prints the table only; --output FILE writes it to FILE too (README untouched)
#   --build-dir DIR  binaries, the Node SDK, the log and the table (default: build-perf/)
#
# Without --no-readme or --output, the table replaces the README's between <!-- perf-table:begin -->
# and <!-- perf-table:end -->. Every program's own output goes to DIR/perf_table.log. Loopback only;
# every server is stopped by its PID. Exit status: 0 the table was written (whatever the verdicts),
# 1 a benchmark failed (its rows say "not measured"), 2 bad usage or a setup failure.

# shellcheck disable=SC2016  # awk programs in single quotes
set -u

usage() { echo "usage: $0 [--quick] [--no-readme | --output FILE] [--build-dir DIR]" >&2; exit 2; }
REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd) || exit 2
QUICK=0 UPDATE_README=1 OUTPUT='' BUILD=$REPO/build-perf
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) QUICK=1 ;;
        --no-readme) UPDATE_README=0 ;;
        --output) [ $# -ge 2 ] || usage; OUTPUT=$2; UPDATE_README=0; shift ;;
        --build-dir) [ $# -ge 2 ] || usage; BUILD=$2; shift ;;
        *) usage ;;
    esac
    shift
done

if [ "$QUICK" = 1 ]; then
    EVENTS=20000 PIPELINE_RUNS=3 SIMDJSON_RUNS=3 E2E_RUNS=3 FEW=100 MANY=1000 GAME_SECONDS=2 GAME_RUNS=1 FIRST_FRAME_ROUNDS=3 COMPILE_RUNS=1
else
    EVENTS=200000 PIPELINE_RUNS=5 SIMDJSON_RUNS=7 E2E_RUNS=7 FEW=1000 MANY=10000 GAME_SECONDS=10 GAME_RUNS=3 FIRST_FRAME_ROUNDS=15 COMPILE_RUNS=3
fi
mkdir -p "$BUILD" && BUILD=$(cd "$BUILD" && pwd) || exit 2  # the steps run from it
CXXFLAGS=(-std=c++17 -O2 -DNDEBUG "-I$REPO" "-I$REPO/tests")
BIN=$BUILD/bin OUT=$BUILD/out LOG=$BUILD/perf_table.log
rm -rf "$OUT"
mkdir -p "$BIN" "$OUT" || exit 2
: >"$LOG" || exit 2
# shellcheck source-path=SCRIPTDIR
source "$(dirname "${BASH_SOURCE[0]}")/../tests/tls/nginx_common.sh"  # stop_pid
SERVER_PID=
trap 'if [ -n "$SERVER_PID" ]; then stop_pid "$SERVER_PID"; fi' EXIT
trap 'exit 2' INT TERM HUP

die() { echo "$0: $*" >&2; exit 2; }
say() { echo "$*"; echo "### $*" >>"$LOG"; }
load() { cut -d' ' -f1-3 /proc/loadavg; }

# --- what the benchmarks need ---------------------------------------------------------------------
# What each package gives (a program, or a header under /usr/include): only what is missing is installed.
NEEDS=(g++:g++ size:binutils curl:curl openssl:openssl /usr/sbin/nginx:nginx node:nodejs npm:npm valgrind:valgrind
    /usr/include/simdjson.h:libsimdjson-dev /usr/include/nlohmann/json.hpp:nlohmann-json3-dev
    /usr/include/mbedtls/ssl.h:libmbedtls-dev /usr/include/openssl/ssl.h:libssl-dev)
install_missing() {
    local missing=() need
    for need in "${NEEDS[@]}"; do
        [ -e "${need%%:*}" ] || command -v "${need%%:*}" >/dev/null 2>&1 || missing+=("${need#*:}")
    done
    if [ ${#missing[@]} -gt 0 ]; then
        local sudo=()
        [ "$(id -u)" = 0 ] || sudo=(sudo)
        say "installing ${missing[*]}"
        { "${sudo[@]}" apt-get update && "${sudo[@]}" apt-get install -y --no-install-recommends "${missing[@]}"; } \
            >>"$LOG" 2>&1 || die "apt-get install ${missing[*]} failed (see $LOG)"
    fi
    SDK_DIR=$BUILD/node
    if [ ! -f "$SDK_DIR/node_modules/openai/package.json" ]; then
        say "installing npm openai into $SDK_DIR"
        { mkdir -p "$SDK_DIR" && (cd "$SDK_DIR" && npm install --no-audit --no-fund openai) >>"$LOG" 2>&1; } ||
            die "npm install openai failed (see $LOG)"
    fi
}

# --- the machine ----------------------------------------------------------------------------------
version_of() { dpkg-query -W -f='${Version}' "$1" 2>/dev/null || echo "?"; }
describe_machine() {
    local cpu memory
    cpu=$(awk -F': *' '/^model name/ { print $2; exit }' /proc/cpuinfo)
    memory=$(awk '/^MemTotal:/ { printf "%.1f GiB", $2 / 1048576 }' /proc/meminfo)
    MACHINE="${cpu:-unknown CPU}, $(nproc) cores, $memory of memory; $(uname -sr) $(uname -m)"
    SOFTWARE="$(g++ --version | head -n 1); mbedTLS $(version_of libmbedtls-dev), OpenSSL $(version_of libssl-dev),"
    SOFTWARE+=" simdjson $(version_of libsimdjson-dev), nlohmann-json $(version_of nlohmann-json3-dev),"
    SOFTWARE+=" nginx $(version_of nginx), $(curl --version | head -n 1 | cut -d' ' -f1-2), Node $(node --version),"
    SOFTWARE+=" npm openai $(node -p "require('$SDK_DIR/node_modules/openai/package.json').version")"
    CODE=$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo "not a git checkout")
    [ -z "$(git -C "$REPO" status --porcelain --untracked-files=no 2>/dev/null)" ] || CODE+=" with uncommitted changes"
}

# --- builds ---------------------------------------------------------------------------------------
# build NAME SOURCE [OPTIONS...]: $BIN/NAME, the command in the log.
build() {
    local command=(g++ "${CXXFLAGS[@]}" "$REPO/$2" -o "$BIN/$1" "${@:3}" -pthread)
    echo "\$ ${command[*]}" >>"$LOG"
    "${command[@]}" >>"$LOG" 2>&1 || die "cannot build $2 (see $LOG)"
}
build_all() {
    say "building into $BIN (load $(load))"
    build bench_pipeline bench/bench_pipeline.cpp
    build bench_simdjson bench/bench_simdjson.cpp -lsimdjson
    build bench_many bench/bench_many.cpp
    build llm_test_server tests/llm_test_server.cpp
    build llm-chat examples/llm-chat.cpp
    build llm-chat-mbedtls examples/llm-chat.cpp -DLLM_STREAM_MBEDTLS -lmbedtls -lmbedx509 -lmbedcrypto
    build llm-chat-openssl examples/llm-chat.cpp -DLLM_CHAT_OPENSSL -lssl -lcrypto
    build llm-game-loop examples/llm-game-loop.cpp
    build bench_first_frame bench/bench_first_frame.cpp
    build decode_once bench/decode_once.cpp -g
}

# --- runs -----------------------------------------------------------------------------------------
# run STEP COMMAND...: its output to $OUT/STEP.txt and the log. A step that fails is added to FAILED and
# its output moved to STEP.txt.failed (STEP.txt left empty), so that its rows say "not measured".
FAILED=()
run() {
    local step=$1
    shift
    say "$step: $* (load $(load))"
    echo "\$ $*" >>"$LOG"
    (cd "$BUILD" && env -u LLM_API_KEY -u LLM_MODEL -u LLM_BASE_URL -u LLM_API "$@") >"$OUT/$step.txt" 2>&1
    local rc=$?
    cat "$OUT/$step.txt" >>"$LOG"
    if [ "$rc" != 0 ]; then
        say "$step failed (exit $rc)"
        FAILED+=("$step")
        mv "$OUT/$step.txt" "$OUT/$step.txt.failed"
        : >"$OUT/$step.txt"
    fi
}

# game_loop RUN: llm-game-loop against llm_test_server (at nice 19, as a remote server would not share
# the game's CPU) sending the recorded dashscope stream a chunk every 20 ms; after the first run,
# bench_first_frame against the same server (the game's first frame, and the kernel's floor for it).
game_loop() {
    nice -n 19 "$BIN/llm_test_server" --host 127.0.0.1 --stream "$REPO/tests/data/streams/dashscope-qwen-plus.sse" \
        --delay-ms 20 >"$OUT/game_server.txt" 2>&1 &
    SERVER_PID=$!
    local port=
    for _ in $(seq 1 100); do
        port=$(awk '$1 == "PORT" { print $2; exit }' "$OUT/game_server.txt")
        [ -n "$port" ] && break
        sleep 0.1
    done
    run "game_loop_$1" env LLM_BASE_URL="http://127.0.0.1:$port/v1" "$BIN/llm-game-loop" --streams 32 --fps 60 \
        --seconds "$GAME_SECONDS"
    [ "$1" != 1 ] || run first_frame "$BIN/bench_first_frame" "$port" 32 "$FIRST_FRAME_ROUNDS"
    stop_pid "$SERVER_PID"
    SERVER_PID=
}

# compile_cost NAME SOURCE: the CPU seconds (user + sys) of compiling SOURCE at -O2 into NAME.o, one a line.
compile_cost() {
    local TIMEFORMAT='%3U %3S'
    say "compiling $2 $COMPILE_RUNS times (load $(load))"
    for _ in $(seq 1 "$COMPILE_RUNS"); do
        { time g++ "${CXXFLAGS[@]}" -c "$2" -o "$BUILD/$1.o" 2>>"$LOG"; } 2>&1 | awk '{ print $1 + $2 }'
    done >"$OUT/$1.txt"
    cat "$OUT/$1.txt" >>"$LOG"
}

# count_instructions: the Decoder's instructions per event for each API (bench/decode_once.cpp under
# callgrind, 20,000 events), which a busy machine does not change: "API COUNT" lines.
count_instructions() {
    local api events=20000
    say "counting instructions per event with callgrind (load $(load))"
    for api in openai responses anthropic gemini ollama; do
        valgrind --tool=callgrind --callgrind-out-file="$OUT/callgrind.$api" --toggle-collect='bench::decode_content*' \
            "$BIN/decode_once" "$api" "$events" >>"$LOG" 2>&1 || { FAILED+=("instructions-$api"); continue; }
        awk -v api="$api" -v n="$events" '$1 == "summary:" { printf "%s %.0f\n", api, $2 / n }' "$OUT/callgrind.$api"
    done >"$OUT/instructions.txt"
    cat "$OUT/instructions.txt" >>"$LOG"
}

run_all() {
    run pipeline "$BIN/bench_pipeline" "$EVENTS" "$PIPELINE_RUNS"
    run simdjson "$BIN/bench_simdjson" "$EVENTS" "$SIMDJSON_RUNS"
    count_instructions
    run e2e env EVENTS="$EVENTS" LLM_CHAT="$BIN/llm-chat" LLM_TEST_SERVER="$BIN/llm_test_server" \
        bash "$REPO/bench/bench_e2e.sh" "$E2E_RUNS"
    run tls env TLS=1 EVENTS="$EVENTS" LLM_CHAT_MBEDTLS="$BIN/llm-chat-mbedtls" LLM_CHAT_OPENSSL="$BIN/llm-chat-openssl" \
        LLM_TEST_SERVER="$BIN/llm_test_server" bash "$REPO/bench/bench_e2e.sh" "$E2E_RUNS"
    run e2e_callgrind env CALLGRIND=1 EVENTS="$EVENTS" LLM_CHAT="$BIN/llm-chat" LLM_TEST_SERVER="$BIN/llm_test_server" \
        bash "$REPO/bench/bench_e2e.sh"
    run tls_callgrind env CALLGRIND=1 TLS=1 EVENTS="$EVENTS" LLM_CHAT_MBEDTLS="$BIN/llm-chat-mbedtls" \
        LLM_CHAT_OPENSSL="$BIN/llm-chat-openssl" LLM_TEST_SERVER="$BIN/llm_test_server" bash "$REPO/bench/bench_e2e.sh"
    run many env BENCH_MANY="$BIN/bench_many" OPENAI_SDK_DIR="$SDK_DIR" bash "$REPO/bench/bench_many.sh" "$FEW" "$MANY"
    for game in $(seq 1 "$GAME_RUNS"); do game_loop "$game"; done
    printf '#include "llm_stream.hpp"\nint main() { return 0; }\n' >"$BUILD/includes_header.cpp"
    compile_cost compile_header "$BUILD/includes_header.cpp"
    compile_cost compile_implementation "$REPO/tests/support/llm_stream_implementation.cpp"
    size -A "$BUILD/compile_implementation.o" >"$OUT/size.txt"
}

# --- figures out of the programs' output ------------------------------------------------------------
# Each prints nothing when its program's line is missing (the row then says "not measured").
pipeline_field() {  # API FIELD-FROM-END (1: ns/event, 3: MB/s) of "llm_stream Decoder, API ..."
    awk -v api="$1" -v back="$2" '$1 == "llm_stream" && $3 == api { print $(NF - back) }' "$OUT/pipeline.txt"
}
simdjson_ns() {  # NAME BACK: field NF - BACK (ns/event) of bench_simdjson's line starting with NAME
    awk -v name="$1" -v back="$2" 'index($0, name) == 1 { print $(NF - back) }' "$OUT/simdjson.txt"
}
e2e_field() {  # STEP CLIENT COLUMN (2 wall, 5 CPU, 7 first byte) of the medians table
    awk -v client="$2" -v column="$3" '$1 == client && NF == 7 { print $column }' "$OUT/$1.txt"
}
first_content_ms() {  # STEP CLIENT: the median of CLIENT's first content chunk, in ms
    awk -v client="$2" '$1 == client && $2 == "first" && $3 == "content" { print $(NF - 1) }' "$OUT/$1.txt"
}
instructions_vs_curl() {  # STEP CLIENT: "CLIENT N.NN×" from bench_e2e.sh's CALLGRIND=1 output
    awk -v client="$2" '$1 == client && $3 == "instructions" { sub(/x$/, "×", $4); print client, $4 }' "$OUT/$1.txt"
}
many_field() {  # WHO COUNT SED-CAPTURE: a figure of bench_many's line for COUNT streams, none failed
    awk -v who="$1" -v n="$2" '$1 == who && ($2 == n || $3 == n) && / 0 failed;/' "$OUT/many.txt" | sed -n "s/.*$3.*/\\1/p"
}
requests_field() {  # FIELD of the "llm_stream requests:" line
    awk -v field="$1" '$2 == "requests:" { print $field }' "$OUT/many.txt"
}
first_frame_ms() {  # PREFIX-REGEX: the first "N ms" after PREFIX-REGEX on bench_first_frame's last line
    awk '/^first frame:/' "$OUT/first_frame.txt" | sed -n "s/^$1 \([0-9.]*\) ms.*/\1/p"
}
game_figures() {  # SED-CAPTURE: that figure of each game-loop run, one a line
    cat "$OUT"/game_loop_*.txt 2>/dev/null | sed -n "s/$1/\\1/p"
}
median_of() { sort -g "$1" | awk '{ v[NR] = $1 } END { if (NR) print ((NR % 2) ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (a != "" && b > 0) printf "%.2f", a / b }'; }

# verdict VALUE OP LIMIT (OP: <=, < or >=): met or missed, from the measured value.
verdict() {
    awk -v v="$1" -v op="$2" -v limit="$3" 'BEGIN {
        if (v !~ /^[0-9.]+$/) { print "not measured"; exit }
        ok = op == "<=" ? v + 0 <= limit + 0 : op == "<" ? v + 0 < limit + 0 : v + 0 >= limit + 0
        print ok ? "met" : "**missed**" }'
}
# row AREA WHAT TARGET MEASURED VERDICT HOW: one line of the table ("not measured" when MEASURED is empty).
row() {
    local measured=$4
    [[ "$measured" =~ [0-9] ]] || measured="not measured"
    printf '| %s | %s | %s | %s | %s | %s |\n' "$1" "$2" "$3" "$measured" "$5" "$6"
}

pipeline_rows() {
    local ns mbs slowest list ours ondemand r
    ns=$(pipeline_field openai 1) mbs=$(pipeline_field openai 3)
    row pipeline "OpenAI stream, ns per event" "≤ 120 ns" "${ns:+$ns ns}" "$(verdict "$ns" '<=' 120)" "[1]"
    row pipeline "OpenAI stream, whole pipeline in memory" "≥ 2,300 MB/s" "${mbs:+$mbs MB/s}" "$(verdict "$mbs" '>=' 2300)" "[1]"
    list=$(awk '$1 == "llm_stream" && $2 == "Decoder," { printf "%s%s %s", n++ ? ", " : "", $3, $(NF - 3) }' "$OUT/pipeline.txt")
    slowest=$(awk '$1 == "llm_stream" && $2 == "Decoder," { if (!n++ || $(NF - 3) + 0 < min) min = $(NF - 3) }
        END { if (n == 5) print min }' "$OUT/pipeline.txt")
    row pipeline "every API, MB/s" "≥ 1,000 MB/s each" "$list" "$(verdict "$slowest" '>=' 1000)" "[1]"
    ours=$(simdjson_ns "llm_stream Decoder" 1) ondemand=$(simdjson_ns "simdjson On-Demand" 0)
    r=$(ratio "$ours" "$ondemand")
    row pipeline "time per event vs simdjson On-Demand (same job)" "< 1×" "${r:+${r}× ($ours vs $ondemand ns)}" \
        "$(verdict "$r" '<' 1)" "[2]"
    list=$(awk '{ printf "%s%s %s", (NR > 1 ? ", " : ""), $1, $2 }' "$OUT/instructions.txt")
    row pipeline "Decoder instructions per event (callgrind: the same on a busy machine)" "—" "$list" "—" "[8]"
}

# e2e_rows STEP AREA CLIENT CPU-TARGET HOW: the CPU of CLIENT against curl's.
e2e_rows() {
    local cpu curl_cpu r
    cpu=$(e2e_field "$1" "$3" 5) curl_cpu=$(e2e_field "$1" curl 5)
    r=$(ratio "$cpu" "$curl_cpu")
    row "$2" "$3 CPU vs curl -sN" "≤ $4×" "${r:+${r}× ($cpu vs $curl_cpu s)}" "$(verdict "$r" '<=' "$4")" "[$5]"
}
first_byte_row() {  # STEP AREA CLIENT HOW
    local ms curl_ms r
    ms=$(e2e_field "$1" "$3" 7) curl_ms=$(e2e_field "$1" curl 7)
    r=$(ratio "$ms" "$curl_ms")
    row "$2" "$3 first byte vs curl's" "≤ 1×" "${r:+${r}× ($ms vs $curl_ms ms)}" "$(verdict "$r" '<=' 1)" "[$4]"
}
end_to_end_rows() {
    e2e_rows e2e "end to end" llm-chat 1 3
    local wall curl_wall r instructions
    wall=$(e2e_field e2e llm-chat 2) curl_wall=$(e2e_field e2e curl 2)
    r=$(ratio "$wall" "$curl_wall")
    row "end to end" "llm-chat wall time vs curl -sN" "≤ 1.5×" "${r:+${r}× ($wall vs $curl_wall s)}" "$(verdict "$r" '<=' 1.5)" "[3]"
    instructions=$({ instructions_vs_curl e2e_callgrind llm-chat; instructions_vs_curl tls_callgrind llm-chat-mbedtls
        instructions_vs_curl tls_callgrind llm-chat-openssl; } | paste -sd, | sed 's/,/, /g')
    row "end to end" "instructions vs curl's (callgrind, user space only: the same on a busy machine, but not CPU time across TLS libraries)" \
        "—" "$instructions" "—" "[3], [4]"
    e2e_rows tls "TLS" llm-chat-mbedtls 2 4
    first_byte_row tls "TLS" llm-chat-mbedtls 4
    e2e_rows tls "TLS" llm-chat-openssl 1.2 4
    first_byte_row tls "TLS" llm-chat-openssl 4
}

# game_row WHAT SED-CAPTURE: the highest of that figure over the game-loop runs, against 1 ms.
game_row() {
    local highest each
    highest=$(game_figures "$2" | sort -g | tail -n 1)
    each=$(game_figures "$2" | paste -sd, | sed 's/,/, /g')
    row latency "$1" "< 1 ms" "${highest:+$highest ms (each run: $each)}" "$(verdict "$highest" '<' 1)" "[6]"
}
latency_rows() {
    first_byte_row e2e latency llm-chat 3
    local ms curl_ms r
    ms=$(first_content_ms e2e llm-chat) curl_ms=$(e2e_field e2e curl 7)
    r=$(ratio "$ms" "$curl_ms")
    row latency "llm-chat first content chunk vs curl's first byte (curl parses nothing, so has no counterpart)" "—" \
        "${r:+${r}× ($ms vs $curl_ms ms)}" "—" "[3]"
    game_row "llm-game-loop, 32 streams at 60 fps: 99th percentile of library time per frame (highest run)" \
        '.*99th percentile \([0-9.]*\) ms.*'
    game_row "llm-game-loop: worst frame (highest run)" '^worst frame: \([0-9.]*\) ms.*'
    local frame floor
    frame=$(first_frame_ms 'first frame: llm_stream') floor=$(first_frame_ms 'first frame: .*, the plain connects alone')
    r=$(ratio "$frame" "$floor")
    row latency "the first frame of 32 new streams (the game loop's worst) against the same 32 connects made with plain socket calls, the kernel's floor on loopback" \
        "—" "${r:+${r}× ($frame vs $floor ms)}" "—" "[9]"
}

memory_rows() {
    local heap per_event events pooled
    heap=$(many_field llm_stream "$FEW" 'peak live heap \([0-9]*\) B\/stream')
    row memory "peak live heap per stream, $FEW streams on one thread" "≤ 16,384 B" "${heap:+$heap B}" \
        "$(verdict "$heap" '<=' 16384)" "[5]"
    per_event=$(requests_field 18) events=$(requests_field 22)
    row memory "heap allocations per event (pooled requests, after the first event)" "0" \
        "${per_event:+$per_event over $events events}" "$(verdict "$per_event" '<=' 0)" "[5]"
    pooled=$(requests_field 13)
    row memory "heap allocations per request on a pooled connection" "≤ 5" \
        "${pooled:+$pooled (new connection: $(requests_field 6))}" "$(verdict "$pooled" '<=' 5)" "[5]"
}

concurrency_rows() {
    local rss node_rss cpu node_cpu
    rss=$(many_field llm_stream "$MANY" 'peak RSS \([0-9.]*\) MiB') node_rss=$(many_field openai-node "$MANY" 'peak RSS \([0-9.]*\) MiB')
    row concurrency "$MANY streams from one thread, peak RSS (OpenAI Node SDK alongside)" "≤ 200 MiB" \
        "${rss:+$rss MiB (Node SDK: ${node_rss:-?} MiB)}" "$(verdict "$rss" '<=' 200)" "[5]"
    cpu=$(many_field llm_stream "$MANY" 'CPU \([0-9.]*\) s') node_cpu=$(many_field openai-node "$MANY" 'CPU \([0-9.]*\) s')
    row concurrency "$MANY streams, CPU (OpenAI Node SDK alongside)" "—" "${cpu:+$cpu s (Node SDK: ${node_cpu:-?} s)}" "—" "[5]"
}

build_rows() {
    local header implementation text
    header=$(median_of "$OUT/compile_header.txt") implementation=$(median_of "$OUT/compile_implementation.txt")
    row "build cost" "compiling a file that includes the header, -O2 (CPU)" "—" "${header:+$header s}" "—" "[7]"
    row "build cost" "compiling the implementation, -O2 (CPU)" "—" "${implementation:+$implementation s}" "—" "[7]"
    text=$(awk '/^\.text/ { sum += $2 } END { if (NR) print sum }' "$OUT/size.txt")
    row "build cost" "\`.text\` of the implementation, -O2, no TLS (its object's \`.text*\` sections)" "≤ 102,400 B" \
        "${text:+$text B}" "$(verdict "$text" '<=' 102400)" "[7]"
}

footnotes() {
    local flags='g++ -std=c++17 -O2 -DNDEBUG -I. -Itests'
    echo "1. \`$flags bench/bench_pipeline.cpp -pthread\`, then \`bench_pipeline $EVENTS $PIPELINE_RUNS\` (medians of interleaved runs)"
    echo "2. \`$flags bench/bench_simdjson.cpp -lsimdjson -pthread\`, then \`bench_simdjson $EVENTS $SIMDJSON_RUNS\`"
    echo "3. \`EVENTS=$EVENTS bash bench/bench_e2e.sh $E2E_RUNS\` (llm-chat and llm_test_server built as above; client CPU, medians of alternating runs; the servers on one core, the clients on another; first byte: curl's \`time_starttransfer\`, llm-chat's \`Stats::first_byte_ms\`); instructions: \`CALLGRIND=1\`, one run each"
    echo "4. \`TLS=1 EVENTS=$EVENTS bash bench/bench_e2e.sh $E2E_RUNS\` (through nginx; llm-chat with \`-DLLM_STREAM_MBEDTLS\`, and with \`-DLLM_CHAT_OPENSSL\`)"
    echo "5. \`bash bench/bench_many.sh $FEW $MANY\` (\`bench_many requests\`, then \`bench_many\` and the Node SDK per count)"
    echo "6. \`llm-game-loop --streams 32 --fps 60 --seconds $GAME_SECONDS\`, $GAME_RUNS run(s), against \`nice -n 19 llm_test_server --stream dashscope-qwen-plus.sse --delay-ms 20\`"
    echo "7. \`$flags -c\` of a file that includes \`llm_stream.hpp\` and of \`tests/support/llm_stream_implementation.cpp\` (median CPU of $COMPILE_RUNS); \`size -A\` of the latter's object"
    echo "8. \`$flags -g bench/decode_once.cpp -pthread\`, then \`valgrind --tool=callgrind --toggle-collect='bench::decode_content*' decode_once API 20000\`, instructions / 20,000"
    echo "9. \`$flags bench/bench_first_frame.cpp -pthread\`, then \`bench_first_frame PORT 32 $FIRST_FRAME_ROUNDS\` against the server of [6] after its first run (medians of the rounds, wall time)"
}

table() {
    local mode="a full run" busy=""
    [ "$QUICK" = 0 ] || mode="--quick: small counts, not comparable with a full run"
    awk -v a="${LOAD_START%% *}" -v b="${LOAD_END%% *}" 'BEGIN { exit !(a >= 1 || b >= 2) }' &&
        busy=" The machine was busy (load average 1 or more at the start, or 2 or more at the end, where this run's own programs count for about 1): the timings are slower than on a quiet machine."
    echo "Written by \`bash bench/perf_table.sh\` ($mode), $DATE, code $CODE."
    echo "Machine: $MACHINE. Load average at the start $LOAD_START, at the end $LOAD_END.$busy"
    echo "Software: $SOFTWARE."
    [ ${#FAILED[@]} = 0 ] || echo "Failed, so not measured: ${FAILED[*]} (see the log)."
    echo
    echo "| area | what | target | measured | met/missed | how |"
    echo "|---|---|---|---|---|---|"
    pipeline_rows
    end_to_end_rows
    latency_rows
    memory_rows
    concurrency_rows
    build_rows
    echo
    footnotes
}

# replace_in_readme TABLE-FILE: the README's lines between the markers become the table.
replace_in_readme() {
    local readme=$REPO/README.md
    { grep -q '^<!-- perf-table:begin -->$' "$readme" && grep -q '^<!-- perf-table:end -->$' "$readme"; } ||
        die "README.md has no <!-- perf-table:begin --> / <!-- perf-table:end --> markers"
    { awk -v table="$1" '
        /^<!-- perf-table:end -->$/ { skipping = 0 }
        !skipping { print }
        /^<!-- perf-table:begin -->$/ { print ""; while ((getline line < table) > 0) print line; print ""; skipping = 1 }
    ' "$readme" >"$readme.new" && mv "$readme.new" "$readme"; } || die "cannot rewrite README.md"
}

# --- main -----------------------------------------------------------------------------------------
LOAD_START=$(load)
DATE=$(date -u '+%Y-%m-%d %H:%M UTC')
install_missing
describe_machine
say "machine: $MACHINE; load average $LOAD_START"
build_all
run_all
LOAD_END=$(load)
table >"$BUILD/perf_table.md"
cat "$BUILD/perf_table.md"
[ -z "$OUTPUT" ] || cp "$BUILD/perf_table.md" "$OUTPUT" || die "cannot write $OUTPUT"
[ "$UPDATE_README" = 0 ] || replace_in_readme "$BUILD/perf_table.md"
echo "log: $LOG"
[ ${#FAILED[@]} = 0 ]
