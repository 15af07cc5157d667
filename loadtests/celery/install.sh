#!/usr/bin/env bash
# Installs what the Celery reference benchmark needs, only what is missing:
#   - Debian's redis-server package (apt-get), when no redis-server is on PATH. Its Debian
#     service is not used: bench runs its own private instance (run.sh), so the packaged
#     service is kept from starting during the install and disabled afterwards.
#   - a venv at ${BALANCE_CELERY_VENV:-$HOME/.cache/balance/celery-venv} with the exact
#     versions of requirements.txt (pip), when they are not all installed already.
# Idempotent: a second run changes nothing and prints what it found. Runs as root.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
venv="${BALANCE_CELERY_VENV:-$HOME/.cache/balance/celery-venv}"
export DEBIAN_FRONTEND=noninteractive

apt_install() {
    # apt-cache answers from the local lists; refresh them once if they lack a candidate.
    local pkg
    for pkg in "$@"; do
        if ! apt-cache policy "$pkg" 2>/dev/null | grep -q 'Candidate: [0-9]'; then
            apt-get update -qq
            break
        fi
    done
    # Keep the package's init script / unit from being started by the install: policy-rc.d
    # exit 101 means "action forbidden" to invoke-rc.d and deb-systemd-invoke. An existing
    # policy-rc.d is left as it is.
    local policy=/usr/sbin/policy-rc.d made_policy=""
    if [ ! -e "$policy" ]; then
        printf '#!/bin/sh\nexit 101\n' >"$policy"
        chmod 755 "$policy"
        made_policy=1
    fi
    local rc=0
    apt-get install -y -qq --no-install-recommends "$@" >/dev/null || rc=$?
    [ -n "$made_policy" ] && rm -f "$policy"
    return "$rc"
}

if command -v redis-server >/dev/null 2>&1; then
    echo "install: redis-server present: $(redis-server --version | cut -d' ' -f1-3)"
else
    echo "install: apt-get install redis-server"
    apt_install redis-server
    # Not at boot either; on a machine without systemd as PID 1 this only edits symlinks.
    if command -v systemctl >/dev/null 2>&1; then
        systemctl disable redis-server.service >/dev/null 2>&1 || true
        [ -d /run/systemd/system ] && systemctl stop redis-server.service >/dev/null 2>&1 || true
    fi
    command -v update-rc.d >/dev/null 2>&1 && update-rc.d redis-server disable >/dev/null 2>&1 || true
    echo "install: $(redis-server --version | cut -d' ' -f1-3) (its Debian service is not started)"
fi

# The venv needs ensurepip (Debian's python3 has it from python3-venv).
if ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then
    echo "install: apt-get install python3-venv"
    apt_install python3-venv
fi

# A venv whose interpreter no longer runs (its python was removed or moved) is made anew.
if [ -x "$venv/bin/python" ] && ! "$venv/bin/python" -c '' >/dev/null 2>&1; then
    echo "install: $venv is broken; recreating it"
    rm -rf "$venv"
fi
if [ ! -x "$venv/bin/python" ]; then
    echo "install: python3 -m venv $venv"
    mkdir -p "$(dirname "$venv")"
    python3 -m venv "$venv"
fi

# Every "name==version" line of requirements.txt installed at exactly that version?
pinned_ok() {
    "$venv/bin/python" - "$here/requirements.txt" <<'PY'
import re, sys
from importlib.metadata import version, PackageNotFoundError
ok = True
for line in open(sys.argv[1]):
    line = line.split('#', 1)[0].strip()
    if not line:
        continue
    m = re.fullmatch(r'([A-Za-z0-9_.-]+)(\[[^\]]*\])?==(\S+)', line)
    if not m:
        sys.exit(f'requirements.txt: not an exact pin: {line}')
    name, want = m.group(1), m.group(3)
    try:
        have = version(name)
    except PackageNotFoundError:
        have = None
    if have != want:
        ok = False
sys.exit(0 if ok else 1)
PY
}
if pinned_ok; then
    echo "install: $venv has the pinned packages: $("$venv/bin/celery" --version 2>/dev/null | head -1)"
else
    echo "install: pip install -r requirements.txt into $venv"
    "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "$here/requirements.txt"
    pinned_ok || { echo "install: the venv still lacks a pinned version" >&2; exit 1; }
    echo "install: celery $("$venv/bin/celery" --version | head -1)"
fi
