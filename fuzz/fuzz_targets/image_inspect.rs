//! Hostile bytes into `inspect`, the top level: descriptor, ME region (or
//! IFWI in the BIOS region), disable strap, Boot Guard FIT, digests, and the
//! report's JSON and table renderings.
#![no_main]

use fortros_agent::cli::inspect::render_table;
use fortros_agent::image::inspect::inspect;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match inspect(data) {
        Ok(report) => {
            let _ = serde_json::to_string(&report);
            let _ = render_table(&report);
        }
        Err(e) => {
            let _ = e.offset();
            let _ = e.to_string();
        }
    }
});
