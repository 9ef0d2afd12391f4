//! The AMT HTTP response parser and the Digest challenge parser on hostile
//! bytes: errors, never panics, never more than the limits.
#![no_main]

use fortros_amt::{digest, http};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = http::parse_response(data) {
        assert!(r.body.len() <= http::MAX_BODY);
        for h in r.headers_named("WWW-Authenticate") {
            let _ = digest::parse_challenge(h);
        }
    }
    if let Ok(s) = std::str::from_utf8(data) {
        if let Ok(c) = digest::parse_challenge(s) {
            let _ = digest::authorization_header("u", "p", &c, "POST", "/wsman", "00000001", "c");
        }
    }
});
