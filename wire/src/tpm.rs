//! TPM 2.0 structure marshaling (TPM 2.0 Part 2), shared by the verifier
//! here and the agent's TPM client. Big-endian, size-prefixed; every read
//! is bounded and every error names the structure and the byte offset.

use sha2::{Digest, Sha256};

pub const ALG_RSA: u16 = 0x0001;
pub const ALG_SHA256: u16 = 0x000B;
pub const ALG_AES: u16 = 0x0006;
pub const ALG_NULL: u16 = 0x0010;
pub const ALG_ECDSA: u16 = 0x0018;
pub const ALG_ECC: u16 = 0x0023;
pub const ALG_CFB: u16 = 0x0043;
pub const ECC_NIST_P256: u16 = 0x0003;

/// TPM_GENERATED_VALUE: the magic at the start of every TPMS_ATTEST.
pub const TPM_GENERATED: u32 = 0xff54_4347;
pub const ST_ATTEST_QUOTE: u16 = 0x8018;

/// TPMA_OBJECT bits.
pub mod attr {
    pub const FIXED_TPM: u32 = 1 << 1;
    pub const FIXED_PARENT: u32 = 1 << 4;
    pub const SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
    pub const USER_WITH_AUTH: u32 = 1 << 6;
    pub const ADMIN_WITH_POLICY: u32 = 1 << 7;
    pub const NO_DA: u32 = 1 << 10;
    pub const RESTRICTED: u32 = 1 << 16;
    pub const DECRYPT: u32 = 1 << 17;
    pub const SIGN: u32 = 1 << 18;
}

/// The attributes of the FortrOS attestation key: TPM-resident
/// (fixedTPM, fixedParent, sensitiveDataOrigin), restricted signing (it
/// signs only TPM-generated structures such as quotes), usable with a
/// password (empty) authorization.
pub const AK_ATTRIBUTES: u32 = attr::FIXED_TPM
    | attr::FIXED_PARENT
    | attr::SENSITIVE_DATA_ORIGIN
    | attr::USER_WITH_AUTH
    | attr::RESTRICTED
    | attr::SIGN;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum TpmParseError {
    #[error("{structure}: needs {needed} bytes at offset {offset}, only {available} left")]
    Truncated {
        structure: &'static str,
        offset: usize,
        needed: usize,
        available: usize,
    },
    #[error("{structure} at offset {offset}: {reason}")]
    Invalid {
        structure: &'static str,
        offset: usize,
        reason: String,
    },
    #[error("{structure}: {extra} unexpected bytes after the end at offset {offset}")]
    Trailing {
        structure: &'static str,
        offset: usize,
        extra: usize,
    },
}

/// A bounded big-endian reader that knows its absolute offset.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(buf: &'a [u8]) -> Self {
        Reader { buf, pos: 0 }
    }

    pub fn offset(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    pub fn bytes(&mut self, n: usize, structure: &'static str) -> Result<&'a [u8], TpmParseError> {
        let end = self.pos.checked_add(n).filter(|&e| e <= self.buf.len());
        match end.and_then(|e| self.buf.get(self.pos..e)) {
            Some(s) => {
                self.pos += n;
                Ok(s)
            }
            None => Err(TpmParseError::Truncated {
                structure,
                offset: self.pos,
                needed: n,
                available: self.remaining(),
            }),
        }
    }

    pub fn u8(&mut self, structure: &'static str) -> Result<u8, TpmParseError> {
        Ok(self.bytes(1, structure)?.first().copied().unwrap_or(0))
    }

    pub fn u16(&mut self, structure: &'static str) -> Result<u16, TpmParseError> {
        let b = self.bytes(2, structure)?;
        Ok(u16::from_be_bytes(b.try_into().unwrap_or([0; 2])))
    }

    pub fn u32(&mut self, structure: &'static str) -> Result<u32, TpmParseError> {
        let b = self.bytes(4, structure)?;
        Ok(u32::from_be_bytes(b.try_into().unwrap_or([0; 4])))
    }

    pub fn u64(&mut self, structure: &'static str) -> Result<u64, TpmParseError> {
        let b = self.bytes(8, structure)?;
        Ok(u64::from_be_bytes(b.try_into().unwrap_or([0; 8])))
    }

    /// A TPM2B: u16 size then that many bytes.
    pub fn tpm2b(&mut self, structure: &'static str) -> Result<&'a [u8], TpmParseError> {
        let n = self.u16(structure)? as usize;
        self.bytes(n, structure)
    }

    pub fn invalid(&self, structure: &'static str, reason: impl Into<String>) -> TpmParseError {
        TpmParseError::Invalid {
            structure,
            offset: self.pos,
            reason: reason.into(),
        }
    }

    /// Fails unless everything was consumed.
    pub fn finish(&self, structure: &'static str) -> Result<(), TpmParseError> {
        if self.remaining() == 0 {
            Ok(())
        } else {
            Err(TpmParseError::Trailing {
                structure,
                offset: self.pos,
                extra: self.remaining(),
            })
        }
    }
}

/// A big-endian writer for command building.
#[derive(Debug, Clone, Default)]
pub struct Writer {
    pub buf: Vec<u8>,
}

impl Writer {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.buf.extend_from_slice(&v.to_be_bytes());
        self
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }
    /// A TPM2B. Callers keep sizes under 64 KiB (TPM buffers are far smaller).
    pub fn tpm2b(&mut self, v: &[u8]) -> &mut Self {
        self.u16(u16::try_from(v.len()).unwrap_or(u16::MAX));
        self.bytes(v.get(..usize::from(u16::MAX)).unwrap_or(v))
    }
}

/// TPML_PCR_SELECTION with one bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrSelection {
    pub bank: u16,
    /// PCR indexes in increasing order.
    pub pcrs: Vec<u8>,
}

impl PcrSelection {
    pub fn new(bank: u16, pcrs: &[u8]) -> Self {
        let mut pcrs = pcrs.to_vec();
        pcrs.sort_unstable();
        pcrs.dedup();
        PcrSelection { bank, pcrs }
    }

    /// TPML_PCR_SELECTION with count 1 and a 3-byte bitmap (PCRs 0-23).
    pub fn marshal(&self, w: &mut Writer) {
        let mut map = [0u8; 3];
        for &p in &self.pcrs {
            if let Some(b) = map.get_mut(usize::from(p / 8)) {
                *b |= 1 << (p % 8);
            }
        }
        w.u32(1).u16(self.bank).u8(3).bytes(&map);
    }

    /// Parses a TPML_PCR_SELECTION; rejects more than one bank (we only ever
    /// ask for one).
    pub fn parse(r: &mut Reader) -> Result<Self, TpmParseError> {
        const S: &str = "TPML_PCR_SELECTION";
        let count = r.u32(S)?;
        if count != 1 {
            return Err(r.invalid(S, format!("expected 1 bank, found {count}")));
        }
        let bank = r.u16(S)?;
        let size = r.u8(S)?;
        if size > 8 {
            return Err(r.invalid(S, format!("sizeofSelect {size} > 8")));
        }
        let map = r.bytes(usize::from(size), S)?;
        let mut pcrs = Vec::new();
        for (i, b) in map.iter().enumerate() {
            for bit in 0..8 {
                if b & (1 << bit) != 0 {
                    pcrs.push((i * 8 + bit) as u8);
                }
            }
        }
        Ok(PcrSelection { bank, pcrs })
    }
}

/// An ECC P-256 public key as a TPMT_PUBLIC says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EccPublic {
    pub name_alg: u16,
    pub attributes: u32,
    pub auth_policy: Vec<u8>,
    pub symmetric: u16,
    /// (scheme, hash); ALG_NULL scheme has hash ALG_NULL.
    pub scheme: (u16, u16),
    pub curve: u16,
    pub x: Vec<u8>,
    pub y: Vec<u8>,
}

/// An RSA public key as a TPMT_PUBLIC says it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RsaPublic {
    pub name_alg: u16,
    pub attributes: u32,
    pub auth_policy: Vec<u8>,
    /// (algorithm, key bits, mode) or (ALG_NULL, 0, 0).
    pub symmetric: (u16, u16, u16),
    pub scheme: (u16, u16),
    pub key_bits: u16,
    /// 0 means the default 65537.
    pub exponent: u32,
    pub modulus: Vec<u8>,
}

/// A parsed TPMT_PUBLIC of the two kinds we use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Public {
    Ecc(EccPublic),
    Rsa(RsaPublic),
}

fn sym_def(r: &mut Reader, s: &'static str) -> Result<(u16, u16, u16), TpmParseError> {
    let alg = r.u16(s)?;
    if alg == ALG_NULL {
        return Ok((alg, 0, 0));
    }
    Ok((alg, r.u16(s)?, r.u16(s)?))
}

fn scheme(r: &mut Reader, s: &'static str) -> Result<(u16, u16), TpmParseError> {
    let alg = r.u16(s)?;
    if alg == ALG_NULL {
        return Ok((alg, ALG_NULL));
    }
    Ok((alg, r.u16(s)?))
}

impl Public {
    /// Parses a whole TPMT_PUBLIC (no size prefix), rejecting trailing bytes.
    pub fn parse(bytes: &[u8]) -> Result<Self, TpmParseError> {
        const S: &str = "TPMT_PUBLIC";
        let mut r = Reader::new(bytes);
        let ty = r.u16(S)?;
        let name_alg = r.u16(S)?;
        let attributes = r.u32(S)?;
        let auth_policy = r.tpm2b(S)?.to_vec();
        let public = match ty {
            ALG_ECC => {
                let (symmetric, _, _) = sym_def(&mut r, S)?;
                let scheme = scheme(&mut r, S)?;
                let curve = r.u16(S)?;
                let _kdf = scheme_kdf(&mut r, S)?;
                let x = r.tpm2b(S)?.to_vec();
                let y = r.tpm2b(S)?.to_vec();
                Public::Ecc(EccPublic {
                    name_alg,
                    attributes,
                    auth_policy,
                    symmetric,
                    scheme,
                    curve,
                    x,
                    y,
                })
            }
            ALG_RSA => {
                let symmetric = sym_def(&mut r, S)?;
                let scheme = scheme(&mut r, S)?;
                let key_bits = r.u16(S)?;
                let exponent = r.u32(S)?;
                let modulus = r.tpm2b(S)?.to_vec();
                Public::Rsa(RsaPublic {
                    name_alg,
                    attributes,
                    auth_policy,
                    symmetric,
                    scheme,
                    key_bits,
                    exponent,
                    modulus,
                })
            }
            other => return Err(r.invalid(S, format!("unsupported key type 0x{other:04x}"))),
        };
        r.finish(S)?;
        Ok(public)
    }
}

fn scheme_kdf(r: &mut Reader, s: &'static str) -> Result<(u16, u16), TpmParseError> {
    scheme(r, s)
}

/// Marshals an ECC P-256 TPMT_PUBLIC (ECDSA-SHA256 or NULL scheme, no
/// symmetric, NULL KDF). With empty `x`/`y` and the AK attributes it is the
/// agent's AK template; with a real point it is a loaded key's public area.
pub fn marshal_ecc_p256_public(attributes: u32, scheme: u16, x: &[u8], y: &[u8], w: &mut Writer) {
    w.u16(ALG_ECC).u16(ALG_SHA256).u32(attributes).tpm2b(&[]);
    w.u16(ALG_NULL);
    if scheme == ALG_NULL {
        w.u16(ALG_NULL);
    } else {
        w.u16(scheme).u16(ALG_SHA256);
    }
    w.u16(ECC_NIST_P256).u16(ALG_NULL);
    w.tpm2b(x).tpm2b(y);
}

/// The TPM name of an object with a SHA-256 name algorithm:
/// `0x000b || SHA-256(TPMT_PUBLIC)`.
pub fn name_sha256(tpmt_public: &[u8]) -> Vec<u8> {
    let mut name = ALG_SHA256.to_be_bytes().to_vec();
    name.extend_from_slice(&Sha256::digest(tpmt_public));
    name
}

/// TPMS_CLOCK_INFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockInfo {
    pub clock: u64,
    pub reset_count: u32,
    pub restart_count: u32,
    pub safe: bool,
}

/// A TPMS_ATTEST of type quote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteAttest {
    pub qualified_signer: Vec<u8>,
    pub extra_data: Vec<u8>,
    pub clock: ClockInfo,
    pub firmware_version: u64,
    pub pcr_select: PcrSelection,
    pub pcr_digest: Vec<u8>,
}

impl QuoteAttest {
    /// Parses the contents of a TPM2B_ATTEST (without its size prefix).
    pub fn parse(bytes: &[u8]) -> Result<Self, TpmParseError> {
        const S: &str = "TPMS_ATTEST";
        let mut r = Reader::new(bytes);
        let magic = r.u32(S)?;
        if magic != TPM_GENERATED {
            return Err(TpmParseError::Invalid {
                structure: S,
                offset: 0,
                reason: format!("magic 0x{magic:08x} is not TPM_GENERATED_VALUE"),
            });
        }
        let ty = r.u16(S)?;
        if ty != ST_ATTEST_QUOTE {
            return Err(TpmParseError::Invalid {
                structure: S,
                offset: 4,
                reason: format!("type 0x{ty:04x} is not TPM_ST_ATTEST_QUOTE"),
            });
        }
        let qualified_signer = r.tpm2b(S)?.to_vec();
        let extra_data = r.tpm2b(S)?.to_vec();
        let clock = ClockInfo {
            clock: r.u64(S)?,
            reset_count: r.u32(S)?,
            restart_count: r.u32(S)?,
            safe: r.u8(S)? != 0,
        };
        let firmware_version = r.u64(S)?;
        let pcr_select = PcrSelection::parse(&mut r)?;
        let pcr_digest = r.tpm2b(S)?.to_vec();
        r.finish(S)?;
        Ok(QuoteAttest {
            qualified_signer,
            extra_data,
            clock,
            firmware_version,
            pcr_select,
            pcr_digest,
        })
    }

    /// Marshals back (used by test builders; a TPM produces the real ones).
    pub fn marshal(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u32(TPM_GENERATED).u16(ST_ATTEST_QUOTE);
        w.tpm2b(&self.qualified_signer).tpm2b(&self.extra_data);
        w.bytes(&self.clock.clock.to_be_bytes())
            .u32(self.clock.reset_count)
            .u32(self.clock.restart_count)
            .u8(self.clock.safe as u8);
        w.bytes(&self.firmware_version.to_be_bytes());
        self.pcr_select.marshal(&mut w);
        w.tpm2b(&self.pcr_digest);
        w.buf
    }
}

/// A TPMT_SIGNATURE of scheme ECDSA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EcdsaSignature {
    pub hash: u16,
    pub r: Vec<u8>,
    pub s: Vec<u8>,
}

impl EcdsaSignature {
    pub fn parse(bytes: &[u8]) -> Result<Self, TpmParseError> {
        const S: &str = "TPMT_SIGNATURE";
        let mut r = Reader::new(bytes);
        let alg = r.u16(S)?;
        if alg != ALG_ECDSA {
            return Err(TpmParseError::Invalid {
                structure: S,
                offset: 0,
                reason: format!("sigAlg 0x{alg:04x} is not ECDSA"),
            });
        }
        let hash = r.u16(S)?;
        let sig_r = r.tpm2b(S)?.to_vec();
        let sig_s = r.tpm2b(S)?.to_vec();
        r.finish(S)?;
        Ok(EcdsaSignature {
            hash,
            r: sig_r,
            s: sig_s,
        })
    }

    pub fn marshal(&self) -> Vec<u8> {
        let mut w = Writer::new();
        w.u16(ALG_ECDSA)
            .u16(self.hash)
            .tpm2b(&self.r)
            .tpm2b(&self.s);
        w.buf
    }
}

/// The PCR digest a quote carries: SHA-256 over the concatenated PCR
/// values in selection order (TPM 2.0 Part 3, TPM2_Quote).
pub fn pcr_digest_sha256<'a>(values: impl IntoIterator<Item = &'a [u8]>) -> [u8; 32] {
    let mut h = Sha256::new();
    for v in values {
        h.update(v);
    }
    h.finalize().into()
}

/// The value of a SHA-256 PCR after one extend from `old`.
pub fn pcr_extend_sha256(old: &[u8], digest: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(old);
    h.update(digest);
    h.finalize().into()
}
