//! The emulated ME's LME client faces whatever the host's APF client (the
//! agent under test) writes. No frame may panic the parser or the session:
//! the input is parsed as one APF frame, then split into frames (u16
//! big-endian length prefixes) and fed to an LME session, either from the
//! start or after a valid handshake and channel open (first byte, bit 0).
#![no_main]

use fortros_meiemu::amt::apf::{encode, Apf};
use fortros_meiemu::amt::lme::LmeSession;
use fortros_meiemu::amt::{AmtModel, SharedAmt};
use fortros_meiemu::Scenario;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn amt() -> SharedAmt {
    static S: OnceLock<fortros_meiemu::scenario::Resolved> = OnceLock::new();
    let s = S.get_or_init(|| {
        Scenario::from_toml("[amt]\nlme_on_channel_close = \"keep\"\nlme_window = 512")
            .and_then(Scenario::resolve)
            .expect("fixed scenario")
    });
    AmtModel::shared(s)
}

fuzz_target!(|data: &[u8]| {
    let _ = Apf::parse(data, 4087);
    let amt = amt();
    let mut s = LmeSession::new(4096);
    if data.first().is_some_and(|b| b & 1 == 1) {
        for f in [
            encode::protocol_version(1, 0, 9, &[0; 16]),
            encode::service_accept("pfwd@amt.intel.com"),
            encode::request_success(Some(16992)),
            encode::request_success(Some(623)),
            encode::channel_open("forwarded-tcpip", 1, 300, 16992, 1),
        ] {
            let _ = s.handle(&f, &amt);
        }
    }
    let mut rest = data.get(1..).unwrap_or(&[]);
    while rest.len() >= 2 {
        let n = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
        let end = (2 + n).min(rest.len());
        let out = s.handle(&rest[2..end], &amt);
        for f in &out.frames {
            assert!(f.len() <= 4096, "a frame above the LME max message");
        }
        rest = &rest[end..];
    }
});
