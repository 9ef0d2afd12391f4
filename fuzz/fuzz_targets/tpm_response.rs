//! Hostile TPM response frames: header, handle area, parameter size and
//! the PCR selection parser the client runs on TPM output.
#![no_main]

use fortros_agent::hw::tpm::frame::parse_response;
use fortros_wire::tpm::{PcrSelection, Reader};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&handles, frame)) = data.split_first() else {
        return;
    };
    if let Ok(resp) = parse_response(frame, usize::from(handles % 4)) {
        let mut r = Reader::new(resp.params);
        let _ = PcrSelection::parse(&mut r);
        let _ = r.tpm2b("fuzz");
    }
});
