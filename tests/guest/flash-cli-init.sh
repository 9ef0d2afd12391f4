#!/bin/sh
# /init of the MTD CLI test node (tests/tests/agent_node.rs): loads the modules,
# exposes the SPI image (/dev/vda) as /dev/mtd0 through block2mtd, and runs
# `fortros-agent flash ...` against it: info, a write the descriptor forbids,
# the authorized write, a read back. Each result is one console line
# `NODE-RESULT key value`; then it syncs and powers off.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs tmpfs /tmp
exec >/dev/console 2>&1
while read -r ko; do
  case $ko in *block2mtd.ko) continue ;; esac
  insmod "$ko" 2>/dev/null
done < /etc/modules.load
insmod /lib/modules/*/kernel/drivers/mtd/devices/block2mtd.ko block2mtd=/dev/vda,4096
# OLD_SHA: SHA-256 of the image the host attached (the "backup digest").
. /flash/args
export FORTROS_MTD_ALLOW_RAM=1
r() { echo "NODE-RESULT $1 $2"; }
auth="--image /flash/new.bin --verified-policy-sha256 $POLICY_SHA --backup-sha256 $OLD_SHA
  --platform-ok qemu-q35 --region 0:0:0xfff --region 2:0x1000:0x7ffff --region 1:0x80000:0xfffff"

out=$(fortros-agent flash info -d mtd --json 2>&1); r info.rc $?; r info "$out"
# A typical locked descriptor: the host may write BIOS and GbE, not the ME region.
out=$(fortros-agent flash write -d mtd $auth --flmstr1 0x00a00f00 2>&1); r locked.rc $?; r locked "$out"
out=$(fortros-agent flash read -d mtd -o /tmp/a.bin 2>&1); r locked.read "$out"
out=$(fortros-agent flash write -d mtd $auth --flmstr1 0xffffffff --json 2>&1); r write.rc $?; r write "$out"
out=$(fortros-agent flash read -d mtd -o /tmp/b.bin 2>&1); r read.rc $?; r read "$out"
sync
r end ok
poweroff -f
