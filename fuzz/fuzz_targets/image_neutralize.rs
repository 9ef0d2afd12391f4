//! Fuzzes neutralize: any bytes, any options, must give an outcome or an
//! error, never a panic. The first byte picks the options; the strip code
//! is also run straight on the bytes (without the checks that normally
//! keep hostile regions away from it), as gen 2 and as gen 3.
#![no_main]

use fortros_agent::image::neutralize::{neutralize, strip_unchecked, Mode, Options};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else {
        return;
    };
    let options = Options {
        mode: match pick % 3 {
            0 => Mode::StripAndDisable,
            1 => Mode::Disable,
            _ => Mode::Strip,
        },
        relocate: pick & 0x04 != 0,
        truncate: pick & 0x08 != 0,
        restrict_me_access: pick & 0x10 != 0,
        allow_boot_guard: pick & 0x20 != 0,
    };
    if let Ok(out) = neutralize(bytes, &options) {
        // What it returns must itself neutralize without a panic.
        let _ = neutralize(&out.image, &options);
    }
    let _ = strip_unchecked(bytes, pick & 0x40 != 0, pick & 0x04 != 0);
});
