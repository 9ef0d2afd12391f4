//! Intel AMT client pieces shared by the FortrOS agent (provisioning over
//! the MEI) and the org (power control over the network). No I/O of its
//! own: everything runs over a caller's byte stream.
//!
//! - [`http`]: HTTP/1.1 requests and bounded response parsing.
//! - [`digest`]: HTTP Digest auth (MD5, qop=auth) and the HA1 AMT's Setup takes.
//! - [`wsman`]: the WS-MAN envelopes and reply parsing.
//! - [`client`]: one WS-MAN call over a [`client::Connector`], with Digest retry.
//! - [`password`]: AMT's password rules and generation.
//! - [`seal`]: sealing a credential to the org's X25519 key.

pub mod client;
pub mod digest;
pub mod http;
pub mod password;
pub mod seal;
pub mod wsman;
