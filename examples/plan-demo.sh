#!/usr/bin/env bash
# Builds pinetboot and runs its main job: a plan of examples/single-pi.yaml against a
# throwaway root, seeded with a tiny stand-in for an unpacked Raspberry Pi OS (Bookworm) tree
# at /srv/rootfs/bookworm-lite. Nothing outside the throwaway root is read or written.
#
#   bash examples/plan-demo.sh            # plan only
#   sudo bash examples/plan-demo.sh apply # also apply, inside a private mount namespace, then plan
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cargo build --quiet --manifest-path "$here/../Cargo.toml"
bin="$here/../target/debug/pinetboot"
root=$(mktemp -d "${TMPDIR:-/tmp}/pinetboot-demo.XXXXXX")
bash "$here/demo-tree.sh" "$root/srv/rootfs/bookworm-lite"
mkdir -p "$root/etc"
printf 'proc /proc proc defaults 0 0\n' > "$root/etc/fstab"
echo "throwaway root: $root" >&2
"$bin" --root "$root" --config "$here/single-pi.yaml" plan
if [ "${1:-}" = apply ]; then
  unshare -m --propagation private sh -ec '
    "$1" --root "$2" --config "$3" apply
    "$1" --root "$2" --config "$3" plan' sh "$bin" "$root" "$here/single-pi.yaml"
fi
