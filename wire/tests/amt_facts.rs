//! AMT facts carried in a report extension (docs/report-format.md).

use fortros_wire::report::{AmtCheck, AmtFacts, EXTENSION_AMT};
use fortros_wire::{Bytes, Report};

#[test]
fn amt_facts_travel_as_an_extension() {
    let f = AmtFacts {
        amt_version: Some("16.1.25".into()),
        sku: Some(16392),
        provisioning_state: Some(2),
        control_mode: Some(1),
        wired_mac: Some(Bytes(vec![0, 0x1b, 0x21, 1, 2, 3])),
        link_up: Some(true),
        preconditions: vec![AmtCheck {
            name: "corporate_sku".into(),
            verdict: "pass".into(),
            detail: "firmware SKU 3: Corporate".into(),
        }],
        result: "provisioned".into(),
        steps: vec!["Setup: ReturnValue 0".into()],
        password_source: Some("node-generated".into()),
        sealed_password: Some(Bytes(vec![1; 60])),
    };
    let ext = f.to_extension().unwrap();
    assert_eq!(ext.tag, EXTENSION_AMT);
    let mut r = fortros_wire::testing::sample_report(&[], &[]);
    assert!(AmtFacts::from_report(&r).is_none());
    r.extensions.push(ext);
    // Through the report's own encoding and back.
    let back = Report::from_bytes(&r.to_bytes().unwrap()).unwrap();
    assert_eq!(AmtFacts::from_report(&back).unwrap().unwrap(), f);
    // A damaged blob is an error, not a panic.
    r.extensions[0].data = Bytes(vec![0xFF; 3]);
    assert!(AmtFacts::from_report(&r).unwrap().is_err());
}
