#!/usr/bin/env bash
# PROTOTYPE (not wired into cargo test): boots the x86_64 pinetboot server VM built by
# tests/realos/server-vm/build.sh (kernel nfsd + dnsmasq under systemd, pinetboot.service
# applying /etc/pinetboot/pinetboot.yaml at boot), then the Debian arm64 Raspberry Pi client
# of tests/real_boot.rs against it, and prints how long each step took.
#
# The lab (all inside one network namespace this script creates and deletes):
#   netns pnbsv-<pid>: bridge br0 10.99.0.1/24 + a "router" dnsmasq (DHCP pool
#   10.99.0.100-200, as tests/netsupport/netlab.rs); tap tapsrv0 -> server VM eth0
#   (10.99.0.2, static); tap tapcli0 -> client VM (MAC dc:a6:32:5e:ed:01, DHCP).
# Server: qemu-system-x86_64 -M q35 -cpu max (TCG), virtio-blk root=/dev/vda from disk.img with
#   snapshot=on (disk.img is never written: every run is a first boot), virtio-net.
# Client: the kernel and initrd fetched over TFTP from the VM's dnsmasq (curl tftp://, the
#   names config.txt gives), cmdline.txt as served + console=ttyAMA0, qemu-system-aarch64
#   -M virt -cpu cortex-a72 -m 1024 -smp 2 (tests/realos/vm.rs's command line).
# Consoles: each VM's serial console is qemu's stdio: stdout -> WORK/run/<vm>.console, stdin
#   <- a fifo held open by a `sleep` (so the script can type into it).
# Only processes started here are stopped, by PID (trap on exit).
#
# Usage: bash tests/realos/server-vm/run.sh [--server-only]
# Env:   PINETBOOT_SERVERVM_WORK (default /var/tmp/pinetboot-server-vm), DISK (WORK/disk.img),
#        RUN_DIR (WORK/run), SERVER_APPEND_EXTRA (more server kernel parameters; default
#        mitigations=off, the fastest under TCG), TFTP_SERIAL=1 (kernel, then initrd), SERVER_SMP (1),
#        SERVER_MEM (2048), CLIENT_SMP (2)
# Output: WORK/run/results.env (the times, in seconds), consoles, server-report.txt.
set -euo pipefail

WORK=${PINETBOOT_SERVERVM_WORK:-/var/tmp/pinetboot-server-vm}
DISK=${DISK:-$WORK/disk.img}
R=${RUN_DIR:-$WORK/run}
NS=pnbsv-$$
SERVER_IP=10.99.0.2
SERIAL=0c4c21e5
CLIENT=raspi1
MAC=dc:a6:32:5e:ed:01
SERVER_SMP=${SERVER_SMP:-1}
SERVER_MEM=${SERVER_MEM:-2048}
CLIENT_SMP=${CLIENT_SMP:-2}
SERVER_ONLY=0
[[ ${1:-} == --server-only ]] && SERVER_ONLY=1

T0=$(date +%s.%N)
since() { printf '%.1f' "$(echo "$(date +%s.%N) - ${1:-$T0}" | bc)"; }
log() { printf '[server-vm run +%6ss] %s\n' "$(since)" "$*" >&2; }
die() { log "error: $*"; exit 1; }
[[ $(id -u) == 0 ]] || die "needs root"
[[ -s $DISK ]] || die "no $DISK: run build.sh"
for f in vmlinuz initrd.img; do [[ -s $WORK/$f ]] || die "no $WORK/$f: run build.sh"; done
command -v qemu-system-x86_64 >/dev/null || die "apt-get install --no-install-recommends qemu-system-x86"
command -v qemu-system-aarch64 >/dev/null || die "apt-get install --no-install-recommends qemu-system-arm"

rm -rf "$R"
mkdir -p "$R"
RESULTS=$R/results.env
: >"$RESULTS"
result() { echo "$1=$2" >>"$RESULTS"; log "$1=$2"; }

PIDS=()
cleanup() {
  local rc=$?
  set +e
  for pid in "${PIDS[@]}"; do
    kill "$pid" 2>/dev/null
  done
  sleep 1
  for pid in "${PIDS[@]}"; do
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid" 2>/dev/null
  done
  wait 2>/dev/null
  ip netns del "$NS" 2>/dev/null
  log "cleaned up (exit $rc); logs in $R"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# --- the lab -------------------------------------------------------------------------------
ip netns add "$NS"
ip -n "$NS" link set lo up
ip -n "$NS" link add br0 type bridge
ip -n "$NS" addr add 10.99.0.1/24 dev br0
ip -n "$NS" link set br0 up
cat >"$R/router.conf" <<EOF
port=0
interface=br0
bind-interfaces
dhcp-range=10.99.0.100,10.99.0.200,255.255.255.0,1h
dhcp-option=option:router,10.99.0.1
no-ping
log-dhcp
EOF
ip netns exec "$NS" dnsmasq --keep-in-foreground --conf-file="$R/router.conf" \
  --pid-file="$R/router.pid" --log-facility="$R/router.log" --dhcp-leasefile="$R/router.leases" &
PIDS+=($!)

# Starts a VM: $1 name, $2 tap, then the qemu command (argv). Console: stdout -> $R/$1.console,
# stdin <- fifo $R/$1.in (held open by a sleep).
start_vm() {
  local name=$1 tap=$2
  shift 2
  ip -n "$NS" tuntap add dev "$tap" mode tap
  ip -n "$NS" link set "$tap" master br0 up
  mkfifo "$R/$name.in"
  sleep 86400 >"$R/$name.in" &
  PIDS+=($!)
  ip netns exec "$NS" "$@" <"$R/$name.in" >"$R/$name.console" 2>"$R/$name.stderr" &
  local pid=$!
  PIDS+=($pid)
  echo "$pid" >"$R/$name.pid"
}
# Types a line on a VM's console.
type_line() { printf '%s\n' "$2" >"$R/$1.in"; }
# Waits (bounded, $3 s) until $R/$1.console contains fixed string $2; fails with the tail.
wait_console() {
  local name=$1 needle=$2 timeout=$3 start
  start=$(date +%s)
  until grep -qF -- "$needle" "$R/$name.console" 2>/dev/null; do
    if ! kill -0 "$(cat "$R/$name.pid")" 2>/dev/null; then
      tail -n 40 "$R/$name.console" >&2; die "$name: qemu exited waiting for '$needle'"
    fi
    if (( $(date +%s) - start > timeout )); then
      tail -n 40 "$R/$name.console" >&2; die "$name: no '$needle' after ${timeout}s"
    fi
    sleep 0.5
  done
}
# Polls a command in the lab namespace until it succeeds (bounded, $1 s).
poll_ns() {
  local timeout=$1 start
  shift
  start=$(date +%s)
  until ip netns exec "$NS" "$@" >/dev/null 2>&1; do
    (( $(date +%s) - start > timeout )) && return 1
    sleep 1
  done
}

# --- the server VM -------------------------------------------------------------------------
log "starting the server VM (x86_64, TCG, -smp $SERVER_SMP, -m $SERVER_MEM)"
TS=$(date +%s.%N)
start_vm server tapsrv0 qemu-system-x86_64 -M q35 -cpu max -m "$SERVER_MEM" -smp "$SERVER_SMP" \
  -nographic -monitor none -serial stdio -no-reboot \
  -kernel "$WORK/vmlinuz" -initrd "$WORK/initrd.img" \
  -append "root=/dev/vda rw console=ttyS0 net.ifnames=0 quiet systemd.show_status=1 ${SERVER_APPEND_EXTRA-mitigations=off}" \
  -drive "file=$DISK,format=raw,if=virtio,snapshot=on,cache=unsafe" \
  -netdev tap,id=n0,ifname=tapsrv0,script=no,downscript=no \
  -device virtio-net-pci,netdev=n0,mac=52:54:00:99:00:02

wait_console server "Welcome to" 300
result SERVER_SYSTEMD_S "$(since "$TS")"
# eth0 up and rpcbind answering (no ping on the host: rpcinfo is the probe).
poll_ns 300 rpcinfo -p "$SERVER_IP" || die "rpcbind on the server never answered"
result SERVER_RPCBIND_S "$(since "$TS")"
# nfsd registered with rpcbind (nfs-server.service ran rpc.nfsd): RPC program 100003.
poll_ns 300 sh -c "rpcinfo -p $SERVER_IP | grep -q ' 100003 '" || die "no nfs in rpcinfo -p"
result SERVER_NFSD_RPC_S "$(since "$TS")"
# pinetboot.service's apply ran exportfs -ra: the client's export is visible.
poll_ns 900 sh -c "showmount -e $SERVER_IP | grep -q '^/nfs/$CLIENT '" || {
  tail -n 60 "$R/server.console" >&2; die "/nfs/$CLIENT never exported"; }
result SERVER_EXPORTED_S "$(since "$TS")"
wait_console server "PNB-REPORT-END" 300
result SERVER_REPORT_S "$(since "$TS")"
sed -n '/PNB-REPORT-BEGIN/,/PNB-REPORT-END/p' "$R/server.console" | tr -d '\r' >"$R/server-report.txt"
cat "$R/server-report.txt" >&2
ip netns exec "$NS" rpcinfo -p "$SERVER_IP" >"$R/rpcinfo.txt"
ip netns exec "$NS" showmount -e "$SERVER_IP" >"$R/showmount.txt"
cat "$R/rpcinfo.txt" "$R/showmount.txt" >&2

# --- TFTP from the VM's dnsmasq (what the Pi's bootloader fetches after proxy-DHCP) ---------
tftp() { ip netns exec "$NS" curl -sS --fail --tftp-blksize 1468 -o "$R/boot/$1" "tftp://$SERVER_IP/$SERIAL/$1"; }
mkdir -p "$R/boot"
TT=$(date +%s.%N)
tftp config.txt
tftp cmdline.txt
kernel=$(sed -n 's/^kernel=//p' "$R/boot/config.txt" | tail -n1)
initrd=$(sed -n 's/^initramfs \([^ ]*\).*/\1/p' "$R/boot/config.txt" | tail -n1)
[[ -n $kernel && -n $initrd ]] || die "config.txt names no kernel/initramfs"
# The two big files in parallel: TFTP is lock-step (one 1468-byte block per round trip) and
# each round trip goes through the TCG guest, so two streams take about the time of one.
TK=$(date +%s.%N)
if [[ ${TFTP_SERIAL:-0} == 1 ]]; then
  tftp "$kernel"; result TFTP_KERNEL_S "$(since "$TK")"
  TK=$(date +%s.%N); tftp "$initrd"; result TFTP_INITRD_S "$(since "$TK")"
else
  tftp "$kernel" & k=$!
  tftp "$initrd" & i=$!
  wait "$k" || die "TFTP $kernel failed"
  wait "$i" || die "TFTP $initrd failed"
fi
result TFTP_S "$(since "$TT")"
cmdline=$(tr -d '\n' <"$R/boot/cmdline.txt")
log "cmdline.txt: $cmdline"
[[ $cmdline == *"nfsroot=$SERVER_IP:/nfs/$CLIENT"* ]] || die "cmdline.txt does not boot from NFS"

if (( SERVER_ONLY )); then
  type_line server "systemctl poweroff"
  wait_console server "reboot: Power down" 120
  result SERVER_TOTAL_S "$(since "$TS")"
  exit 0
fi

# --- the client VM -------------------------------------------------------------------------
log "starting the client VM (aarch64, TCG, -smp $CLIENT_SMP) while the server VM runs"
TC=$(date +%s.%N)
start_vm client tapcli0 qemu-system-aarch64 -M virt -cpu cortex-a72 -m 1024 -smp "$CLIENT_SMP" \
  -nographic -monitor none -serial stdio -no-reboot \
  -kernel "$R/boot/$kernel" -initrd "$R/boot/$initrd" -append "$cmdline console=ttyAMA0" \
  -netdev tap,id=n0,ifname=tapcli0,script=no,downscript=no \
  -device "virtio-net-pci,netdev=n0,mac=$MAC"
wait_console client "Welcome to " 300
result CLIENT_NFS_ROOT_S "$(since "$TC")"
wait_console client " login: " 600
result CLIENT_LOGIN_S "$(since "$TC")"
type_line client "root"
sleep 5
type_line client "dmesg -n 1; stty cols 300; findmnt -n -o SOURCE,FSTYPE,OPTIONS / | sed 's/^/ROOTIS /'; hostname | sed 's/^/HOSTIS /'"
wait_console client "ROOTIS $SERVER_IP:/nfs/$CLIENT nfs" 120
grep -a 'ROOTIS \|HOSTIS ' "$R/client.console" | tr -d '\r' | grep -v findmnt >&2 || true
TW=$(date +%s.%N)
type_line client "timeout 300 systemctl is-system-running --wait | sed 's/^/STATEIS /'; systemctl --failed --no-legend --plain | sed 's/^/FAILEDUNIT /'; echo SETT''LED"
wait_console client "SETTLED" 400
result CLIENT_SETTLED_S "$(since "$TC")"
grep -a 'STATEIS \|FAILEDUNIT ' "$R/client.console" | tr -d '\r' | grep -v sed >&2 || true
# Write-through: a file written by the client shows up in the client root on the server.
token=written-by-the-client-$$
type_line client "echo $token > /root/pnb-server-vm.txt && sync && cp -p /etc/hostname /root/cp-p-test && echo CPP''_OK"
wait_console client "CPP_OK" 60
type_line server "cat /nfs/$CLIENT/root/pnb-server-vm.txt | sed 's/^/ONSERVER /'"
wait_console server "ONSERVER $token" 60
log "write-through ok: the server VM reads '$token' in /nfs/$CLIENT/root"

TP=$(date +%s.%N)
type_line client "systemctl poweroff"
wait_console client "reboot: Power down" 300
result CLIENT_POWEROFF_S "$(since "$TP")"
type_line server "systemctl poweroff"
wait_console server "reboot: Power down" 120
result WHOLE_RUN_S "$(since)"
