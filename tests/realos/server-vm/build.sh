#!/usr/bin/env bash
# PROTOTYPE (not wired into cargo test): builds an x86_64 Debian bookworm "pinetboot server" VM
# disk, whose kernel NFS server (nfsd) can replace the userspace nfs-ganesha of
# tests/real_boot.rs. See tests/realos/server-vm/REPORT.md for the measurements.
#
# Three stages, each timed (printed to stderr as "[server-vm HH:MM:SS] ..."):
#
#  root  mmdebstrap --variant=minbase --arch=amd64 bookworm, natively (no emulation):
#        linux-image-amd64, systemd-sysv, udev, kmod, nfs-kernel-server, dnsmasq, iproute2,
#        procps. A small initramfs (MODULES=list: virtio_pci virtio_blk ext4) so that the TCG
#        guest unpacks little. eth0 = 10.99.0.2/24 by systemd-networkd, root without a password,
#        a console autologin on ttyS0, and pnb-report.service, which prints the server's state
#        (exportfs -v, rpcinfo -p, /proc/fs/nfsd/threads, unit timestamps, pinetboot's journal)
#        to ttyS0 between markers once pinetboot.service has run.
#        CACHED in $CACHE/server-root-<key> (key: release, package list, recipe version);
#        independent of pinetboot's code, so a CI cache hits on every commit.
#  deb   pinetboot's own .deb, by `bash packaging/build-deb.sh` (a release build), run in a copy
#        of the source tree under $WORK/src with CARGO_TARGET_DIR=$WORK/target, so the checkout
#        (its target/ and packaging/gen/) is not touched. Skipped when DEB=path is given.
#  disk  a copy of the cached root + `dpkg -i pinetboot.deb` (in a chroot, natively) +
#        /etc/pinetboot/pinetboot.yaml + pinetboot.service wanted by multi-user.target (the
#        package only enables the daily timer) + the Raspberry Pi fixture's rootfs/ (from
#        tests/realos/build-debian-raspi.sh) at /srv/rootfs/debian, as a directory image
#        source; then `mke2fs -t ext4 -d` of that tree into a sparse raw image (root=/dev/vda).
#
# Usage: bash tests/realos/server-vm/build.sh [root|deb|disk|all]   (default: all)
# Env:   PINETBOOT_SERVERVM_WORK  scratch folder (default /var/tmp/pinetboot-server-vm)
#        PINETBOOT_SERVERVM_CACHE cache folder for the root (default $WORK/cache)
#        DEB=path                 use this pinetboot .deb instead of building one
#        SSH_PUBKEY=path          public key put in the client's authorized_keys (default:
#                                 a key generated in $WORK/id_ed25519)
#        DISK_NAME=name           output file name (default disk.img)
#        PRESEED_CLIENT_ROOT=1    copy the client root into the disk at build time (see below)
# Output: $WORK/disk.img, $WORK/vmlinuz, $WORK/initrd.img, $WORK/times.env
# Needs root, mmdebstrap, e2fsprogs, cargo + cargo-deb (for the deb stage), ssh-keygen.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../../.." && pwd)
WORK=${PINETBOOT_SERVERVM_WORK:-/var/tmp/pinetboot-server-vm}
CACHE=${PINETBOOT_SERVERVM_CACHE:-$WORK/cache}
STAGE=${1:-all}

RELEASE=bookworm
# Bump when the root recipe below changes.
RECIPE=1
PACKAGES=(
  linux-image-amd64 systemd-sysv udev kmod nfs-kernel-server dnsmasq iproute2 procps
)
KEY=$(printf '%s\n' "$RELEASE" "$RECIPE" "${PACKAGES[@]}" | sha256sum | cut -c1-16)
ROOTCACHE=$CACHE/server-root-$KEY

# The lab's addresses (tests/netsupport/netlab.rs) and the client of tests/real_boot.rs.
SERVER_IP=10.99.0.2
CLIENT=raspi1
SERIAL=0c4c21e5
MAC=dc:a6:32:5e:ed:01
HOSTNAME_PI=pi-netboot-1

log() { printf '[server-vm %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
[[ $(id -u) == 0 ]] || die "needs root"
mkdir -p "$WORK" "$CACHE"
TIMES=$WORK/times.env
touch "$TIMES"
record() { sed -i "/^$1=/d" "$TIMES"; echo "$1=$2" >>"$TIMES"; }

# ---------------------------------------------------------------------------------------------
build_root() {
  if [[ -e $ROOTCACHE/done ]]; then
    log "root: cached $ROOTCACHE"
    return
  fi
  exec 9>"$CACHE/.root.lock"
  flock 9
  [[ -e $ROOTCACHE/done ]] && return
  local mirror
  mirror=$(
    { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
      grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}'
    } | grep -v -- '-security' | grep debian | head -n1 || true
  )
  local w=$CACHE/.work-$KEY
  rm -rf "$w"
  mkdir -p "$w"
  local t0 t1
  t0=$(date +%s)
  # Before the kernel is configured: a small initramfs (the TCG guest decompresses and loads
  # every byte of it) with just what root=/dev/vda (virtio-blk, ext4) needs.
  local essential_hook='
set -e
mkdir -p "$1/etc/initramfs-tools/conf.d"
printf "MODULES=list\n" >"$1/etc/initramfs-tools/conf.d/pnb-modules"
printf "virtio_pci\nvirtio_blk\next4\n" >"$1/etc/initramfs-tools/modules"
'
  local customize_hook='
set -e
r="$1"
echo pnb-server >"$r/etc/hostname"
printf "127.0.0.1\tlocalhost\n127.0.1.1\tpnb-server\n" >"$r/etc/hosts"
printf "/dev/vda / ext4 rw,noatime 0 1\n" >"$r/etc/fstab"
# eth0 (net.ifnames=0 on the kernel command line) = the lab server address, by networkd.
mkdir -p "$r/etc/systemd/network"
printf "[Match]\nName=eth0\n\n[Network]\nAddress=10.99.0.2/24\nLinkLocalAddressing=no\nIPv6AcceptRA=no\n" \
  >"$r/etc/systemd/network/10-eth0.network"
chroot "$r" systemctl enable systemd-networkd.service systemd-networkd-wait-online.service >/dev/null 2>&1
# root without a password, logged in on the serial console (for poking around by hand).
chroot "$r" passwd -d root >/dev/null
mkdir -p "$r/etc/systemd/system/serial-getty@ttyS0.service.d"
printf "[Service]\nExecStart=\nExecStart=-/sbin/agetty --autologin root --keep-baud 115200,57600,38400,9600 %%I \$TERM\n" \
  >"$r/etc/systemd/system/serial-getty@ttyS0.service.d/autologin.conf"
# The report: what a test would check, printed on the console between markers.
cat >"$r/usr/local/sbin/pnb-report" <<"EOF"
#!/bin/sh
exec >/dev/ttyS0 2>&1
echo "PNB-REPORT-BEGIN"
echo "--- uptime: $(cat /proc/uptime)"
echo "--- systemctl is-active"; systemctl is-active nfs-server.service dnsmasq.service pinetboot.service rpcbind.service
echo "--- pinetboot.service result: $(systemctl show -p Result --value pinetboot.service)"
for u in systemd-networkd.service rpcbind.service nfs-server.service dnsmasq.service pinetboot.service; do
  echo "--- $u: $(systemctl show -p ExecMainStartTimestampMonotonic,ExecMainExitTimestampMonotonic,ActiveEnterTimestampMonotonic,InactiveExitTimestampMonotonic $u | tr "\n" " ")"
done
echo "--- cat /proc/fs/nfsd/threads: $(cat /proc/fs/nfsd/threads)"
echo "--- exportfs -v"; exportfs -v
echo "--- rpcinfo -p"; rpcinfo -p
echo "--- findmnt (binds)"; findmnt -n -o TARGET,SOURCE,FSTYPE | grep -E "tftpboot|nfs" || true
echo "--- ls /tftpboot"; ls -la /tftpboot
echo "--- journalctl -u pinetboot.service"; journalctl -b -u pinetboot.service --no-pager -o short-monotonic | tail -n 60
echo "--- journalctl -u dnsmasq.service"; journalctl -b -u dnsmasq.service --no-pager -o short-monotonic | tail -n 20
echo "--- systemd-analyze"; systemd-analyze 2>&1 | head -n 3
echo "--- systemctl --failed"; systemctl --failed --no-legend --plain --no-pager
echo "PNB-REPORT-END"
EOF
chmod 755 "$r/usr/local/sbin/pnb-report"
cat >"$r/etc/systemd/system/pnb-report.service" <<"EOF"
[Unit]
Description=Print the NFS/TFTP server state on ttyS0 (pinetboot server-vm prototype)
After=pinetboot.service nfs-server.service dnsmasq.service
Wants=pinetboot.service

[Service]
Type=oneshot
ExecStart=/usr/local/sbin/pnb-report

[Install]
WantedBy=multi-user.target
EOF
chroot "$r" systemctl enable pnb-report.service >/dev/null 2>&1
: >"$r/etc/machine-id"
'
  log "root: mmdebstrap $RELEASE amd64 (${PACKAGES[*]}) from ${mirror:-the default mirror}"
  local include
  include=$(IFS=,; echo "${PACKAGES[*]}")
  mmdebstrap --mode=root --variant=minbase --arch=amd64 \
    --include="$include" \
    --dpkgopt=force-unsafe-io \
    --aptopt='Acquire::Languages "none"' \
    --essential-hook="$essential_hook" \
    --customize-hook="$customize_hook" \
    "$RELEASE" "$w/rootfs" ${mirror:+"$mirror"} >&2
  local ver
  ver=$(ls "$w/rootfs/lib/modules" | sort -V | tail -n1)
  cp "$w/rootfs/boot/vmlinuz-$ver" "$w/vmlinuz"
  cp "$w/rootfs/boot/initrd.img-$ver" "$w/initrd.img"
  t1=$(date +%s)
  printf 'KERNEL_VERSION=%s\nSECONDS_ROOT=%s\nROOT_KIB=%s\n' "$ver" "$((t1 - t0))" \
    "$(du -sk "$w/rootfs" | cut -f1)" >"$w/info.env"
  touch "$w/done"
  rm -rf "$ROOTCACHE"
  mv "$w" "$ROOTCACHE"
  log "root: built in $((t1 - t0)) s: $ROOTCACHE"
  record SECONDS_ROOT "$((t1 - t0))"
}

# ---------------------------------------------------------------------------------------------
build_deb() {
  if [[ -n ${DEB:-} ]]; then
    log "deb: given $DEB"
    return
  fi
  local t0 t1
  t0=$(date +%s)
  # A copy of the checkout (uncommitted changes included), so build-deb.sh's packaging/gen/
  # and the release build stay out of the working tree the other tests use.
  mkdir -p "$WORK/src"
  (cd "$REPO" && tar --exclude=./target --exclude=./fuzz/target --exclude=./packaging/gen \
     --exclude=./.git -cf - .) | (cd "$WORK/src" && tar -xf -)
  rm -rf "$WORK/deb"
  (cd "$WORK/src" && CARGO_TARGET_DIR=$WORK/target bash packaging/build-deb.sh --output "$WORK/deb") >&2
  t1=$(date +%s)
  log "deb: built in $((t1 - t0)) s"
  record SECONDS_DEB "$((t1 - t0))"
}

the_deb() {
  if [[ -n ${DEB:-} ]]; then echo "$DEB"; return; fi
  ls "$WORK"/deb/pinetboot_*.deb | head -n1
}

# ---------------------------------------------------------------------------------------------
build_disk() {
  [[ -e $ROOTCACHE/done ]] || die "no cached root (run the root stage)"
  local deb fixture t0 t1 t2
  deb=$(the_deb)
  [[ -f $deb ]] || die "no pinetboot .deb (run the deb stage or set DEB=)"
  fixture=$(bash "$REPO/tests/realos/build-debian-raspi.sh")
  [[ -d $fixture/rootfs/etc ]] || die "fixture $fixture has no rootfs/"
  local pub=${SSH_PUBKEY:-$WORK/id_ed25519.pub}
  if [[ ! -f $pub ]]; then
    ssh-keygen -q -t ed25519 -N '' -C pinetboot-server-vm -f "${pub%.pub}"
  fi
  t0=$(date +%s)
  local s=$WORK/stage
  rm -rf "$s"
  cp -a "$ROOTCACHE/rootfs" "$s"
  # pinetboot from its own package, natively, in a chroot (policy-rc.d: nothing starts).
  cp "$deb" "$s/tmp/pinetboot.deb"
  printf '#!/bin/sh\nexit 101\n' >"$s/usr/sbin/policy-rc.d"
  chmod 755 "$s/usr/sbin/policy-rc.d"
  chroot "$s" dpkg -i /tmp/pinetboot.deb >&2
  rm -f "$s/tmp/pinetboot.deb" "$s/usr/sbin/policy-rc.d"
  # mmdebstrap leaves the build host's resolv.conf in the root: none in the lab.
  rm -f "$s/etc/resolv.conf"
  : >"$s/etc/resolv.conf"
  # The package enables only the daily timer (the service has no [Install]); this server
  # applies on every boot, after dnsmasq and nfs-server (the unit's own After=).
  ln -sf /lib/systemd/system/pinetboot.service "$s/etc/systemd/system/multi-user.target.wants/pinetboot.service"
  [[ -e $s/lib/systemd/system/pinetboot.service ]] || die "pinetboot.service not where expected"
  mkdir -p "$s/etc/pinetboot"
  cat >"$s/etc/pinetboot/pinetboot.yaml" <<EOF
server: {address: $SERVER_IP, network: 10.99.0.0/24, interface: eth0}
images:
  debian: {source: /srv/rootfs/debian}
clients:
  $CLIENT:
    serial: '$SERIAL'
    mac: '$MAC'
    image: debian
    hostname: $HOSTNAME_PI
    ssh: {authorized_keys: ['$(cat "$pub")']}
EOF
  # The client image: the fixture's root tree, hardlinked (not copied) into the stage;
  # mke2fs -d reads it once.
  mkdir -p "$s/srv/rootfs"
  cp -al "$fixture/rootfs" "$s/srv/rootfs/debian"
  # Optional CI shortcut (PRESEED_CLIENT_ROOT=1): the client root pinetboot would copy at
  # boot (tree::copy_tree of 787 MiB, ~45-90 s under TCG) is copied here natively instead;
  # apply then finds /nfs/raspi1 present, edits the files inside it and runs the handlers.
  # A real copy (not hardlinks): the client writes into its root.
  if [[ ${PRESEED_CLIENT_ROOT:-0} == 1 ]]; then
    mkdir -p "$s/nfs"
    cp -a "$fixture/rootfs" "$s/nfs/$CLIENT"
  fi
  t1=$(date +%s)
  log "disk: stage ready in $((t1 - t0)) s ($(du -sh "$s" | cut -f1))"
  # Room for the image source, pinetboot's store entry and the client root (1.8x the fixture
  # each at worst) on a sparse file.
  local kib size_mib
  kib=$(du -sk "$s" | cut -f1)
  size_mib=$(( kib * 4 / 1024 + 2048 ))
  rm -f "$WORK/${DISK_NAME:-disk.img}"
  mke2fs -q -F -t ext4 -L pnb-server -d "$s" "$WORK/${DISK_NAME:-disk.img}" "${size_mib}M"
  t2=$(date +%s)
  cp "$ROOTCACHE/vmlinuz" "$ROOTCACHE/initrd.img" "$WORK/"
  rm -rf "$s"
  log "disk: mke2fs -d in $((t2 - t1)) s: $WORK/${DISK_NAME:-disk.img} (${size_mib} MiB, $(du -h "$WORK/${DISK_NAME:-disk.img}" | cut -f1) used)"
  record SECONDS_STAGE "$((t1 - t0))"
  record SECONDS_MKE2FS "$((t2 - t1))"
}

case $STAGE in
  root) build_root ;;
  deb) build_deb ;;
  disk) build_disk ;;
  all) build_root; build_deb; build_disk ;;
  *) die "usage: $0 [root|deb|disk|all]" ;;
esac
log "times: $(tr '\n' ' ' <"$TIMES")"
