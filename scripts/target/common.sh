# Shared settings for the test-target scripts (sourced, not run).
# shellcheck shell=bash
SPEAQR_CACHE_DIR=${SPEAQR_CACHE_DIR:-/var/cache/speaqr-sip}
SPEAQR_STATE_DIR=${SPEAQR_STATE_DIR:-/run/speaqr-sip}
SPEAQR_MIRROR=${SPEAQR_MIRROR:-http://deb.debian.org/debian}

log() { printf '%s %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

netns_name() { printf 'speaqr-%s' "$1"; }
state_dir() { printf '%s/%s' "$SPEAQR_STATE_DIR" "$1"; }

# Run a command inside the target's network namespace.
in_netns() { local ns=$1; shift; ip netns exec "$ns" "$@"; }

# Wait until SSH answers inside the namespace; $1 netns, $2 address, $3 key, $4 timeout seconds.
wait_for_ssh() {
  local ns=$1 address=$2 key=$3 timeout=$4 start=$SECONDS
  until in_netns "$ns" ssh -q -i "$key" -o BatchMode=yes -o ConnectTimeout=2 \
      -o StrictHostKeyChecking=no -o UserKnownHostsFile=/dev/null "root@$address" true 2>/dev/null; do
    (( SECONDS - start < timeout )) || return 1
    sleep 1
  done
}

# Stop a process we started, by the PID we recorded; escalate to SIGKILL after $3 seconds.
stop_pid_file() {
  local file=$1 signal=${2:-TERM} grace=${3:-20} pid
  [ -f "$file" ] || return 0
  pid=$(cat "$file")
  if kill -0 "$pid" 2>/dev/null; then
    kill -s "$signal" "$pid" 2>/dev/null || true
    for _ in $(seq "$grace"); do kill -0 "$pid" 2>/dev/null || break; sleep 1; done
    kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null
  fi
  rm -f "$file"
}

# The lab's networks around a target (README, "Lab networks"); traffic stays between these
# namespaces:
#   public segment 198.51.100.0/24: bridge brclients in the target's router namespace (.1);
#     client hosts speaqr-NAME-client1..N at .11, .12, ...; a masquerading NAT router
#     speaqr-NAME-nat at .20; a STUN server (coturn, STUN only) speaqr-NAME-stun at .30; the
#     stand-in carrier's host speaqr-NAME-carrier at .40 (tests/carrier runs there).
#     a local ACME server (Pebble, with pebble-challtestsrv as its DNS) speaqr-NAME-acme at .50.
#   behind the NAT router: 192.168.100.0/24 (router .1), client host speaqr-NAME-natclient at .10.
# Client packets reach the appliance on a real interface with their own (or their NAT's) source
# address, not on lo, so its firewall, bans and NAT handling see them as hosts on the internet.
SPEAQR_CLIENT_HOSTS=${SPEAQR_CLIENT_HOSTS:-3}
LAB_PUBLIC_NET=198.51.100.0/24
LAB_NAT_LAN=192.168.100.0/24
client_netns_name() { printf 'speaqr-%s-client%s' "$1" "$2"; }
lab_netns_names() {
  local k
  for k in $(seq "$SPEAQR_CLIENT_HOSTS"); do client_netns_name "$1" "$k"; echo; done
  printf 'speaqr-%s-%s\n' "$1" nat "$1" natclient "$1" stun "$1" carrier "$1" acme
}

# A host on the public segment: namespace $2 with eth0 at $3 on brclients of router namespace $1.
add_public_host() {
  local router=$1 ns=$2 address=$3 peer=$4
  ip netns del "$ns" 2>/dev/null || true
  ip netns add "$ns"
  ip -n "$ns" link set lo up
  ip -n "$ns" link add eth0 type veth peer name "$peer" netns "$router"
  ip -n "$router" link set "$peer" master brclients up
  ip -n "$ns" addr add "$address/24" dev eth0
  ip -n "$ns" link set eth0 up
}

# $1 NAME, $2 the router namespace, $3 the target's network the public hosts route to through it,
# $4 the target's public address (what the ACME server's DNS answers for every name).
attach_lab_networks() {
  local name=$1 router=$2 target_net=$3 public_address=$4 k cns nat natclient stun state
  ip -n "$router" link add brclients type bridge
  ip -n "$router" addr add 198.51.100.1/24 dev brclients
  ip -n "$router" link set brclients up
  # Private addresses behind the NAT router must never leave through the router's uplink.
  ip -n "$router" route add unreachable "$LAB_NAT_LAN"
  for k in $(seq "$SPEAQR_CLIENT_HOSTS"); do
    cns=$(client_netns_name "$name" "$k")
    add_public_host "$router" "$cns" "198.51.100.$((10 + k))" "vclient$k"
    ip -n "$cns" route add "$target_net" via 198.51.100.1
  done

  nat="speaqr-$name-nat" natclient="speaqr-$name-natclient" stun="speaqr-$name-stun"
  add_public_host "$router" "$nat" 198.51.100.20 vnat
  ip -n "$nat" route add "$target_net" via 198.51.100.1
  ip netns del "$natclient" 2>/dev/null || true
  ip netns add "$natclient"
  ip -n "$natclient" link set lo up
  ip -n "$natclient" link add eth0 type veth peer name lan0 netns "$nat"
  ip -n "$nat" addr add 192.168.100.1/24 dev lan0
  ip -n "$nat" link set lan0 up
  ip -n "$natclient" addr add 192.168.100.10/24 dev eth0
  ip -n "$natclient" link set eth0 up
  ip -n "$natclient" route add default via 192.168.100.1
  in_netns "$nat" sysctl -q -w net.ipv4.ip_forward=1
  in_netns "$nat" nft -f - <<NFT
table ip speaqr_lab_nat {
  chain postrouting {
    type nat hook postrouting priority srcnat; policy accept;
    ip saddr $LAB_NAT_LAN oifname "eth0" masquerade
  }
}
NFT

  add_public_host "$router" "speaqr-$name-carrier" 198.51.100.40 vcarrier
  ip -n "speaqr-$name-carrier" route add "$target_net" via 198.51.100.1

  add_public_host "$router" "$stun" 198.51.100.30 vstun
  state=$(state_dir "$name")
  # -c /dev/null: not the host's /etc/turnserver.conf (Debian's turns off RFC 3489 requests, which
  # pjsua's media STUN sends).
  setsid ip netns exec "$stun" turnserver -c /dev/null --stun-only --listening-ip 198.51.100.30 --listening-port 3478 \
    --no-cli --no-tls --no-dtls --no-auth --no-stdout-log --simple-log --log-file "$state/stun.log" \
    --userdb "$state/stun.db" --pidfile "$state/stun-server.pid" >/dev/null 2>&1 < /dev/null &
  echo $! > "$state/stun.pid"

  attach_acme_server "$name" "$router" "$target_net" "$public_address"
}

# An ACME CA on the public segment, as Let's Encrypt is on the internet: Pebble at
# https://198.51.100.50:14000/dir (its HTTPS certificate from a CA made here, acme-server-ca.crt in
# the state directory, which the appliance is told to trust), validating HTTP-01 challenges
# against the names' address; pebble-challtestsrv is its DNS and answers $4 for every name.
# PEBBLE_AUTHZREUSE=0: every order, renewals too, is validated again through the firewall.
attach_acme_server() {
  local name=$1 router=$2 target_net=$3 public_address=$4 acme="speaqr-$1-acme" state
  state=$(state_dir "$name")
  add_public_host "$router" "$acme" 198.51.100.50 vacme
  ip -n "$acme" route add "$target_net" via 198.51.100.1
  # The extensions that strict verification (Python 3.13's default) requires of a CA and a leaf.
  openssl req -x509 -newkey rsa:2048 -nodes -days 30 -subj "/CN=speaqr lab ACME server CA" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    -keyout "$state/acme-server-ca.key" -out "$state/acme-server-ca.crt" 2>/dev/null
  openssl req -newkey rsa:2048 -nodes -subj "/CN=acme.lab" -keyout "$state/acme-server.key" \
    -out "$state/acme-server.csr" 2>/dev/null
  openssl x509 -req -in "$state/acme-server.csr" -CA "$state/acme-server-ca.crt" \
    -CAkey "$state/acme-server-ca.key" -CAcreateserial -days 30 -out "$state/acme-server.crt" \
    -extfile <(printf 'subjectAltName=IP:198.51.100.50,DNS:acme.lab\nextendedKeyUsage=serverAuth\nkeyUsage=critical,digitalSignature,keyEncipherment\nauthorityKeyIdentifier=keyid\nsubjectKeyIdentifier=hash\n') 2>/dev/null
  cat > "$state/pebble.json" <<JSON
{"pebble": {"listenAddress": "198.51.100.50:14000", "managementListenAddress": "198.51.100.50:15000",
  "certificate": "$state/acme-server.crt", "privateKey": "$state/acme-server.key",
  "httpPort": 80, "tlsPort": 443, "ocspResponderURL": "", "externalAccountBindingRequired": false}}
JSON
  setsid ip netns exec "$acme" pebble-challtestsrv -defaultIPv4 "$public_address" -defaultIPv6 "" \
    -dns01 198.51.100.50:8053 -http01 "" -https01 "" -tlsalpn01 "" -management 198.51.100.50:8055 \
    >"$state/acme-dns.log" 2>&1 < /dev/null &
  echo $! > "$state/acme-dns.pid"
  PEBBLE_VA_NOSLEEP=1 PEBBLE_WFE_NONCEREJECT=0 PEBBLE_AUTHZREUSE=0 \
    setsid ip netns exec "$acme" pebble -config "$state/pebble.json" -dnsserver 198.51.100.50:8053 \
    >"$state/acme.log" 2>&1 < /dev/null &
  echo $! > "$state/acme.pid"
}

detach_lab_networks() {
  local name=$1 ns
  stop_pid_file "$(state_dir "$name")/stun.pid" TERM 5
  stop_pid_file "$(state_dir "$name")/acme.pid" TERM 5
  stop_pid_file "$(state_dir "$name")/acme-dns.pid" TERM 5
  for ns in $(lab_netns_names "$name"); do ip netns del "$ns" 2>/dev/null || true; done
}
