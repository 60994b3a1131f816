#!/usr/bin/env bash
# The test command: installs the test dependencies (scripts/test-deps.sh), checks and builds the
# agent for Windows (scripts/windows-check.sh: clippy, a release agent.exe and its unit tests
# under wine), then runs the whole workspace's tests, the wine smoke test of that agent.exe
# (tests/e2e/windows.rs) among them. Arguments go to `cargo test`, e.g. `scripts/test.sh
# clients` (a test-name filter) or `scripts/test.sh -- --nocapture` (print every client check's
# lines).
#
# WINDOWS_CHECK=0 leaves the Windows build out (a quicker local run): the smoke test then says
# "skipped", and fails where CI is set. FUZZ=0 leaves the fuzzing out.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-deps.sh
if [ "${WINDOWS_CHECK:-1}" != 0 ]; then
    # Its own target dir (target/win-gnu), so the Linux build below is not invalidated; it ends
    # its wine processes (wineserver -k) before the Linux tests start.
    bash scripts/windows-check.sh
    # Where windows-check.sh puts agent.exe and the wine prefix with its bcryptprimitives shim;
    # the smoke test runs in a copy of that prefix.
    export AGENT_WINDOWS_EXE=$PWD/target/win-gnu/x86_64-pc-windows-gnu/release/agent.exe
    export MAMUT_IMPORT_SIM_WINDOWS_EXE=$PWD/target/win-gnu/x86_64-pc-windows-gnu/debug/mamut-import-sim.exe
    export WINEPREFIX=$PWD/target/win-gnu/wineprefix
fi
# Coverage-guided fuzzing (scripts/fuzz.sh, docs/fuzzing.md): every target for FUZZ_SECONDS
# (60) each with the nightly toolchain; a crash fails the run. FUZZ=0 leaves it out locally.
if [ "${FUZZ:-1}" != 0 ]; then
    bash scripts/fuzz.sh
fi
exec cargo test --workspace --locked "$@"
