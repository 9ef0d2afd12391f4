//! The modules.dep parser and load ordering on arbitrary text (cycles and
//! missing entries must be errors, not stack overflows or panics).
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(d) = fortros_agent::boot::modules::ModulesDep::parse(text, "fuzz") {
            let names: Vec<String> = d.deps.keys().take(8).cloned().collect();
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            let _ = d.load_order(&refs);
        }
    }
});
