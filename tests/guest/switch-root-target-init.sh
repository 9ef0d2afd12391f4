#!/bin/sh
# /sbin/init on the OS disk of the switch_root handoff test: proves it runs
# as PID 1 on the OS root, with the agent's /proc moved along, then powers off.
export PATH=/bin
if [ -r /proc/cmdline ]; then proc=moved; else proc=missing; fi
root=$(stat -f -c %T / 2>/dev/null)
echo "NODE-RESULT switch_root.target booted pid=$$ fs=$root proc=$proc"
poweroff -f
