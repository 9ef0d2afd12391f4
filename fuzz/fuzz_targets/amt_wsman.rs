//! The WS-MAN reply parser (and the typed readers on top) on hostile bytes,
//! plus the node's APF message parser: errors, never panics.
#![no_main]

use fortros_agent::amt::apf;
use fortros_amt::wsman;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = wsman::parse_reply(data) {
        let _ = r.return_value("Setup");
        let _ = wsman::digest_realm(&r);
        if let Ok(i) = r.instance(wsman::class::AMT_ETHERNET_PORT_SETTINGS) {
            let _ = wsman::ethernet_settings_for(&i.leaf_fields(), &wsman::Ipv4Config::Dhcp);
        }
    }
    let _ = apf::parse_all(data);
});
