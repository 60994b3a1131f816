#!/usr/bin/env bash
# The Windows release of the agent: runs scripts/windows-check.sh (clippy for Windows, the
# release build of agent.exe, its unit tests under wine), then packs
#   target/dist/mamut-agent-<version>-windows-x86_64.zip
# with agent.exe, agent.example.toml, install.ps1, uninstall.ps1, mapping.toml (the reference
# mapping), gbaox10.toml (the order import format the agent writes), README.txt and LICENSE in one folder, text files with Windows line endings, and a
# .sha256 beside it. Usage: scripts/windows-release.sh
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/windows-check.sh

exe=target/win-gnu/x86_64-pc-windows-gnu/release/agent.exe
[ -f "$exe" ] || { echo "windows-release: $exe was not built" >&2; exit 1; }
version=$(cargo metadata --no-deps --format-version 1 --locked |
    python3 -c 'import json,sys; print(next(p["version"] for p in json.load(sys.stdin)["packages"] if p["name"] == "agent"))')
name=mamut-agent-$version-windows-x86_64
mkdir -p target/dist
zip=target/dist/$name.zip

python3 - "$zip" "$name" "$exe" <<'PY'
import sys, zipfile, hashlib, os
zip_path, folder, exe = sys.argv[1:4]
# (source, name in the zip, text?)
files = [
    (exe, "agent.exe", False),
    ("agent/agent.example.toml", "agent.example.toml", True),
    ("deploy/windows/install.ps1", "install.ps1", True),
    ("deploy/windows/uninstall.ps1", "uninstall.ps1", True),
    ("deploy/mamut/mapping.toml", "mapping.toml", True),
    ("deploy/mamut/import/gbaox10.toml", "gbaox10.toml", True),
    ("deploy/windows/README.txt", "README.txt", True),
    ("LICENSE", "LICENSE", True),
]
tmp = zip_path + ".tmp"
with zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
    for source, name, text in files:
        with open(source, "rb") as f:
            data = f.read()
        if text:
            # Windows line endings, so that Notepad on any Windows Server shows them right.
            data = data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        info = zipfile.ZipInfo(f"{folder}/{name}", date_time=(2026, 1, 1, 0, 0, 0))
        info.compress_type = zipfile.ZIP_DEFLATED
        info.external_attr = 0o644 << 16
        z.writestr(info, data)
os.replace(tmp, zip_path)
digest = hashlib.sha256(open(zip_path, "rb").read()).hexdigest()
with open(zip_path + ".sha256", "w") as f:
    f.write(f"{digest}  {os.path.basename(zip_path)}\n")
PY

mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
echo "windows-release: $zip: $(mib "$(stat -c %s "$zip")"), agent.exe $(mib "$(stat -c %s "$exe")")"
cat "$zip.sha256"
