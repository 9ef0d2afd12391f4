//! A hostile TPM behind the NV code: every response the journal and the
//! policy serial read (NV_ReadPublic, GetCapability, NV_Read) comes from
//! the fuzzer, split into frames. Errors, never a panic.
#![no_main]

use fortros_agent::hw::flash::journal::Journal;
use fortros_agent::hw::flash::nv_journal::NvJournal;
use fortros_agent::hw::tpm::nv::{load_policy_serial, NvSlot};
use fortros_agent::hw::tpm::transport::{Transport, TransportError};
use fortros_agent::hw::tpm::Tpm;
use libfuzzer_sys::fuzz_target;

/// Answers each command with the next frame: u16 length, then that many
/// bytes; an exhausted input answers with an empty frame.
struct Scripted<'a> {
    data: &'a [u8],
}

impl Transport for Scripted<'_> {
    fn transact(&mut self, _command: &[u8]) -> Result<Vec<u8>, TransportError> {
        let (n, rest) = match self.data {
            [a, b, rest @ ..] => (usize::from(u16::from_be_bytes([*a, *b])), rest),
            _ => (0, &[][..]),
        };
        let n = n.min(rest.len());
        let (frame, rest) = rest.split_at(n);
        self.data = rest;
        Ok(frame.to_vec())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut tpm = Tpm::new(Scripted { data });
    let _ = load_policy_serial(&mut tpm);
    let _ = NvSlot::policy_serial().load(&mut tpm);
    if let Ok(mut j) = NvJournal::open(tpm) {
        let _ = j.load();
    }
});
