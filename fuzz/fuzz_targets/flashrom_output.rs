//! The flashrom output readers on arbitrary text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let _ = fortros_agent::hw::flash::flashrom::explain(&text);
    let _ = fortros_agent::hw::flash::flashrom::parse_flash_size(&text);
});
