//! The agent's `probe --json` inside the guest, against each shipped ME
//! scenario and against a node with no ME at all: it must report exactly what
//! the scenario configured, through the unmodified mei_me driver.

use fortros_e2e::{boot, node_available, root, Boot, Image, Outcome};
use fortros_meiemu::Scenario;
use serde_json::Value;

fn probe_json(o: &Outcome) -> Value {
    assert_eq!(
        o.get("agent.exit"),
        "0",
        "stderr: {}",
        o.get("agent.stderr")
    );
    serde_json::from_str(o.get("agent.stdout")).unwrap_or_else(|e| {
        panic!(
            "probe --json output is not JSON ({e}): {}",
            o.get("agent.stdout")
        )
    })
}

fn probe(name: &str, scenario: Option<&str>) -> Value {
    let o = boot(&Boot {
        name,
        image: Image::Agent,
        checks: "agent",
        append: "fortros.agent=probe,--json,--reply-timeout,3",
        scenario,
        ..Boot::default()
    });
    probe_json(&o)
}

#[test]
fn probe_reports_each_scenario_exactly() {
    if !node_available("probe_reports_each_scenario_exactly") {
        return;
    }
    let expected = [
        ("csme11-stock", "normal"),
        ("csme11-amt-provisioned", "normal"),
        ("csme11-hap", "disabled_by_hap"),
        ("csme11-soft-disabled", "soft_disabled"),
        ("csme16-normal", "normal"),
    ];
    for (file, state) in expected {
        let path = root().join(format!("qemu/scenarios/{file}.toml"));
        let text = std::fs::read_to_string(&path).unwrap();
        let s = Scenario::from_toml(&text).unwrap().resolve().unwrap();
        let j = probe(&format!("probe-{file}"), Some(&text));
        assert_eq!(j["classification"]["state"], state, "{file}: {j:#}");
        let raw: Vec<String> = s
            .scenario
            .pci
            .hfsts
            .iter()
            .map(|v| format!("0x{v:08x}"))
            .collect();
        assert_eq!(
            j["hfsts"]["raw_hex"],
            serde_json::json!(raw),
            "{file}: {j:#}"
        );
        let fw_status: Vec<u32> = s.scenario.pci.hfsts.to_vec();
        assert_eq!(
            j["hfsts"]["fw_status"],
            serde_json::json!(fw_status),
            "{file}"
        );
        let v = s.code;
        let code = &j["mkhi"]["fw_version"]["Ok"]["code"];
        assert_eq!(
            (
                &code["major"],
                &code["minor"],
                &code["hotfix"],
                &code["build"]
            ),
            (
                &serde_json::json!(v.major),
                &serde_json::json!(v.minor),
                &serde_json::json!(v.hotfix),
                &serde_json::json!(v.build)
            ),
            "{file}: {j:#}"
        );
        let amt = &s.scenario.amt;
        if amt.present {
            let info = &j["amthi"]["info"];
            let states = ["pre", "in", "post"];
            let modes = ["none", "client", "admin"];
            assert_eq!(
                info["provisioning_state"]["Ok"], states[amt.provisioning_state as usize],
                "{file}: {j:#}"
            );
            let mode = info["control_mode"]["Ok"].as_str().unwrap_or_default();
            assert!(
                mode.starts_with(modes[amt.control_mode as usize]),
                "{file}: control mode {mode}"
            );
            assert_eq!(info["uuid"]["Ok"], amt.uuid.as_str(), "{file}");
            let lan = &info["lan_wired"]["Ok"];
            assert_eq!(lan["mac"], amt.lan[0].mac.as_str(), "{file}: {j:#}");
        } else {
            assert!(j["amthi"]["info"].is_null(), "{file}: {j:#}");
        }
    }
}

#[test]
fn probe_without_an_me_says_absent() {
    if !node_available("probe_without_an_me_says_absent") {
        return;
    }
    let j = probe("probe-no-me", None);
    assert_eq!(j["classification"]["state"], "absent_or_hidden", "{j:#}");
    assert!(j["pci"].is_null(), "{j:#}");
}
