#!/usr/bin/env bash
# The agent for Windows, checked on Linux: clippy (-D warnings) on the agent and shared, a release
# build of agent.exe, and the unit tests of both run under wine, all for x86_64-pc-windows-gnu;
# and the import stand-in mamut-import-sim.exe, which the wine smoke test has agent.exe run.
#
# rustup's toolchain has no standard library for that target and nothing may be downloaded here,
# so the standard library is built from source (-Zbuild-std) with Debian's rustc-web, whose
# rust-web-src package carries its sources; RUSTC_BOOTSTRAP=1 allows the -Z flag on that stable
# compiler. Linker: mingw-w64. Tests run under Debian's wine 8.0, which lacks
# bcryptprimitives.dll (ProcessPrng, imported by Rust's std): a small shim forwarding to
# SystemFunction036 (RtlGenRandom) is built into the wine prefix so that anything starts at all.
# The shim exists for wine only; a real Windows has the DLL.
#
# Idempotent: packages, the wine prefix and the shim are made only when missing; the build goes to
# its own target dir (target/win-gnu) so it never invalidates the Linux build. Any failure stops
# it with a non-zero exit; nothing is skipped.
set -euo pipefail
cd "$(dirname "$0")/.."

T=x86_64-pc-windows-gnu
BUILD_STD=-Zbuild-std=std,panic_abort
# Debian packages: the Rust toolchain able to build std for the target, its clippy, the mingw-w64
# C compiler/linker (also builds the C in aws-lc-sys and rusqlite's bundled SQLite), and wine.
PACKAGES=(rustc-web cargo-web rust-web-src rust-web-clippy gcc-mingw-w64-x86-64 wine wine64)

fail() {
    echo "windows-check: $*" >&2
    exit 1
}
step() {
    echo "windows-check: $* ($(date +%T), ${SECONDS}s)"
}

# --- Debian packages ------------------------------------------------------------------------
# shellcheck source=lib/apt.sh
source scripts/lib/apt.sh

missing=()
for pkg in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
    step "installing ${missing[*]}"
    apt_install windows-check "${missing[@]}"
fi

# --- toolchain environment --------------------------------------------------------------------
# Debian's rustc/cargo (their sysroot has the std sources build-std needs), ahead of rustup's on
# PATH; RUSTC/RUSTDOC pin them for cargo's rustc and for doctests.
deb_bin() {
    dpkg -L "$1" 2>/dev/null | grep -m1 "/bin/$2\$" || true
}
DEB_RUSTC=$(deb_bin rustc-web rustc)
[ -n "$DEB_RUSTC" ] && [ -x "$DEB_RUSTC" ] || fail "rustc-web is installed but has no rustc binary"
DEB_BIN=$(dirname "$DEB_RUSTC")
[ -x "$DEB_BIN/cargo" ] || fail "cargo-web's cargo is not in $DEB_BIN"
[ -x "$DEB_BIN/cargo-clippy" ] || fail "rust-web-clippy's cargo-clippy is not in $DEB_BIN"
SYSROOT=$("$DEB_RUSTC" --print sysroot)
[ -f "$SYSROOT/lib/rustlib/src/rust/library/Cargo.lock" ] ||
    fail "rust-web-src's standard library sources are not under $SYSROOT/lib/rustlib/src (build-std needs them)"
command -v x86_64-w64-mingw32-gcc >/dev/null 2>&1 || fail "x86_64-w64-mingw32-gcc not on PATH"
command -v wine >/dev/null 2>&1 || fail "wine not on PATH"

export PATH=$DEB_BIN:$PATH
export RUSTC=$DEB_RUSTC RUSTDOC=$DEB_BIN/rustdoc
export RUSTC_BOOTSTRAP=1
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_LINKER=x86_64-w64-mingw32-gcc
export CARGO_TARGET_X86_64_PC_WINDOWS_GNU_RUNNER=wine
export CC_x86_64_pc_windows_gnu=x86_64-w64-mingw32-gcc AR_x86_64_pc_windows_gnu=x86_64-w64-mingw32-ar
export CARGO_TARGET_DIR=$PWD/target/win-gnu
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}
# The wine prefix lives in the target dir (cargo clean removes it; it is rebuilt here).
export WINEPREFIX=$PWD/target/win-gnu/wineprefix
export WINEDEBUG=${WINEDEBUG:--all}
export WINEDLLOVERRIDES="mscoree,mshtml="
export WINEARCH=win64
# Whatever way this script ends (success, a failed step, Ctrl-C), the wine processes of its
# prefix (the wine server, the test runner's leftovers) are ended with it.
end_wine() {
    wineserver -k >/dev/null 2>&1 || true
}
trap end_wine EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
echo "windows-check: $("$RUSTC" --version), $(cargo --version), $(wine --version), $(x86_64-w64-mingw32-gcc --version | head -n1)"

# --- wine prefix and the bcryptprimitives.dll shim ------------------------------------------
SHIM=$WINEPREFIX/drive_c/windows/system32/bcryptprimitives.dll
if [ ! -f "$SHIM" ]; then
    step "creating the wine prefix $WINEPREFIX"
    mkdir -p "$WINEPREFIX"
    wineboot -i >/tmp/windows-check-wineboot.log 2>&1 ||
        fail "wineboot -i failed; see /tmp/windows-check-wineboot.log"
    wineserver -w
    [ -d "$WINEPREFIX/drive_c/windows/system32" ] || fail "wineboot made no system32 in $WINEPREFIX"
    shim_src=$(mktemp -d)
    cat >"$shim_src/bcp.c" <<'C'
#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID buf, ULONG len); /* RtlGenRandom */
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE p, SIZE_T n) {
  while (n) { ULONG c = n > 0x40000000 ? 0x40000000 : (ULONG)n;
    if (!SystemFunction036(p, c)) return FALSE; p += c; n -= c; }
  return TRUE; }
C
    x86_64-w64-mingw32-gcc -O2 -shared -o "$SHIM.tmp" "$shim_src/bcp.c" -ladvapi32 ||
        fail "building the bcryptprimitives.dll shim failed"
    mv "$SHIM.tmp" "$SHIM"
    rm -rf "$shim_src"
fi

# --- clippy, release build, tests under wine ------------------------------------------------
CARGO_ARGS=(--target "$T" "$BUILD_STD" --locked)
# The agent and the workspace crate it depends on (shared) are linted and tested; the binary
# built is agent.exe.
PKGS=(-p agent -p shared)

step "cargo clippy ${PKGS[*]} --all-targets -- -D warnings ($T)"
cargo clippy "${PKGS[@]}" "${CARGO_ARGS[@]}" --all-targets -- -D warnings
# The import stand-in for the smoke test: its library and binary (its unit tests need the
# Linux test harness and run on Linux).
step "cargo clippy -p mamut-import-sim --lib --bins -- -D warnings ($T)"
cargo clippy -p mamut-import-sim "${CARGO_ARGS[@]}" --lib --bins -- -D warnings

step "cargo build --release ($T)"
cargo build -p agent "${CARGO_ARGS[@]}" --release
exe=$CARGO_TARGET_DIR/$T/release/agent.exe
[ -f "$exe" ] || fail "no $exe after the build"
size=$(stat -c %s "$exe")
echo "windows-check: $exe is $size bytes ($((size / 1024 / 1024)) MiB)"

step "cargo build -p mamut-import-sim ($T)"
cargo build -p mamut-import-sim "${CARGO_ARGS[@]}"
[ -f "$CARGO_TARGET_DIR/$T/debug/mamut-import-sim.exe" ] || fail "no mamut-import-sim.exe after the build"

step "cargo test ${PKGS[*]} under wine ($T)"
cargo test "${PKGS[@]}" "${CARGO_ARGS[@]}"

step "done"
