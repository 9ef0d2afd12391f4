#!/bin/sh
# /init of the QEMU test node (busybox). The checks to run are named on the
# kernel command line: fortros.test=mei,mkhi,amthi,mtd,tpm (any order; each
# runs once). Every finding is one line "RESULT <key> <value>", written to the
# console and to the virtio serial port named "report" (the host reads it from
# a file), so tests parse a clean channel without kernel messages.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev        # CONFIG_DEVTMPFS_MOUNT is off in Debian's kernel
mount -t tmpfs tmpfs /tmp

arg() { for w in $(cat /proc/cmdline); do case $w in "$1"=*) echo "${w#*=}" ;; esac; done; }

# Modules in dependency order; block2mtd only on demand (it needs its parameter).
while read -r ko; do
  case $ko in *block2mtd.ko) continue ;; esac
  insmod "$ko" 2>/tmp/insmod.err || grep -q 'File exists' /tmp/insmod.err || echo "insmod $ko: $(cat /tmp/insmod.err)"
done < /etc/modules.load

report=/dev/null
for p in /sys/class/virtio-ports/*; do
  [ "$(cat "$p/name" 2>/dev/null)" = report ] && report=/dev/$(basename "$p")
done
exec 3>"$report"
result() { echo "RESULT $*"; echo "RESULT $*" >&3; }
read -r up _ < /proc/uptime; result uptime.modules "$up"

# Waits up to $2 tenths of a second for file $1 to exist.
wait_for() { i=0; while [ ! -e "$1" ] && [ $i -lt "$2" ]; do sleep 0.1; i=$((i + 1)); done; [ -e "$1" ]; }

check_mei() {
  pci=/sys/bus/pci/devices/0000:00:16.0
  if [ ! -e $pci ]; then result mei.pci absent; return; fi
  result mei.pci "$(cat $pci/vendor):$(cat $pci/device) class=$(cat $pci/class)"
  # mei_me binds at insmod; the HBM handshake then runs asynchronously.
  if ! wait_for /sys/class/mei/mei0 50; then result mei.dev absent; return; fi
  i=0
  while [ "$(cat /sys/class/mei/mei0/dev_state 2>/dev/null)" != ENABLED ] && [ $i -lt 100 ]; do
    sleep 0.1; i=$((i + 1))
  done
  result mei.driver "$(basename "$(readlink $pci/driver)")"
  result mei.parent "$(basename "$(readlink -f /sys/class/mei/mei0/device)")"
  [ -c /dev/mei0 ] && result mei.devnode /dev/mei0
  for a in kind dev_state hbm_ver fw_ver fw_status; do
    result "mei.$a" "$(cat /sys/class/mei/mei0/$a 2>&1 | xargs)"
  done
  result mei.bus "$(ls /sys/bus/mei/devices/ 2>/dev/null | xargs)"
  # the same registers through raw PCI config space (HFSTS1-6)
  for off in 64 72 96 100 104 108; do
    v=$(dd if=$pci/config bs=1 skip=$off count=4 2>/dev/null | od -An -tx4 | xargs)
    result "mei.config.$(printf %x $off)" "$v"
  done
}

check_mtd() {
  dev=$(arg fortros.spi); dev=${dev:-/dev/vda}
  insmod /lib/modules/*/kernel/drivers/mtd/devices/block2mtd.ko block2mtd="$dev,4096"
  if [ ! -c /dev/mtd0 ]; then result mtd.dev absent; return; fi
  result mtd.dev /dev/mtd0
  result mtd.size "$(cat /sys/class/mtd/mtd0/size)"
  result mtd.erasesize "$(cat /sys/class/mtd/mtd0/erasesize)"
  result mtd.head "$(dd if=/dev/mtd0 bs=32 count=1 2>/dev/null | od -An -tx1 | xargs | tr -d ' ')"
  marker=$(arg fortros.mtdmarker)
  if [ -n "$marker" ]; then
    # block2mtd accepts writes without an erase (real NOR would not); the host
    # checks the last erase block of its image file after power-off.
    last=$(( $(cat /sys/class/mtd/mtd0/size) / 4096 - 1 ))
    printf '%s' "$marker" | dd of=/dev/mtd0 bs=4096 seek=$last conv=sync 2>/dev/null
    sync
    result mtd.wrote "$marker"
  fi
}

check_tpm() {
  for d in tpm0 tpmrm0; do [ -c /dev/$d ] && result "tpm.$d" "/dev/$d"; done
  result tpm.version "$(cat /sys/class/tpm/tpm0/tpm_version_major 2>/dev/null)"
  # TPM2_GetRandom(8): one write and one read on the same open file
  printf '\200\001\000\000\000\014\000\000\001\173\000\010' > /tmp/getrandom
  exec 4<>/dev/tpmrm0
  cat /tmp/getrandom >&4
  r=$(dd bs=4096 count=1 <&4 2>/dev/null | od -An -tx1 | xargs | tr -d ' ')
  exec 4<&-
  result tpm.getrandom "$r"
}

# Runs the agent (built in with build-initramfs --agent) with the arguments of
# fortros.agent= (comma-separated); its output goes to the report as single
# lines (pretty JSON stays valid JSON with its newlines removed).
check_agent() {
  /bin/fortros-agent $(arg fortros.agent | tr , ' ') > /tmp/agent.out 2> /tmp/agent.err
  result agent.exit $?
  result agent.stdout "$(tr -d '\n' < /tmp/agent.out)"
  result agent.stderr "$(tr '\n' ' ' < /tmp/agent.err)"
}

# The static test client prints RESULT lines itself; copy them to the report port.
client() { /bin/meiclient "$@" > /tmp/mc.out 2>&1; cat /tmp/mc.out; grep '^RESULT' /tmp/mc.out >&3; }

# DHCP on the first NIC (the kernel has no ip=dhcp); user-mode networking
# hands out 10.0.2.15 and maps the host's loopback to 10.0.2.2.
check_net() {
  ip link set lo up
  if ! ip link set eth0 up 2>/dev/null; then result net.eth0 absent; return; fi
  udhcpc -i eth0 -n -q -t 5 -T 1 -s /etc/udhcpc.script > /tmp/udhcpc.log 2>&1
  result net.ipv4 "$(ip -4 addr show eth0 | awk '/inet /{print $2}')"
  result net.route "$(ip route | awk '/^default/{print $3}')"
}

# A node that an outside reset (AMT power control) reboots: the first boot marks
# the scratch disk (fortros.scratch, default /dev/vda) and waits to be reset; the
# boot after the reset finds the mark and goes on to power off.
check_reset() {
  dev=$(arg fortros.scratch); dev=${dev:-/dev/vda}
  if [ "$(dd if="$dev" bs=1 count=1 2>/dev/null | od -An -tx1 | xargs)" = 42 ]; then
    result boot second
    return
  fi
  printf 'B' | dd of="$dev" bs=1 count=1 conv=notrunc 2>/dev/null
  sync
  result boot first
  sleep 600
}

for t in $(arg fortros.test | tr , ' '); do
  case $t in
    mei) check_mei ;;
    mkhi) client mkhi ;;
    amthi) client amthi ;;
    meiclient) client $(arg fortros.meiclient | tr , ' ') ;;
    # fortros.agent=probe,--json runs "/bin/fortros-agent probe --json"
    agent) check_agent ;;
    mtd) check_mtd ;;
    tpm) check_tpm ;;
    net) check_net ;;
    reset) check_reset ;;
    shell) setsid cttyhack sh ;;
    *) result unknown-check "$t" ;;
  esac
done
# kernel messages about the MEI: tests of error injection check the driver's reaction
dmesg | grep -i mei | grep -v -i 'command line' | while read -r l; do result kmsg "$l"; done
read -r up _ < /proc/uptime; result uptime.end "$up"
result end ok
exec 3>&-
sync
poweroff -f
