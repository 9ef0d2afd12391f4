//! The /proc/mtd parser on arbitrary text.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(e) = fortros_agent::hw::flash::mtd::parse_proc_mtd(text) {
            let _ = fortros_agent::hw::flash::mtd::choose(&e);
        }
    }
});
