#!/usr/bin/env bash
# Run agi/'s unit tests under the target's own Python (Debian sid, CPython 3.14) without
# touching the cached root: the root is mounted read-only under an overlay in /tmp, the
# cp314 wheels are unpacked by the host's pip into a directory on PYTHONPATH.
# Usage (root): agi/scripts/test-on-sid-root.sh /var/cache/speaqr-sip/roots/sid-<hash> [pytest args]
set -euo pipefail

root=${1:?usage: $0 SID_ROOT [pytest args]}
shift
here=$(cd "$(dirname "$0")/.." && pwd)
pip=${PIP:-$(cd "$here/.." && pwd)/.venv/bin/pip}
python=$(basename "$(ls "$root"/usr/bin/python3.1[0-9] | sort -V | tail -1)")
version=${python#python}
tag=cp${version/./}
work=$(mktemp -d /tmp/speaqr-sid-test.XXXXXX)
merged=$work/merged

cleanup() {
  for m in "$merged/dev" "$merged/proc" "$merged/w/site" "$merged/w/agi" "$merged"; do
    mountpoint -q "$m" && umount "$m"
  done
  rm -rf "$work"
}
trap cleanup EXIT

mapfile -t requirements < <(
  sed -n '/^dependencies = \[/,/^\]/p;/^test = \[/,/^\]/p' "$here/pyproject.toml" \
    | grep -o '"[^"]*=="[^"]*"\|"[A-Za-z0-9_.-]*==[^"]*"' | tr -d '"' \
    | grep -v -e '^mypy' -e '^ruff' -e '^types-'
)
"$pip" install --quiet --target "$work/site" --python-version "$version" --implementation cp \
  --abi "$tag" --only-binary=:all: \
  --platform manylinux_2_34_x86_64 --platform manylinux_2_28_x86_64 \
  --platform manylinux_2_27_x86_64 --platform manylinux_2_24_x86_64 \
  --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
  "${requirements[@]}"

mkdir -p "$work/up" "$work/ovwork" "$merged"
mount -t overlay overlay -o "lowerdir=$root,upperdir=$work/up,workdir=$work/ovwork" "$merged"
mkdir -p "$merged/w/agi" "$merged/w/site"
mount --bind "$here" "$merged/w/agi"
mount --bind "$work/site" "$merged/w/site"
mount -t proc proc "$merged/proc"
mount --bind /dev "$merged/dev"

chroot "$merged" env -i PATH=/usr/bin:/bin HOME=/tmp PYTHONDONTWRITEBYTECODE=1 \
  PYTHONPATH=/w/site:/w/agi/src "$python" -m pytest -p no:cacheprovider \
  -c /w/agi/pyproject.toml --rootdir /w/agi -q /w/agi/tests "$@"
