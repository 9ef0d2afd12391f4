//! The emulated AMT web server faces the agent's HTTP, Digest and WS-MAN
//! bytes: the request parser, the Authorization parser, the envelope parser
//! and the whole request path (as the LSA, with a valid Digest header spliced
//! in when the input asks for it) must never panic.
#![no_main]

use fortros_meiemu::amt::server::{serve, Via};
use fortros_meiemu::amt::{digest, http, lock, wsman, AmtModel};
use fortros_meiemu::Scenario;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = wsman::parse(data);
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = digest::parse(text);
    }
    let Ok(Some((mut req, _))) = http::parse(data) else {
        return;
    };
    let s = Scenario::default().resolve().expect("default scenario");
    let amt = AmtModel::shared(&s);
    let mut m = lock(&amt);
    if data.first() == Some(&b'P') && req.header("authorization").is_none() {
        // authenticate as the LSA so the WS-MAN handlers run on the body
        let nonce = m.new_nonce();
        let realm = m.state.realm.clone();
        let ha1 = fortros_meiemu::amt::md5_hex(&format!(
            "{}:{realm}:{}",
            fortros_meiemu::amt::LSA_USER,
            m.lsa_password
        ));
        let resp = digest::response(&ha1, &nonce, "00000001", "c", &req.method, &req.target);
        req.headers.push((
            "Authorization".into(),
            format!(
                "Digest username=\"$$OsAdmin\", realm=\"{realm}\", nonce=\"{nonce}\", uri=\"{}\", \
                 response=\"{resp}\", qop=auth, nc=00000001, cnonce=\"c\"",
                req.target
            ),
        ));
    }
    let _ = serve(&mut m, &req, Via::Local);
});
