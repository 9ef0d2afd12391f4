//! Every shipped scenario (qemu/scenarios/*.toml) through the guest's mei_me:
//! sysfs shows exactly the scenario's HFSTS and firmware version, and the AMT
//! client exists exactly when the scenario says so.

use fortros_e2e::{boot, node_available, root, Boot, Image};
use fortros_meiemu::Scenario;

#[test]
fn shipped_scenarios_reach_sysfs_unchanged() {
    if !node_available("shipped_scenarios_reach_sysfs_unchanged") {
        return;
    }
    let dir = root().join("qemu/scenarios");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().and_then(|e| e.to_str()) == Some("toml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "scenarios in {}", dir.display());
    for path in files {
        let text = std::fs::read_to_string(&path).unwrap();
        let s = Scenario::from_toml(&text).unwrap().resolve().unwrap();
        let name = format!("scenario-{}", s.scenario.name);
        let o = boot(&Boot {
            name: &name,
            image: Image::MeiClient,
            checks: "mei,amthi",
            scenario: Some(&text),
            ..Boot::default()
        });
        let what = path.display();
        let hfsts: Vec<String> = s
            .scenario
            .pci
            .hfsts
            .iter()
            .map(|v| format!("{v:08X}")) // sysfs prints %08X
            .collect();
        assert_eq!(o.get("mei.fw_status"), hfsts.join(" "), "{what}");
        assert_eq!(
            o.get("mei.pci"),
            format!("0x8086:0x{:04x} class=0x078000", s.scenario.pci.device_id),
            "{what}"
        );
        let v = s.code;
        let line = format!(
            "{}:{}.{}.{}.{}",
            s.scenario.firmware.platform, v.major, v.minor, v.hotfix, v.build
        );
        assert!(
            o.get("mei.fw_ver").starts_with(&line),
            "{what}: fw_ver {} vs {line}",
            o.get("mei.fw_ver")
        );
        if s.scenario.amt.present {
            assert_eq!(
                o.get("amthi.provisioning_state"),
                s.scenario.amt.provisioning_state.to_string(),
                "{what}"
            );
            assert_eq!(
                o.get("amthi.control_mode"),
                s.scenario.amt.control_mode.to_string(),
                "{what}"
            );
        } else {
            assert!(o.get("amthi.error").contains("ENOTTY"), "{what}");
        }
    }
}
