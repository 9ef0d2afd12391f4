//! Test and benchmark support (feature `test-support`): a software
//! "attestation key" that produces quotes in the TPM's exact format, and a
//! fully populated sample report. Never used by the agent: real quotes come
//! from the TPM.

use crate::bytes::{Bytes, Digest32};
use crate::envelope::{ReportEvidence, ENVELOPE_FORMAT};
use crate::report::*;
use crate::tpm::{self, ClockInfo, EcdsaSignature, PcrSelection, QuoteAttest, Writer};
use crate::REPORT_FORMAT;
use p256::ecdsa::signature::Signer;
use p256::ecdsa::{Signature, SigningKey};
use sha2::{Digest, Sha256};

/// A P-256 key in software standing in for a TPM AK.
pub struct SoftAk {
    key: SigningKey,
    public: Vec<u8>,
}

impl SoftAk {
    /// A deterministic key from a one-byte seed (distinct seeds, distinct keys).
    pub fn from_seed(seed: u8) -> Self {
        let mut scalar = [0x42u8; 32];
        scalar[31] = seed.wrapping_add(1);
        let key = SigningKey::from_bytes(&scalar.into()).expect("fixed scalar is valid");
        let point = key.verifying_key().to_encoded_point(false);
        let mut w = Writer::new();
        tpm::marshal_ecc_p256_public(
            tpm::AK_ATTRIBUTES,
            tpm::ALG_ECDSA,
            point.x().expect("uncompressed"),
            point.y().expect("uncompressed"),
            &mut w,
        );
        SoftAk { key, public: w.buf }
    }

    /// The TPMT_PUBLIC bytes.
    pub fn public(&self) -> &[u8] {
        &self.public
    }

    /// A quote over `report_bytes` as a TPM would make it, with the report's
    /// PCR values as the quoted PCRs.
    pub fn quote(&self, report: &Report, report_bytes: &[u8]) -> ReportEvidence {
        let pcrs: Vec<u8> = report.pcrs.values.iter().map(|p| p.index).collect();
        let attest = QuoteAttest {
            qualified_signer: tpm::name_sha256(&self.public),
            extra_data: Sha256::digest(report_bytes).to_vec(),
            clock: ClockInfo {
                clock: 123_456,
                reset_count: 3,
                restart_count: 0,
                safe: true,
            },
            firmware_version: 0x2000_0000_0001,
            pcr_select: PcrSelection::new(report.pcrs.bank, &pcrs),
            pcr_digest: tpm::pcr_digest_sha256(
                report.pcrs.values.iter().map(|p| p.digest.as_slice()),
            )
            .to_vec(),
        }
        .marshal();
        let sig: Signature = self.key.sign(&attest);
        let (r, s) = sig.split_bytes();
        let signature = EcdsaSignature {
            hash: tpm::ALG_SHA256,
            r: r.to_vec(),
            s: s.to_vec(),
        }
        .marshal();
        ReportEvidence {
            format: ENVELOPE_FORMAT,
            report: Bytes(report_bytes.to_vec()),
            attest: Bytes(attest),
            signature: Bytes(signature),
        }
    }
}

/// A report with every section filled, as a real node would send it.
pub fn sample_report(ak_public: &[u8], nonce: &[u8]) -> Report {
    let d = |b: u8| Digest32([b; 32]);
    Report {
        format: REPORT_FORMAT,
        node: NodeIdentity {
            ak_public: Bytes(ak_public.to_vec()),
            ek_public: Some(Bytes(vec![0xEE; 280])),
            ek_certificate: Some(Bytes(vec![0x30; 900])),
        },
        nonce: Bytes(nonce.to_vec()),
        boot_counter: 7,
        flash: Some(FlashFacts {
            size: 16 << 20,
            image_sha256: d(1),
            regions: vec![
                RegionDigest {
                    region: RegionKind::Descriptor,
                    base: 0,
                    limit: 0xfff,
                    sha256: d(2),
                },
                RegionDigest {
                    region: RegionKind::Me,
                    base: 0x1000,
                    limit: 0x6f_ffff,
                    sha256: d(3),
                },
                RegionDigest {
                    region: RegionKind::Bios,
                    base: 0x70_0000,
                    limit: 0xff_ffff,
                    sha256: d(4),
                },
            ],
            descriptor: Some(DescriptorFacts {
                valid: true,
                platform: Some("Sunrise Point (PCH 100)".into()),
                me_disable_bit: Some(false),
                me_region_writable_by_host: Some(false),
                descriptor_writable_by_host: Some(false),
                master_access: vec![0x00a0_0b00, 0x0040_0d00, 0x0080_0900],
            }),
            me_image: Some(MeImageFacts {
                family: "ME 11".into(),
                version: Some("11.8.50.3425".into()),
                state: MeImageState::Stock,
                partitions: vec!["FTPR".into(), "NFTP".into(), "MFS".into()],
            }),
        }),
        live_me: Some(LiveMeFacts {
            hfsts: [
                Some(0x9000_0245),
                Some(0x8210_0116),
                Some(0x0000_0020),
                Some(0),
                Some(0),
                Some(0x4000_0000),
            ],
            state: LiveMeState {
                working_state: 5,
                operation_mode: 0,
                error_code: 0,
                manufacturing_mode: false,
                summary: "normal".into(),
            },
            mkhi: Some(MkhiFacts {
                fw_version: Some("11.8.50.3425".into()),
                capabilities: vec![0x1e00_3bc5],
                errors: vec![],
            }),
            amthi: Some(AmthiFacts {
                provisioning_state: Some(0),
                control_mode: Some(0),
                uuid: Some(Bytes(vec![0x11; 16])),
                errors: vec![],
            }),
            boot_guard: Some(BootGuardFacts {
                sacm_info_msr: Some(0),
                verified_boot: Some(false),
                measured_boot: Some(false),
                fpf_committed: Some(false),
            }),
        }),
        network: Some(NetworkFacts {
            me_mac: Some(Bytes(vec![0x00, 0x1b, 0x21, 0x01, 0x02, 0x03])),
            host_mac: Some(Bytes(vec![0x00, 0x1b, 0x21, 0x01, 0x02, 0x04])),
            amt_ports: vec![16992, 16993],
        }),
        pcrs: PcrValues {
            bank: tpm::ALG_SHA256,
            values: [0u8, 1, 2, 3, 4, 5, 6, 7, 13]
                .iter()
                .map(|&i| PcrValue {
                    index: i,
                    digest: Bytes(vec![i; 32]),
                })
                .collect(),
        },
        policy: Some(PolicyReceived {
            serial: 4,
            policy_sha256: d(9),
            accepted: true,
            reason: None,
        }),
        actions: vec![ActionTaken {
            action: "extend-pcr".into(),
            outcome: Outcome::Done,
            detail: Some("PCR 13".into()),
        }],
        extensions: vec![],
    }
}
