//! The agent config parser on arbitrary text: errors, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(c) = fortros_agent::boot::config::Config::parse(text, "fuzz.toml") {
            // A config that parsed is valid: its key decodes.
            let _ = c.org.public_key_bytes();
        }
    }
});
