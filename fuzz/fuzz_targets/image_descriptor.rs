//! Hostile bytes into the flash descriptor parser and everything derived
//! from a parsed descriptor (region bounds, disable strap, digests).
#![no_main]

use fortros_agent::image::descriptor::Descriptor;
use fortros_agent::image::{digest, disable_bit};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(d) = Descriptor::parse(data) {
        let _ = d.check_fits(data.len());
        let _ = disable_bit::read(&d, None);
        let _ = disable_bit::read(&d, Some(disable_bit::MeHint::Csme11));
        let _ = digest::digest(data, &d.regions);
        let _ = serde_json::to_string(&d);
    }
});
