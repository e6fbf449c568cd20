#!/usr/bin/env bash
# Install what the control host needs: Debian packages for the test targets and the SIP test
# clients, and the Python 3.12 virtualenv .venv with the pinned tooling (requirements.txt) and
# the appliance's own package (agi/). Safe to rerun: each step is skipped when already done.
set -euo pipefail
cd "$(dirname "$0")/.."

host_packages=(
  debootstrap systemd-container slirp4netns qemu-system-x86 qemu-utils e2fsprogs  # test targets
  iproute2 nftables socat openssh-client openssl                                 # namespaces, SSH
  coturn                                                                          # lab STUN server
  pebble                                                                          # lab ACME server
  kamailio kamailio-tls-modules                                                   # lab carrier's edge
  espeak-ng sox                                                                   # test audio
)
missing=()
for p in "${host_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "Installing host packages: ${missing[*]}" >&2
  apt-get update -qq
  # The lab starts its servers (STUN, the carrier's Kamailio) in its own namespaces, by hand:
  # none of them may start on the host's interfaces as the packages install.
  blocked_starts=""
  if [ ! -e /usr/sbin/policy-rc.d ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && blocked_starts=1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  if [ -n "$blocked_starts" ]; then rm -f /usr/sbin/policy-rc.d; fi
fi

# Python 3.12 is the one interpreter that takes both ansible-core 2.21 and the pjsua2 wheels.
python=""
# pyenv's shim answers to `python3.12` even where it cannot run it: try each candidate for real.
for candidate in "$HOME"/.pyenv/versions/3.12*/bin/python3.12 /usr/local/bin/python3.12 /usr/bin/python3.12 python3.12; do
  if "$candidate" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 12))' 2>/dev/null; then
    python=$(command -v "$candidate"); break
  fi
done
[ -n "$python" ] || { echo "error: Python 3.12 not found (install it, e.g. with pyenv)" >&2; exit 1; }

stamp=.venv/.speaqr-installed
wanted=$(cat requirements.txt agi/pyproject.toml | sha256sum | cut -c1-16)
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  [ -x .venv/bin/python ] || "$python" -m venv .venv
  .venv/bin/pip install -q -r requirements.txt
  .venv/bin/pip install -q -e 'agi[test]'
  echo "$wanted" > "$stamp"
fi
sslyze_stamp=.venv-sslyze/.speaqr-installed
sslyze_wanted=$(sha256sum < requirements-sslyze.txt | cut -c1-16)
if [ "$(cat "$sslyze_stamp" 2>/dev/null)" != "$sslyze_wanted" ]; then
  [ -x .venv-sslyze/bin/python ] || "$python" -m venv .venv-sslyze
  .venv-sslyze/bin/pip install -q -r requirements-sslyze.txt
  echo "$sslyze_wanted" > "$sslyze_stamp"
fi
# promtool checks the shipped alert rules and scrape example (files/prometheus/): taken out of
# Debian's prometheus package, not installed (that would run a Prometheus server on this host).
if [ ! -x .lab/tools/promtool ]; then
  tmp=$(mktemp -d)
  (cd "$tmp" && { apt-get download -qq prometheus 2>/dev/null || { apt-get update -qq && apt-get download -qq prometheus; }; })
  dpkg-deb -x "$tmp"/prometheus_*.deb "$tmp/root"
  mkdir -p .lab/tools
  cp "$tmp/root/usr/bin/promtool" .lab/tools/promtool
  rm -rf "$tmp"
fi
echo "host ready: $(.venv/bin/ansible --version | head -1), $(.venv/bin/python --version)" >&2
