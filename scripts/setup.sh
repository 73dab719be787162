#!/usr/bin/env bash
# Installs what empc needs on a fresh Debian machine (run as root):
# the XMPP servers, PostgreSQL and systemd-analyze from Debian's packages and a virtual environment in .venv
# with empc, its test tools and the tweeter example. Safe to run again:
# it skips what is there.
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
need_apt=()
command -v prosody >/dev/null || need_apt+=(prosody)
# Prosody's XEP-0356 and XEP-0355 modules (the privileged-entity tests).
[[ -e /usr/lib/prosody/modules/mod_privilege/mod_privilege.lua ]] || need_apt+=(prosody-modules)
# systemd-analyze checks the unit files that README.md and `empc new` ship.
command -v systemd-analyze >/dev/null || need_apt+=(systemd)
# Debian's own Python needs python3-venv for `python3 -m venv`.
"$python" -c 'import ensurepip' 2>/dev/null || need_apt+=(python3-venv)
if [[ "${EMPC_WITH_EJABBERD:-1}" == 1 ]] && ! command -v ejabberdctl >/dev/null; then
    need_apt+=(ejabberd)
fi
if ((${#need_apt[@]})); then
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    apt-get install -y -q "${need_apt[@]}"
fi
# PostgreSQL for the storage tests, which run clusters of their own: the
# package's system cluster must not start (invoke-rc.d asks policy-rc.d).
if [[ ! -x /usr/lib/postgresql/15/bin/initdb ]]; then
    export DEBIAN_FRONTEND=noninteractive
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        trap 'rm -f /usr/sbin/policy-rc.d' EXIT
    fi
    apt-get update -q
    apt-get install -y -q postgresql
fi

if [[ ! -x .venv/bin/python ]]; then
    "$python" -m venv .venv
fi
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -e '.[test]' -e examples/tweeter -e examples/hack
