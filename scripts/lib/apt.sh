# Shared by scripts/test-deps.sh and scripts/windows-check.sh (sourced, not run).
# apt_install PREFIX PACKAGE...: installs Debian packages, quietly, logging to
# /tmp/PREFIX-apt*.log; the package lists are refreshed only when a package has no install
# candidate yet. Stops the calling script with a message on any failure.
apt_install() {
    local prefix=$1
    shift
    apt_fail() {
        echo "$prefix: $*" >&2
        exit 1
    }
    command -v apt-get >/dev/null 2>&1 || apt_fail "apt-get not found: install $* by hand (Debian package names)"
    local sudo=""
    if [ "$(id -u)" != 0 ]; then
        command -v sudo >/dev/null 2>&1 || apt_fail "not root and no sudo: install $* as root"
        sudo="sudo"
    fi
    export DEBIAN_FRONTEND=noninteractive
    local pkg policy
    for pkg in "$@"; do
        policy=$(apt-cache policy "$pkg" 2>/dev/null || true)
        if ! grep -q 'Candidate: [^(]' <<<"$policy"; then
            echo "$prefix: apt-get update (no candidate for $pkg)"
            $sudo apt-get update -q >"/tmp/$prefix-apt-update.log" 2>&1 ||
                apt_fail "apt-get update failed; see /tmp/$prefix-apt-update.log"
            break
        fi
    done
    echo "$prefix: apt-get install $*"
    $sudo apt-get install -y -q --no-install-recommends "$@" >"/tmp/$prefix-apt.log" 2>&1 ||
        apt_fail "apt-get install $* failed; see /tmp/$prefix-apt.log"
}
