#!/usr/bin/env bash
# The test command: installs the test dependencies (scripts/test-deps.sh), then runs the whole
# workspace's tests. Arguments go to `cargo test`, e.g. `scripts/test.sh clients` (a test-name
# filter) or `scripts/test.sh -- --nocapture` (print every client check's lines).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/test-deps.sh
exec cargo test --workspace --locked "$@"
