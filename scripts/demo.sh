#!/usr/bin/env bash
# The README's main job: boot a local Debian sid target named "demo" (nspawn by default, or the
# QEMU VM), provision it with the example inventory exactly as an operator would
# (ansible-playbook -i inventory/example playbooks/site.yml), then prove it works from a real
# TLS+SRTP client: a demo user REGISTERs, and a loopback call returns the caller's tone.
# usage: scripts/demo.sh [nspawn|vm]
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH=$PWD/.venv/bin:$PATH
kind=${1:-nspawn}
case $kind in nspawn|vm) ;; *) echo "usage: $0 [nspawn|vm]" >&2; exit 2 ;; esac

vault=(--vault-password-file inventory/example/lab-vault-password)
t0=$SECONDS
env_file=$(scripts/target/"$kind"-up.sh demo)
# shellcheck disable=SC1090
. "$env_file"
booted=$SECONDS

ansible-playbook -i inventory/example "${vault[@]}" \
  -e "ansible_host=$SPEAQR_SIP_ADDRESS" -e "ansible_ssh_private_key_file=$SPEAQR_SSH_KEY" \
  playbooks/site.yml
converged=$SECONDS

# Read the demo user's identity from the inventory (templated, so the vault is applied).
inventory_value() {
  ansible speaqr-lab -i inventory/example "${vault[@]}" -e "ansible_host=$SPEAQR_SIP_ADDRESS" \
    -m ansible.builtin.debug -a "msg={{ $1 }}" -o 2>/dev/null | sed -e 's/^[^{]*//' | python3 -c 'import json,sys; print(json.load(sys.stdin)["msg"])'
}
domain=$(inventory_value speaqr_sip_domain)
user=$(inventory_value '(speaqr_users | first).username')
SIPCLIENT_PASSWORD=$(inventory_value '(speaqr_users | first).password')
export SIPCLIENT_PASSWORD
ca=$PWD/.lab/speaqr-lab/lab-ca.crt
client=(ip netns exec "$SPEAQR_TARGET_NETNS" .venv/bin/python -m tests.sipclient)
common=(--server "$domain" --resolve "$domain=$SPEAQR_SIP_ADDRESS" --domain "$domain" --user "$user" --ca "$ca")

register=$("${client[@]}" register "${common[@]}" 2>/dev/null)
echo "$register" | python3 -c 'import json,sys; r=json.load(sys.stdin); sys.exit(0 if r["ok"] else 1)' \
  || { echo "REGISTER failed: $register" >&2; exit 1; }

set +e
probe=$(.venv/bin/python scripts/loopback_probe.py -- "${client[@]}" call "${common[@]}" --to loopback \
  --header "X-Origin: $user" --header 'X-Destination: demo' 2>/dev/null)
rc=$?
set -e

cat <<MSG

speaqr-sip lab appliance is up ($kind target "demo", ${SPEAQR_VM_ACCEL:-container}):
  SIP server      sips:$domain:5061 -> $SPEAQR_SIP_ADDRESS (from network namespace $SPEAQR_TARGET_NETNS)
  demo user       $user (password: ansible-vault view --vault-password-file inventory/example/lab-vault-password inventory/example/group_vars/all/vault.yml)
  lab CA file     $ca
  SSH             ip netns exec $SPEAQR_TARGET_NETNS ssh -i $SPEAQR_SSH_KEY root@$SPEAQR_SIP_ADDRESS
  REGISTER (TLS)  ok: $(echo "$register" | python3 -c 'import json,sys; r=json.load(sys.stdin); print(r["status"], r["reason"], "in", round(r["elapsed_ms"],1), "ms")')
  loopback call   $probe
  timings         boot $((booted - t0)) s, converge $((converged - booted)) s
Stop it with: make demo-down TARGET=$kind
MSG
exit $rc
