#!/bin/sh
# /init of the second kernel in the kexec handoff test: proves it runs by
# printing a marker with its command line, then powers off.
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t devtmpfs devtmpfs /dev
exec >/dev/console 2>&1
echo "NODE-RESULT kexec.target booted $(cat /proc/cmdline)"
poweroff -f
