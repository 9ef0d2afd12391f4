//! The emulated ME under the guest's real `mei_me` driver.

use fortros_e2e::{boot, node_available, Boot, Image};
use fortros_meiemu::clients::ClientKind;
use fortros_meiemu::scenario::FaultAction;
use fortros_meiemu::Event;

/// A CSME 16 part (Alder Lake-P device ID) with distinctive registers.
const CSME16: &str = r#"
name = "csme16"
[pci]
device_id = 0x51E0
hfsts = [0x00000255, 0x89110136, 0x00000020, 0x00004000, 0x00000001, 0x40000000]
[firmware]
code = "16.1.25.2148"
recovery = "16.1.25.2000"
platform = 0
[mkhi]
features_capable = 0x01E3D14D
features_enabled = 0x01A3D14D
"#;

#[test]
fn mei_me_binds_and_sysfs_shows_the_scenario() {
    if !node_available("mei_me_binds_and_sysfs_shows_the_scenario") {
        return;
    }
    let o = boot(&Boot {
        name: "mei-bind",
        checks: "mei",
        scenario: Some(CSME16),
        ..Boot::default()
    });
    assert_eq!(o.get("mei.pci"), "0x8086:0x51e0 class=0x078000");
    assert_eq!(o.get("mei.driver"), "mei_me");
    assert_eq!(o.get("mei.parent"), "0000:00:16.0");
    assert_eq!(o.get("mei.devnode"), "/dev/mei0");
    assert_eq!(o.get("mei.dev_state"), "ENABLED");
    assert_eq!(
        o.get("mei.fw_status"),
        "00000255 89110136 00000020 00004000 00000001 40000000"
    );
    // mei_me asks the MKHI fix client for the version itself at probe
    assert_eq!(
        o.get("mei.fw_ver"),
        "0:16.1.25.2148 0:16.1.25.2000 0:16.1.25.2148"
    );
    assert_eq!(o.get("mei.config.40"), "00000255");
    assert_eq!(o.get("mei.config.6c"), "40000000");
    assert!(o
        .get("mei.bus")
        .contains("8e6a6715-9abc-4043-88ef-9e39c6f63e0f"));
    assert!(o.events.iter().any(|e| matches!(
        e,
        Event::Request { client: ClientKind::MkhiFix, bytes } if bytes.starts_with(&[0xFF, 0x02])
    )));
    assert!(
        !o.events
            .iter()
            .any(|e| matches!(e, Event::ProtocolError(_))),
        "{:?}",
        o.events
    );
}

#[test]
fn mkhi_and_amthi_from_the_guest_return_the_scenario() {
    if !node_available("mkhi_and_amthi_from_the_guest_return_the_scenario") {
        return;
    }
    let scenario = format!(
        "{CSME16}\n[amt]\nprovisioning_state = 2\ncontrol_mode = 1\n\
         uuid = \"03000200-0400-0500-0006-000700080009\"\n\
         lan = [{{ mac = \"00:1b:21:aa:bb:cc\", link_up = true }}]\n\
         code_versions = [[\"AMT\", \"16.1.25\"], [\"Build Number\", \"2148\"]]\n"
    );
    let o = boot(&Boot {
        name: "mei-clients",
        image: Image::MeiClient,
        checks: "mkhi,amthi",
        scenario: Some(&scenario),
        ..Boot::default()
    });
    assert_eq!(o.get("mkhi.fw_version.code"), "16.1.25.2148");
    assert_eq!(o.get("mkhi.fw_version.recovery"), "16.1.25.2000");
    assert_eq!(o.get("mkhi.features_capable"), "0x01e3d14d");
    assert_eq!(o.get("mkhi.features_enabled"), "0x01a3d14d");
    assert_eq!(o.get("amthi.provisioning_state"), "2");
    assert_eq!(o.get("amthi.control_mode"), "1");
    assert_eq!(o.get("amthi.uuid"), "03000200-0400-0500-0006-000700080009");
    assert_eq!(o.get("amthi.lan0.mac"), "00:1b:21:aa:bb:cc");
    assert_eq!(o.get("amthi.version.AMT"), "16.1.25");
    assert_eq!(o.get("amthi.version.Build_Number"), "2148");
}

#[test]
fn amt_absent_connect_fails_with_enotty() {
    if !node_available("amt_absent_connect_fails_with_enotty") {
        return;
    }
    let o = boot(&Boot {
        name: "mei-no-amt",
        image: Image::MeiClient,
        checks: "mei,amthi",
        scenario: Some("[amt]\npresent = false"),
        ..Boot::default()
    });
    assert!(!o.get("mei.bus").contains("12f80028"));
    assert!(
        o.get("amthi.error").starts_with("connect ENOTTY"),
        "{}",
        o.get("amthi.error")
    );
}

#[test]
fn no_me_device_at_all() {
    if !node_available("no_me_device_at_all") {
        return;
    }
    let o = boot(&Boot {
        name: "mei-none",
        checks: "mei",
        ..Boot::default()
    });
    assert_eq!(o.get("mei.pci"), "absent");
}

#[test]
fn injected_faults_end_in_clear_errors() {
    if !node_available("injected_faults_end_in_clear_errors") {
        return;
    }
    // The kernel's own FW-version query times out; user-space MKHI gets a
    // reply whose header does not match; AMTHI answers "not ready".
    let scenario = r#"
[[faults]]
client = "mkhi_fix"
action = "timeout"
[[faults]]
client = "mkhi"
action = "bad_header"
[[faults]]
client = "amthi"
action = "status"
status = 2
"#;
    let o = boot(&Boot {
        name: "mei-faults",
        image: Image::MeiClient,
        checks: "mei,mkhi,amthi",
        scenario: Some(scenario),
        ..Boot::default()
    });
    // the driver still comes up, but without a firmware version
    assert_eq!(o.get("mei.dev_state"), "ENABLED");
    assert_eq!(o.get("mei.fw_ver"), "0:0.0.0.0 0:0.0.0.0 0:0.0.0.0");
    // mei_me's bus fix-up gives up after its 500 ms receive timeout (-ETIME)
    assert!(
        o.kmsg().contains("Could not read FW version ret = -62"),
        "kmsg: {}",
        o.kmsg()
    );
    assert!(
        o.get("mkhi.error").contains("does not match"),
        "{}",
        o.get("mkhi.error")
    );
    assert_eq!(o.get("amthi.error"), "status 2");
    let faults: Vec<_> = o
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Fault { client, action } => Some((*client, *action)),
            _ => None,
        })
        .collect();
    assert!(faults.contains(&(ClientKind::MkhiFix, FaultAction::Timeout)));
    assert!(faults.contains(&(ClientKind::Mkhi, FaultAction::BadHeader)));
}

#[test]
fn me_reset_and_reply_timeout() {
    if !node_available("me_reset_and_reply_timeout") {
        return;
    }
    // MKHI requests from user space are swallowed; the first AMTHI request
    // makes the ME reset itself.
    let scenario = r#"
[[faults]]
client = "mkhi"
action = "timeout"
[[faults]]
client = "amthi"
action = "reset"
times = 1
"#;
    let o = boot(&Boot {
        name: "mei-reset",
        image: Image::MeiClient,
        checks: "mkhi,amthi,mei",
        scenario: Some(scenario),
        ..Boot::default()
    });
    assert_eq!(o.get("mkhi.error"), "timeout after 3000 ms");
    let amthi = o.get("amthi.error");
    assert!(
        amthi.contains("read") || amthi.contains("timeout") || amthi.contains("write"),
        "{amthi}"
    );
    assert!(o.events.contains(&Event::MeReset));
    // the driver noticed, reset the link, and the device is usable again
    assert!(
        o.kmsg().contains("FW not ready: resetting"),
        "kmsg: {}",
        o.kmsg()
    );
    assert_eq!(o.get("mei.dev_state"), "ENABLED");
    let link_resets = o.events.iter().filter(|e| **e == Event::LinkReset).count();
    assert!(link_resets >= 2, "{:?}", o.events);
}
