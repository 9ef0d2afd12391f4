//! Fuzzes the ME-region parser: any bytes must give a value or an error,
//! never a panic.
#![no_main]

use fortros_agent::image::me::{find_ifwi_in_bios, parse_me_region};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(region) = parse_me_region(data) {
        let _ = format!("{region:?}");
    }
    if let Some(at) = find_ifwi_in_bios(data) {
        let _ = parse_me_region(&data[at..]);
    }
});
