//! Network bring-up for PID 1: loopback and the configured interface up,
//! then one DHCP lease with busybox `udhcpc` (the Debian kernel has no
//! `ip=dhcp`). The lease script is written by the agent itself so the
//! initramfs needs only busybox.

use std::process::Command;

/// The udhcpc hook: applies the lease with busybox `ip`.
pub const UDHCPC_SCRIPT: &str = "#!/bin/sh
case $1 in bound|renew)
  ip addr flush dev $interface
  ip addr add $ip/${mask:-24} dev $interface
  [ -n \"$router\" ] && ip route add default via ${router%% *} dev $interface ;;
esac
exit 0
";

/// Where the script is written (a tmpfs mounted by PID 1).
pub const SCRIPT_PATH: &str = "/run/fortros-udhcpc.sh";

#[derive(Debug, thiserror::Error)]
pub enum NetworkError {
    #[error("{what}: {source}")]
    Spawn {
        what: String,
        source: std::io::Error,
    },
    #[error("{what} failed ({status}): {output}")]
    Failed {
        what: String,
        status: String,
        output: String,
    },
    #[error("{path}: {source}")]
    Script {
        path: String,
        source: std::io::Error,
    },
}

/// The commands, in order, that bring `iface` up with DHCP.
pub fn commands(iface: &str) -> Vec<Vec<String>> {
    let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    vec![
        v(&["ip", "link", "set", "lo", "up"]),
        v(&["ip", "link", "set", iface, "up"]),
        // -n: exit if no lease; -q: exit after the lease; 5 tries 1 s apart.
        v(&[
            "udhcpc",
            "-i",
            iface,
            "-n",
            "-q",
            "-t",
            "5",
            "-T",
            "1",
            "-s",
            SCRIPT_PATH,
        ]),
    ]
}

fn run(busybox: &str, args: &[String]) -> Result<(), NetworkError> {
    let what = args.join(" ");
    let out = Command::new(busybox)
        .args(args)
        .output()
        .map_err(|source| NetworkError::Spawn {
            what: format!("{busybox} {what}"),
            source,
        })?;
    if out.status.success() {
        return Ok(());
    }
    let text = String::from_utf8_lossy(&out.stderr)
        .trim()
        .replace('\n', " | ");
    Err(NetworkError::Failed {
        what,
        status: out.status.to_string(),
        output: text,
    })
}

/// Brings `iface` up and takes a DHCP lease, through `busybox`.
pub fn bring_up(busybox: &str, iface: &str) -> Result<(), NetworkError> {
    std::fs::write(SCRIPT_PATH, UDHCPC_SCRIPT)
        .and_then(|()| {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(SCRIPT_PATH, std::fs::Permissions::from_mode(0o755))
        })
        .map_err(|source| NetworkError::Script {
            path: SCRIPT_PATH.into(),
            source,
        })?;
    for c in commands(iface) {
        run(busybox, &c)?;
    }
    log::info!("network: {iface} has a DHCP lease");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dhcp_is_the_last_step_and_uses_our_script() {
        let c = commands("eth0");
        assert_eq!(c[1], ["ip", "link", "set", "eth0", "up"]);
        let last = c.last().unwrap();
        assert_eq!(last[0], "udhcpc");
        assert!(last.windows(2).any(|w| w == ["-s", SCRIPT_PATH]));
        assert!(last.windows(2).any(|w| w == ["-i", "eth0"]));
    }

    #[test]
    fn a_missing_busybox_is_a_clear_error() {
        let e = run("/nonexistent/busybox", &["true".to_string()]).unwrap_err();
        assert!(e.to_string().contains("/nonexistent/busybox true"), "{e}");
    }

    #[test]
    fn a_failing_command_reports_its_status() {
        let e = run("sh", &["-c".into(), "echo nope >&2; exit 3".into()]).unwrap_err();
        let s = e.to_string();
        assert!(s.contains("nope") && s.contains("3"), "{s}");
    }
}
