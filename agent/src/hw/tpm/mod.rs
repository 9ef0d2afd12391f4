//! TPM 2.0 client in pure Rust over `/dev/tpmrm0` or a swtpm socket; the node identity.
