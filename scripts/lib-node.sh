# The demo node's pieces, shared by scripts/demo and scripts/bench-enroll.
# Source after lib.sh; do not run it.

# node_org_start DIR [tls]: builds fortros-org and fortros-synth, makes a fresh org
# in DIR/org (auto-approval) serving on a free loopback port. Sets org (the
# binary), synth, port, org_pid, public_key; the caller kills org_pid.
# With "tls": https with `init --tls-self-signed 10.0.2.2` (the host as the
# guest sees it); sets fingerprint (its SHA-256), which node_initramfs pins.
node_org_start() {
  local d=$1 tls=${2:-} host_target=$FORTROS_WORK/target-host
  CARGO_TARGET_DIR=$host_target cargo build --quiet --locked -p fortros-org --bin fortros-org \
    -p fortros-testkit --bin fortros-synth
  org=$host_target/debug/fortros-org
  synth=$host_target/debug/fortros-synth
  mkdir -p "$d/org"
  scheme=http fingerprint=''
  if [ "$tls" = tls ]; then
    scheme=https
    "$org" --dir "$d/org" init --tls-self-signed 10.0.2.2 >"$d/org-init.txt"
    fingerprint=$(sed -n 's/^TLS certificate SHA-256: \([0-9a-f]\{64\}\).*/\1/p' "$d/org-init.txt")
    [ -n "$fingerprint" ] || die "fortros-org init printed no TLS certificate fingerprint ($d/org-init.txt)"
  else
    "$org" --dir "$d/org" init >/dev/null
  fi
  sed -i 's/auto_approve = false/auto_approve = true/' "$d/org/org.toml"
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  "$org" --dir "$d/org" serve --listen "127.0.0.1:$port" >"$d/org.log" 2>&1 &
  org_pid=$!
  public_key=$(tr -d '[:space:]' < "$d/org/org.pub")
}

# node_initramfs DIR: DIR/initrd.cpio.gz with the static agent as /init, an
# agent.toml enrolling with the org of node_org_start (port, public_key),
# and a second kernel + initramfs to kexec into (it prints
# "NODE-RESULT kexec.target booted ..." and powers off).
node_initramfs() {
  local d=$1 kernel=$FORTROS_WORK/kernel/current kver
  kver=$(ls "$kernel/lib/modules")
  "$FORTROS_ROOT/scripts/build-initramfs" "$d/target.cpio.gz" --modules crc16 \
    --init "$FORTROS_ROOT/tests/guest/kexec-target-init.sh"
  cat > "$d/agent.toml" <<TOML
[org]
url = "$scheme://10.0.2.2:$port"
public_key = "$public_key"
$([ -z "$fingerprint" ] || echo "org_cert_sha256 = \"$fingerprint\"")

[flash]
device = "mtd"

[network]
interface = "eth0"

[handoff]
method = "kexec"
kernel = "/boot/vmlinuz"
initrd = "/boot/initrd.img"
cmdline = "console=ttyS0 panic=-1 quiet loglevel=4 no_timer_check fortros.handoff=demo"

TOML
  cat "$FORTROS_ROOT/initramfs/node-modules.toml" >> "$d/agent.toml"
  "$FORTROS_ROOT/scripts/build-initramfs" "$d/initrd.cpio.gz" --agent-init \
    --file "$d/agent.toml" /etc/fortros/agent.toml \
    --file "$kernel/boot/vmlinuz-$kver" /boot/vmlinuz \
    --file "$d/target.cpio.gz" /boot/initrd.img
}
