//! The flash write journal decoder on arbitrary bytes: errors, never a
//! panic; whatever decodes re-encodes to the same bytes. Each input is also
//! tried with a valid trailing digest appended, so the fuzzer reaches the
//! structure checks behind the digest check.
#![no_main]
use fortros_agent::hw::flash::journal::JournalRecord;
use fortros_agent::hw::flash::sha256;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = JournalRecord::decode(data) {
        assert_eq!(r.encode(), data);
    }
    let mut sealed = data.to_vec();
    sealed.extend_from_slice(&sha256(data));
    if let Ok(r) = JournalRecord::decode(&sealed) {
        assert_eq!(r.encode(), sealed);
    }
});
