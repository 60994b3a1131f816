#!/usr/bin/env bash
# Installs what the test suite needs beyond the Rust toolchain: FreeTDS `tsql` (Debian
# freetds-bin), nginx (Debian nginx) and, in a virtual environment at target/pyenv, the Python tools pinned in
# tests/clients/requirements.txt (python-tds, pymssql, sqlglot, schemathesis, aiosmtpd). The end-to-end test
# tests/e2e/clients.rs runs them against the Mamut stand-in with target/pyenv/bin/python.
#
# Chromium (Debian chromium, chromium-driver) and, in tests/browser/node_modules, the npm
# packages pinned in tests/browser/package-lock.json (playwright-core) for the console's browser
# tests (tests/e2e/console_browser.rs).
#
# Idempotent and quiet when everything is in place; any failed install stops it with a message
# and a non-zero exit. PYTHON names the interpreter the environment is made from (python3).
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "test-deps: $*" >&2
    exit 1
}

# --- FreeTDS tsql -------------------------------------------------------------------------
# shellcheck source=lib/apt.sh
source scripts/lib/apt.sh

if ! command -v tsql >/dev/null 2>&1; then
    apt_install test-deps freetds-bin
    command -v tsql >/dev/null 2>&1 || fail "freetds-bin installed but tsql is not on PATH"
fi

# --- nginx (tests/e2e/nginx.rs runs deploy/scale-out/nginx.conf) --------------------------
if [ ! -x /usr/sbin/nginx ] && [ ! -x /usr/local/sbin/nginx ]; then
    apt_install test-deps nginx
    [ -x /usr/sbin/nginx ] || fail "nginx installed but /usr/sbin/nginx is missing"
fi

# --- Python clients -----------------------------------------------------------------------
# A function, so that an environment already in place ends this part only.
python_env() {
    venv=target/pyenv
    requirements=tests/clients/requirements.txt
    stamp=$venv/requirements.installed
    python=${PYTHON:-python3}

    if [ -x "$venv/bin/python" ] && cmp -s "$requirements" "$stamp" &&
        "$venv/bin/python" -c 'import pytds, pymssql, sqlglot, schemathesis, aiosmtpd' >/dev/null 2>&1; then
        return 0
    fi

    command -v "$python" >/dev/null 2>&1 || fail "$python not found: install Python 3 (Debian python3, python3-venv)"
    if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -m pip --version >/dev/null 2>&1; then
        rm -rf "$venv"
        echo "test-deps: creating $venv from $(command -v "$python")"
        if ! "$python" -m venv "$venv" >/tmp/test-deps-venv.log 2>&1; then
            # Debian's python3 makes environments only with python3-venv installed.
            apt_install test-deps python3-venv
            rm -rf "$venv"
            "$python" -m venv "$venv" >/tmp/test-deps-venv.log 2>&1 ||
                fail "$python -m venv $venv failed; see /tmp/test-deps-venv.log"
        fi
    fi
    echo "test-deps: pip install -r $requirements into $venv"
    "$venv/bin/python" -m pip install --disable-pip-version-check -q -r "$requirements" ||
        fail "pip install -r $requirements failed (see above)"
    "$venv/bin/python" -c 'import pytds, pymssql, sqlglot, schemathesis, aiosmtpd' ||
        fail "the Python clients do not import after installing them into $venv"
    cp "$requirements" "$stamp"
}
python_env

# --- Chromium and playwright-core (tests/e2e/console_browser.rs) --------------------------
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    apt_install test-deps chromium chromium-driver
    [ -x /usr/bin/chromium ] || fail "chromium installed but /usr/bin/chromium is missing"
fi
command -v npm >/dev/null 2>&1 || apt_install test-deps nodejs npm
browser=tests/browser
lock=$browser/package-lock.json
browser_stamp=$browser/node_modules/.package-lock.installed
if ! cmp -s "$lock" "$browser_stamp" || [ ! -d "$browser/node_modules/playwright-core" ]; then
    echo "test-deps: npm ci in $browser"
    npm ci --prefix "$browser" --no-audit --no-fund --loglevel=error >/tmp/test-deps-npm.log 2>&1 ||
        fail "npm ci --prefix $browser failed; see /tmp/test-deps-npm.log"
    cp "$lock" "$browser_stamp"
fi
