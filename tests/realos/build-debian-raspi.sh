#!/usr/bin/env bash
# Builds a real Raspberry Pi 4 image of Debian bookworm arm64 from Debian's package archive, the
# way Debian's own raspi images are built (mmdebstrap, linux-image-arm64, raspi-firmware,
# ifupdown with `auto eth0`, a first-boot unit that re-runs raspi-firmware), laid out like
# Raspberry Pi OS: MBR, FAT32 partition 1 (mounted at /boot/firmware), ext4 partition 2,
# `PARTUUID=` lines in etc/fstab, a multi-block .img.xz.
#
# This is the test fixture of record: nothing in it is written by pinetboot's test code.
#
# Output (printed as the last line of stdout): a cache folder holding
#   rootfs/                 the root tree, boot/firmware populated (a "directory image")
#   debian-raspi.img.xz     the disk image (multi-block xz), and its .sha256
#   vmlinuz, initrd.img     the kernel and initrd (also inside the FAT partition)
#   info.env                KERNEL_VERSION, DISK_ID, sizes, build times
# The folder is keyed by the inputs below (release, package list, recipe version): a machine
# builds it once. Cache root: $PINETBOOT_REALOS_CACHE, default /var/cache/pinetboot-tests.
#
# Needs root, mmdebstrap, qemu-user-static (binfmt), sfdisk, mkfs.vfat, mtools, mke2fs, xz.
# `.ci/run` installs them. The Debian mirror is the one the host's apt uses.
set -euo pipefail

RELEASE=bookworm
# Bump when the recipe below changes in a way that changes the image.
RECIPE=3
PACKAGES=(
  systemd-sysv udev kmod dbus ifupdown isc-dhcp-client iproute2 netbase
  openssh-server nfs-common initramfs-tools linux-image-arm64 raspi-firmware
  firmware-brcm80211 ca-certificates dosfstools systemd-timesyncd procps
)
# The MBR disk signature: PARTUUIDs are <DISK_ID>-01 and <DISK_ID>-02, as on Raspberry Pi OS.
DISK_ID=5eed4b1d
BOOT_MIB=512

CACHE=${PINETBOOT_REALOS_CACHE:-/var/cache/pinetboot-tests}
KEY=$(printf '%s\n' "$RELEASE" "$RECIPE" "$DISK_ID" "$BOOT_MIB" "${PACKAGES[@]}" | sha256sum | cut -c1-16)
OUT=$CACHE/debian-$RELEASE-arm64-raspi-$KEY

log() { printf '[build-debian-raspi %s] %s\n' "$(date +%T)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

# arm64 binaries (the build's chroot, and tests that run the image's own scripts in a client
# root) run under qemu-user through binfmt_misc. Registered on every call, cached or not.
register_binfmt() {
  [[ $(uname -m) != aarch64 ]] || return 0
  [[ -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]] && return 0
  [[ -x /usr/libexec/qemu-binfmt/aarch64-binfmt-P || -x /usr/bin/qemu-aarch64-static ]] \
    || die "missing qemu-user-static (apt-get install qemu-user-static)"
  if [[ ! -e /proc/sys/fs/binfmt_misc/register ]]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc || die "cannot mount binfmt_misc"
  fi
  local conf=/usr/lib/binfmt.d/qemu-aarch64.conf
  [[ -r $conf ]] || die "no $conf to register qemu-aarch64 with binfmt_misc"
  # The F flag opens the interpreter now, so it works inside a chroot.
  cat "$conf" >/proc/sys/fs/binfmt_misc/register
}

if [[ -e $OUT/done ]]; then
  [[ $(id -u) != 0 ]] || register_binfmt
  echo "$OUT"
  exit 0
fi

[[ $(id -u) == 0 ]] || die "needs root (mmdebstrap --mode=root, chroot, owners kept in the tree)"
for tool in mmdebstrap sfdisk mkfs.vfat mcopy mke2fs e2fsck xz flock; do
  command -v "$tool" >/dev/null || die "missing tool: $tool (apt-get install mmdebstrap qemu-user-static fdisk dosfstools mtools e2fsprogs xz-utils util-linux)"
done

mkdir -p "$CACHE"
# One build per machine at a time; a second caller waits, then finds the result.
exec 9>"$CACHE/.build.lock"
flock 9
if [[ -e $OUT/done ]]; then
  echo "$OUT"
  exit 0
fi
register_binfmt

# The mirror the host's apt uses (deb822 or one-line sources), else mmdebstrap's default.
mirror=$(
  { grep -hs '^URIs:' /etc/apt/sources.list.d/*.sources | awk '{print $2}'
    grep -hs '^deb ' /etc/apt/sources.list /etc/apt/sources.list.d/*.list | awk '{print $2}'
  } | grep -v -- '-security' | head -n1 || true
)

WORK=$CACHE/.work-$KEY
rm -rf "$WORK"
mkdir -p "$WORK"
ROOT=$WORK/rootfs
t0=$(date +%s)

# Before any package is configured: initramfs-tools builds one initrd at the end (not one per
# trigger), with the modules a network-booted client needs (MODULES=netboot: base, every
# Ethernet driver including the Pi 4's genet and virtio, NFS), which under qemu-user is several
# times faster than MODULES=most.
essential_hook='
set -e
mkdir -p "$1/etc/initramfs-tools/conf.d" "$1/boot/firmware"
printf "MODULES=netboot\n" >"$1/etc/initramfs-tools/conf.d/modules-netboot"
chroot "$1" dpkg-divert --quiet --local --rename --add /usr/sbin/update-initramfs
printf "#!/bin/sh\nexit 0\n" >"$1/usr/sbin/update-initramfs"
chmod 755 "$1/usr/sbin/update-initramfs"
'

customize_hook='
set -e
r="$1"
# The real update-initramfs back, then one initrd (its raspi-firmware hook copies it to the
# FAT partition), then the kernel hook again so config.txt names the initrd.
rm -f "$r/usr/sbin/update-initramfs"
chroot "$r" dpkg-divert --quiet --local --rename --remove /usr/sbin/update-initramfs
ver=$(ls "$r/lib/modules" | sort -V | tail -n1)
# As Debian raspi images: the root by partition, consoles on the UART and the screen.
printf "ROOTPART=PARTUUID='"$DISK_ID"'-02\nCONSOLES=\"serial0,115200 tty1\"\n" >>"$r/etc/default/raspi-firmware"
chroot "$r" update-initramfs -c -k "$ver"
chroot "$r" /etc/kernel/postinst.d/z50-raspi-firmware "$ver"
# As Debian raspi images: hostname, eth0 by ifupdown (the kernel cmdline has net.ifnames=0),
# root with an empty password on the console, no ssh host keys in the image.
echo rpi4-debian >"$r/etc/hostname"
printf "127.0.0.1\tlocalhost\n127.0.1.1\trpi4-debian\n::1\t\tlocalhost ip6-localhost ip6-loopback\n" >"$r/etc/hosts"
mkdir -p "$r/etc/network/interfaces.d"
printf "auto eth0\niface eth0 inet dhcp\n" >"$r/etc/network/interfaces.d/eth0"
printf "auto lo\niface lo inet loopback\n" >"$r/etc/network/interfaces"
printf "source-directory /etc/network/interfaces.d\n" >>"$r/etc/network/interfaces"
chroot "$r" passwd -d root >/dev/null
rm -f "$r"/etc/ssh/ssh_host_*
# Raspberry Pi OS layout: the FAT partition at /boot/firmware, the root by PARTUUID.
printf "proc /proc proc defaults 0 0\nPARTUUID='"$DISK_ID"'-01 /boot/firmware vfat defaults 0 2\nPARTUUID='"$DISK_ID"'-02 / ext4 defaults,noatime 0 1\n" >"$r/etc/fstab"
# Debian raspi images re-run raspi-firmware on the first boot (config.txt and cmdline.txt are
# regenerated from /etc/default/raspi-firmware).
cat >"$r/etc/systemd/system/rpi-reconfigure-raspi-firmware.service" <<EOF
[Unit]
Description=Reconfigure raspi-firmware to regenerate config.txt matching actual hardware
Before=sysinit.target
DefaultDependencies=no
RequiresMountsFor=/boot/firmware

[Service]
Type=oneshot
TimeoutSec=infinity
ExecStart=/usr/sbin/dpkg-reconfigure raspi-firmware
ExecStart=/bin/systemctl --no-reload disable %p

[Install]
RequiredBy=sysinit.target
EOF
chroot "$r" systemctl enable rpi-reconfigure-raspi-firmware.service >/dev/null 2>&1
# Image state: no machine identity yet.
: >"$r/etc/machine-id"
rm -f "$r/var/lib/dbus/machine-id"
'

log "mmdebstrap $RELEASE arm64 (${#PACKAGES[@]} packages) from ${mirror:-the default mirror}"
include=$(IFS=,; echo "${PACKAGES[*]}")
mmdebstrap --mode=root --variant=minbase --arch=arm64 \
  --components=main,non-free-firmware \
  --include="$include" \
  --dpkgopt=force-unsafe-io \
  --aptopt='Acquire::Languages "none"' \
  --essential-hook="$essential_hook" \
  --customize-hook="$customize_hook" \
  "$RELEASE" "$ROOT" ${mirror:+"$mirror"} >&2
t1=$(date +%s)
log "root built in $((t1 - t0)) s"

ver=$(ls "$ROOT/lib/modules" | sort -V | tail -n1)
fw=$ROOT/boot/firmware
for f in start4.elf fixup4.dat bcm2711-rpi-4-b.dtb config.txt cmdline.txt "vmlinuz-$ver" "initrd.img-$ver"; do
  [[ -s $fw/$f ]] || die "boot/firmware/$f missing after the build"
done
cp "$fw/vmlinuz-$ver" "$WORK/vmlinuz"
cp "$fw/initrd.img-$ver" "$WORK/initrd.img"

# The disk image. The ext4 partition holds /boot/firmware as an empty mount point.
img=$WORK/debian-raspi.img
root_kib=$(du -sk --exclude=./boot/firmware "$ROOT" | cut -f1)
ext4_mib=$(( (root_kib * 13 / 10) / 1024 + 256 ))
boot_start=8192
boot_sectors=$(( BOOT_MIB * 2048 ))
root_start=$(( boot_start + boot_sectors ))
total_mib=$(( 4 + BOOT_MIB + ext4_mib ))
truncate -s "${total_mib}M" "$img"
printf 'label: dos\nlabel-id: 0x%s\nstart=%d, size=%d, type=c\nstart=%d, type=83\n' \
  "$DISK_ID" "$boot_start" "$boot_sectors" "$root_start" |
  sfdisk --quiet --no-reread --no-tell-kernel "$img"
mkfs.vfat -F 32 -n BOOTFS -i "${DISK_ID^^}" --offset="$boot_start" "$img" $(( BOOT_MIB * 1024 )) >/dev/null
MTOOLS_SKIP_CHECK=1 mcopy -s -p -m -i "$img@@$(( boot_start * 512 ))" "$fw"/* ::/
stash=$WORK/firmware-stash
mkdir "$stash"
find "$fw" -mindepth 1 -maxdepth 1 -exec mv -t "$stash" {} +
mke2fs -q -F -t ext4 -L rootfs -E offset=$(( root_start * 512 )) -d "$ROOT" "$img" "${ext4_mib}M"
find "$stash" -mindepth 1 -maxdepth 1 -exec mv -t "$fw" {} +
rmdir "$stash"
e2fsck -fn "$img?offset=$(( root_start * 512 ))" >/dev/null
t2=$(date +%s)
log "disk image laid out in $((t2 - t1)) s"

xz -T0 -3 --block-size=32MiB "$img"
(cd "$WORK" && sha256sum debian-raspi.img.xz >debian-raspi.img.xz.sha256)
t3=$(date +%s)
log "compressed in $((t3 - t2)) s"

cat >"$WORK/info.env" <<EOF
RELEASE=$RELEASE
KERNEL_VERSION=$ver
DISK_ID=$DISK_ID
IMAGE_SHA256=$(cut -d' ' -f1 "$WORK/debian-raspi.img.xz.sha256")
IMAGE_BYTES=$(stat -c %s "$WORK/debian-raspi.img.xz")
RAW_MIB=$total_mib
ROOT_KIB=$root_kib
SECONDS_ROOT=$((t1 - t0))
SECONDS_DISK=$((t2 - t1))
SECONDS_XZ=$((t3 - t2))
EOF
touch "$WORK/done"
rm -rf "$OUT"
mv "$WORK" "$OUT"
log "done in $((t3 - t0)) s: $OUT"
echo "$OUT"
