#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo-fuzz, libFuzzer) of the code that reads outside input:
# webhooks, signatures, protocol frames, both configuration loaders and the shop's answers.
# See docs/fuzzing.md.
#
#   scripts/fuzz.sh                       # every target, FUZZ_SECONDS (60) each: CI's run
#   FUZZ_SECONDS=600 scripts/fuzz.sh      # the longer run
#   scripts/fuzz.sh webhook protocol      # some targets only
#
# Installs cargo-fuzz (pinned) when it is missing, builds every target with the nightly
# toolchain, runs each for FUZZ_SECONDS, prints each target's executions, and exits non-zero
# when a target fails, naming the input that made it fail (reproduce it with
# `cargo +nightly fuzz run --fuzz-dir fuzz -s none <target> <file>`).
#
# The corpus a run grows goes to fuzz/target/corpus/<target> (not committed); the committed
# seeds (fuzz/corpus/<target>) and regressions (fuzz/regressions/<target>) are read, never
# written.
set -euo pipefail

cd "$(dirname "$0")/.."

CARGO_FUZZ_VERSION=0.13.2
FUZZ_SECONDS=${FUZZ_SECONDS:-60}
ALL_TARGETS=(webhook signature protocol agent_config relay_config shop_answer)

# Largest input libFuzzer makes up per target, a few times the largest real one: a full
# order webhook or a deliver frame is about 2 KiB, agent.example.toml about 14 KiB.
max_len() {
    case "$1" in
        signature) echo 4096 ;;
        webhook | protocol | shop_answer) echo 16384 ;;
        agent_config) echo 32768 ;;
        relay_config) echo 8192 ;;
        *) echo 4096 ;;
    esac
}

if [ "$#" -gt 0 ]; then
    targets=("$@")
else
    targets=("${ALL_TARGETS[@]}")
fi

if ! rustup run nightly rustc --version >/dev/null 2>&1; then
    echo "fuzz: the nightly toolchain is missing (cargo fuzz builds with -Z flags): rustup toolchain install nightly" >&2
    exit 1
fi

if ! cargo fuzz --version 2>/dev/null | grep -qx "cargo-fuzz $CARGO_FUZZ_VERSION"; then
    echo "== installing cargo-fuzz $CARGO_FUZZ_VERSION"
    cargo install cargo-fuzz --version "$CARGO_FUZZ_VERSION" --locked
fi

# The fuzz crate's lock file is committed: refuse to fuzz other versions than it names.
cargo +nightly metadata --locked --format-version 1 --manifest-path fuzz/Cargo.toml >/dev/null

# `-s none`: no sanitizer. The code under test is safe Rust (unsafe_code is denied in the
# project's crates), so AddressSanitizer would only check the C parts of dependencies, at the
# cost of a build of its own and runs several times slower. What a target finds is a panic:
# `-a` keeps debug assertions and overflow checks on, as in the test builds.
FUZZ_FLAGS=(--fuzz-dir fuzz -s none -a)

echo "== building the fuzz targets"
build_start=$SECONDS
cargo +nightly fuzz build "${FUZZ_FLAGS[@]}"
echo "== built in $((SECONDS - build_start)) s"

failed=()
mkdir -p fuzz/target/logs
for target in "${targets[@]}"; do
    corpus=(fuzz/target/corpus/"$target" fuzz/corpus/"$target")
    mkdir -p "${corpus[0]}" fuzz/artifacts/"$target"
    if [ -d fuzz/regressions/"$target" ]; then
        corpus+=(fuzz/regressions/"$target")
    fi
    log=fuzz/target/logs/"$target".log
    echo "== $target: ${FUZZ_SECONDS} s, inputs up to $(max_len "$target") bytes"
    status=0
    cargo +nightly fuzz run "${FUZZ_FLAGS[@]}" "$target" "${corpus[@]}" -- \
        -max_total_time="$FUZZ_SECONDS" -max_len="$(max_len "$target")" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || status=$?
    runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
    coverage=$(grep -Eo 'cov: [0-9]+ ft: [0-9]+ corp: [0-9]+' "$log" | tail -n 1 || true)
    echo "   $target: ${runs:-?} executions in ${FUZZ_SECONDS} s (${coverage:-no stats}), exit $status"
    if [ "$status" -ne 0 ]; then
        failed+=("$target")
        echo "   $target FAILED; the end of its log ($log):"
        grep -E "panicked at|^thread|Test unit written to|ERROR:" "$log" | head -n 20 | sed 's/^/     /'
        artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -n 1)
        if [ -n "$artifact" ]; then
            echo "   the input: $artifact"
            echo "   reproduce: cargo +nightly fuzz run ${FUZZ_FLAGS[*]} $target $artifact"
        fi
    fi
done

if [ "${#failed[@]}" -gt 0 ]; then
    echo "== fuzzing failed: ${failed[*]}"
    exit 1
fi
echo "== fuzzing passed: ${targets[*]}"
