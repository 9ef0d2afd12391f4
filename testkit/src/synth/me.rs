//! Synthetic ME regions that tests build themselves (no Intel bytes): gen 2
//! (`$FPT` + `$MN2` + `$MME` module table), gen 3 (`$FPT` + `$CPD` + CSE
//! manifest), IFWI 1.6 / 1.7 (CSE layout table, data `$FPT`, BPDT boot
//! partitions) and a bare BPDT as Gemini Lake keeps in its BIOS region.
//! Manifests are signed with the test keys below, so "consistent"
//! signatures are exercised for both schemes (PKCS#1 v1.5 / SHA-256 and
//! PSS / SHA-384); the layouts follow `shared/reference/me-image-formats.md`.
//!
//! Every builder returns a [`SynthMe`]: the bytes plus the offsets of the
//! structures, so a test can damage exactly one of them.

use num_bigint::BigUint;
use sha2::{Digest, Sha256, Sha384};

/// An RSA key for tests: modulus and private exponent as big-endian hex.
/// Generated for this test kit with openssl; it signs nothing real.
pub struct TestKey {
    n: &'static str,
    d: &'static str,
    e: u32,
}

impl TestKey {
    fn n(&self) -> BigUint {
        BigUint::parse_bytes(self.n.as_bytes(), 16).expect("test key modulus")
    }
    fn d(&self) -> BigUint {
        BigUint::parse_bytes(self.d.as_bytes(), 16).expect("test key exponent")
    }
    /// Modulus length in bytes.
    pub fn len(&self) -> usize {
        (self.n().bits() as usize).div_ceil(8)
    }
    /// Never empty; for clippy's `len_without_is_empty`.
    pub fn is_empty(&self) -> bool {
        false
    }
    /// Raw RSA private operation on a big-endian block, result little-endian
    /// padded to the modulus length (as manifests store signatures).
    fn sign_block(&self, em: &[u8]) -> Vec<u8> {
        let s = BigUint::from_bytes_be(em).modpow(&self.d(), &self.n());
        let mut le = s.to_bytes_le();
        le.resize(self.len(), 0);
        le
    }
}

/// Test-only RSA-2048 key, exponent 17 (as ME 6–10 manifests use).
pub static RSA2048_E17: TestKey = TestKey {
    n: concat!(
        "bc3a7877eef01df86bbe3814ca3a635698c357c48d985b0ff180987de24ef51a4930bb54afcd28d1ec8b9cb104f64d20",
        "71f09eae0b1bebbedcc40e8ee73d6fe9f736c7415ab1b7685ba98b727a9168287729304a3edb4bae92756b2ce8a8e042",
        "2b7b7f3d6719f3975320b66671b7b9e5968f712dcf08ef455125283803ba38a23b0d09467b040c0b8ae6c0945302c7b0",
        "dfabac2ee2e7252f12f392d797d7b1e5e75b6fba0e7b73e30103f62965fbb70017281f8af82f56a3c92f557babf31728",
        "ce32cf400abf7d28819da2cb7bf1fbac6c4862dcd6aac65081d4d7293312e8af75775314158392b4bcabea28c59d205d",
        "dac60c0ce1385885d1d8c970c7a2ce15",
    ),
    d: concat!(
        "b127f8e9595a768f7476cb5edc73305180b7da226725fb5a4cb5443a3e686e36db7928c82cfd539866290bf1e68d75c4",
        "2f00955882ed1a1d0c03d1777039d2be15d93401464ce8dab09f924da088da807026c409a492291cc61428a2bcdb2d6b",
        "7437ff48d981d6341200ababb65290d8153bb5d0c2db3b8c889b7125a927bcd34da9e521ba62de48533fc96fad95af8d",
        "93e22194da963eed9366975739c52f7837b9756f4987de9cc6012b0068dad061f7eb91ba86abd1965c662e95af80e670",
        "eec13a58a83b5d6a308f2c78952caf45db3be0a6e2d0c31fbd99727ba31e10da0a54c49b8631674f152a5200ae2103a9",
        "8750aa910c57b61c7b5729d53dc490f1",
    ),
    e: 17,
};

/// Test-only RSA-3072 key, exponent 65537 (as CSME 16 manifests use).
pub static RSA3072: TestKey = TestKey {
    n: concat!(
        "8f887fc617159079394d8bba29f12e03aa9109787017c35ee0eba1b3e7583fec0fa6199b269dd5c102e7181bbe64da5b",
        "e492cab14639822cbf416b615c8a5e940bf396cfa3094143b8595252e513058b3884c235a27d256e417a7ea37e1903af",
        "8db9ddf141525cc5b4d3a38d7952821a236aabf92dc7c672d97188626bd2b4dc4eac48fd0ca23cf665abc8cf34dcde95",
        "1cf4461ce28e799bbd0b1a005e9bfdec39705c4e4a08633a5ec34b13d756bb2a00c8cb2ac7be7e029dedd9cc5f298d5f",
        "b212b43b70c8c6e39dd9c7b1d35f0e154a28f9d8f42392a28d9bb2a690c600dfadefd27a2c34cf2a34292dbcdc593c49",
        "0cc8ab2c30d6b03d939f0d379c074c958f2e8a551ce185174a9805f3ce41feefc2e5dfb584e0bc4d3db7a2c1bfebc1e4",
        "e1db6a964c5859bbd55168acb48cec0aa4f9af39178574822cca1dd1eecf5a60e0f9065bbfc8afae1ddadd3511edc193",
        "91f623cded77ca781269862ddf0057e41a7dfbfba276f0a6edf4bbf49d1a415490eb187a93577bae6eb6859f16802b0b",
    ),
    d: concat!(
        "3e0f5e73d78a56e7db4b78b55b2a31639b6dcfa2f8108644714ae0a5694b8283fe762a8f2780ca2a04a7c80842e7d774",
        "311df92ef236ae5ecba92d15314e90bb4179a6c50b70d67bc1eb3909a78b7473b051d2a91f232e3a806c46f248f4e6df",
        "928f8173ad733fb2aa4f71e19b49fdfff03d50b35244953d16609d00352fab4cb06594bf792572e774a9748f870352e8",
        "35573733890fe26be0aebaa4db436664aba735fa11cf939beada550d74a7c7104fbb8200f2d19e296280b391c6b9b02a",
        "c0e42bb09e4bb7ec1d3d4cdb1718901240e77825567d06d32fb252d1755375cd9416786f4382745fc5c7c9a5e43722d8",
        "eee35378b5087607199a39f6453b9ba9c295b18a97d3fb49aaa0064071cce1da1845c64617d5a9b734b2839ed5715065",
        "75c810b4505aba55e899a3af2200bf5d9f1e57a70852ca8d57c3a83e41887ac69bb4dd58798ccb2f94cb31901b6354e2",
        "873a3133719b939d5a52bc3f21f48e4845ac1859e1656a77603c50956b69e1ea838cd69fed6a292fcd8d0f86daae46b9",
    ),
    e: 65537,
};

/// A built region and where its structures are (region offsets).
#[derive(Debug, Clone)]
pub struct SynthMe {
    pub bytes: Vec<u8>,
    /// The `$FPT` (classic: 0x10; IFWI: the data partition).
    pub fpt: Option<usize>,
    /// The FTPR partition / sub-partition.
    pub ftpr: usize,
    /// The FTPR manifest header.
    pub manifest: usize,
    /// The FTPR `$CPD` (gen 3 / IFWI).
    pub cpd: Option<usize>,
    /// Gen 2: first `$MME` header.
    pub modules: Option<usize>,
    /// BPDT of the boot partition holding the FTPR (IFWI).
    pub bpdt: Option<usize>,
}

fn put(buf: &mut Vec<u8>, at: usize, data: &[u8]) {
    if buf.len() < at + data.len() {
        buf.resize(at + data.len(), 0xFF);
    }
    buf[at..at + data.len()].copy_from_slice(data);
}

fn le32(v: u32) -> [u8; 4] {
    v.to_le_bytes()
}

/// Byte-sum checksum: the value that makes `data` sum to 0 mod 256.
fn checksum8(data: &[u8]) -> u8 {
    data.iter()
        .fold(0u8, |a, &b| a.wrapping_add(b))
        .wrapping_neg()
}

/// Deterministic filler standing in for code (never all 0xFF).
pub fn filler(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed) | 1)
        .map(|b| b & 0x7F)
        .collect()
}

// ---------------------------------------------------------------- manifests

/// What goes into a manifest header.
#[derive(Debug, Clone, Copy)]
pub struct ManifestSpec {
    pub version: [u16; 4],
    pub svn: u32,
    /// Gen 2: number of `$MME` modules (u32 at +0x20).
    pub module_count: u32,
}

/// A signed `$MN2` manifest: header for `key` (0x10000 layout for 2048-bit,
/// 0x21000 for 3072-bit) followed by `body` (gen 2: partition name and
/// module headers; CSE: extensions), signed over header[0..0x80] + body.
pub fn manifest(key: &TestKey, spec: ManifestSpec, body: &[u8]) -> Vec<u8> {
    let k = key.len();
    let header_len = 0x80 + k + 4 + k;
    let size = header_len + body.len();
    assert!(size % 4 == 0, "manifest body must be dword-aligned");
    let mut m = vec![0u8; header_len];
    m[0..4].copy_from_slice(&le32(4));
    m[4..8].copy_from_slice(&le32((header_len / 4) as u32));
    m[8..12].copy_from_slice(&le32(if k == 0x180 { 0x21000 } else { 0x10000 }));
    m[0x10..0x14].copy_from_slice(&le32(0x8086));
    m[0x14..0x18].copy_from_slice(&le32(0x2026_1126));
    m[0x18..0x1C].copy_from_slice(&le32((size / 4) as u32));
    m[0x1C..0x20].copy_from_slice(b"$MN2");
    m[0x20..0x24].copy_from_slice(&le32(spec.module_count));
    for (i, v) in spec.version.iter().enumerate() {
        m[0x24 + 2 * i..0x26 + 2 * i].copy_from_slice(&v.to_le_bytes());
    }
    m[0x2C..0x30].copy_from_slice(&le32(spec.svn));
    m[0x78..0x7C].copy_from_slice(&le32((k / 4) as u32));
    m[0x7C..0x80].copy_from_slice(&le32(1));
    let mut n_le = key.n().to_bytes_le();
    n_le.resize(k, 0);
    m[0x80..0x80 + k].copy_from_slice(&n_le);
    m[0x80 + k..0x84 + k].copy_from_slice(&le32(key.e));
    let signed: Vec<u8> = m[..0x80].iter().chain(body).copied().collect();
    let sig = if k == 0x180 {
        pss_sha384(key, &signed)
    } else {
        pkcs1_sha256(key, &signed)
    };
    m[0x84 + k..0x84 + 2 * k].copy_from_slice(&sig);
    m.extend_from_slice(body);
    m
}

/// RSASSA-PKCS1-v1_5 with SHA-256.
fn pkcs1_sha256(key: &TestKey, msg: &[u8]) -> Vec<u8> {
    const INFO: [u8; 19] = [
        0x30, 0x31, 0x30, 0x0D, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01,
        0x05, 0x00, 0x04, 0x20,
    ];
    let k = key.len();
    let mut em = vec![0xFFu8; k];
    em[0] = 0;
    em[1] = 1;
    let t = k - INFO.len() - 32;
    em[t - 1] = 0;
    em[t..t + INFO.len()].copy_from_slice(&INFO);
    em[k - 32..].copy_from_slice(&Sha256::digest(msg));
    key.sign_block(&em)
}

/// RSASSA-PSS with SHA-384, MGF1-SHA-384 and a fixed 48-byte salt.
fn pss_sha384(key: &TestKey, msg: &[u8]) -> Vec<u8> {
    let em_bits = key.n().bits() as usize - 1;
    let em_len = em_bits.div_ceil(8);
    let salt = [0x5Au8; 48];
    let mut h = Sha384::new();
    h.update([0u8; 8]);
    h.update(Sha384::digest(msg));
    h.update(salt);
    let hash = h.finalize();
    let db_len = em_len - 48 - 1;
    let mut db = vec![0u8; db_len];
    db[db_len - 49] = 1;
    db[db_len - 48..].copy_from_slice(&salt);
    let mut mask = Vec::new();
    let mut c = 0u32;
    while mask.len() < db_len {
        let mut g = Sha384::new();
        g.update(hash);
        g.update(c.to_be_bytes());
        mask.extend_from_slice(&g.finalize());
        c += 1;
    }
    for (b, m) in db.iter_mut().zip(mask) {
        *b ^= m;
    }
    db[0] &= 0xFF >> (8 * em_len - em_bits);
    let mut em = db;
    em.extend_from_slice(&hash);
    em.push(0xBC);
    key.sign_block(&em)
}

/// CSE manifest extensions: client system info (0x0C) with a consumer SKU.
fn cse_extensions() -> Vec<u8> {
    let mut ext = Vec::new();
    ext.extend_from_slice(&le32(0x0C));
    ext.extend_from_slice(&le32(0x30));
    ext.extend_from_slice(&[0u8; 4 + 28]);
    ext.extend_from_slice(&(1u64 << 4).to_le_bytes()); // SKU type 1 = consumer
    ext
}

// --------------------------------------------------------------------- $FPT

/// One `$FPT` entry: name, offset (as stored), length, partition type,
/// valid.
#[derive(Debug, Clone)]
pub struct FptEntry {
    pub name: [u8; 4],
    pub offset: u32,
    pub length: u32,
    pub part_type: u8,
    pub valid: bool,
}

pub fn entry(name: &str, offset: u32, length: u32, part_type: u8) -> FptEntry {
    let mut n = [0u8; 4];
    n[..name.len()].copy_from_slice(name.as_bytes());
    FptEntry {
        name: n,
        offset,
        length,
        part_type,
        valid: true,
    }
}

fn fpt_entries(entries: &[FptEntry]) -> Vec<u8> {
    let mut out = Vec::new();
    for e in entries {
        let mut b = [0u8; 0x20];
        b[0..4].copy_from_slice(&e.name);
        b[4..8].copy_from_slice(&[0xFF; 4]);
        b[8..12].copy_from_slice(&le32(e.offset));
        b[12..16].copy_from_slice(&le32(e.length));
        let flags = u32::from(e.part_type) | if e.valid { 0 } else { 0xFF00_0000 };
        b[0x1C..0x20].copy_from_slice(&le32(flags));
        out.extend_from_slice(&b);
    }
    out
}

/// Writes a `$FPT` at `at` in `buf`. `header_len` 0x30 (gen 2: the 16-byte
/// ROM bypass before it is part of the checksum) or 0x20; `version` 0x20
/// (checksum8) or 0x21 (CRC-32 over header and entries).
pub fn write_fpt(buf: &mut Vec<u8>, at: usize, version: u8, header_len: u8, entries: &[FptEntry]) {
    if header_len == 0x30 {
        put(
            buf,
            at - 0x10,
            &[
                0x20, 0x20, 0x80, 0x0F, 0x40, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 0,
            ],
        );
    }
    let mut h = [0u8; 0x20];
    h[0..4].copy_from_slice(b"$FPT");
    h[4..8].copy_from_slice(&le32(entries.len() as u32));
    h[8] = version;
    h[9] = 0x10;
    h[0xA] = header_len;
    h[0x14..0x18].copy_from_slice(&le32(if header_len == 0x30 { 0xFFFF_FC01 } else { 0 }));
    let table: Vec<u8> = h.iter().copied().chain(fpt_entries(entries)).collect();
    put(buf, at, &table);
    if version >= 0x21 {
        let crc = crc32fast::hash(&table);
        put(buf, at + 0x14, &le32(crc));
    } else {
        let start = at + 0x20 - usize::from(header_len);
        let sum = checksum8(&buf[start..at + 0x20]);
        buf[at + 0xB] = sum;
    }
}

/// Recomputes the checksum8 of a `$FPT` written by [`write_fpt`] (after a
/// test edits its header or entries on purpose).
pub fn refresh_fpt_checksum(buf: &mut [u8], at: usize) {
    let header_len = usize::from(buf[at + 0xA]);
    buf[at + 0xB] = 0;
    let sum = checksum8(&buf[at + 0x20 - header_len..at + 0x20]);
    buf[at + 0xB] = sum;
}

// --------------------------------------------------------------------- $CPD

/// A `$CPD` directory named `name` with `files` (name, data) laid out after
/// the table; version 1 (checksum8) or 2 (CRC-32). Returns the bytes and
/// the offset of each file's data relative to the `$CPD`.
pub fn cpd(name: &str, version: u8, files: &[(&str, Vec<u8>)]) -> (Vec<u8>, Vec<usize>) {
    let header_len = if version >= 2 { 0x14 } else { 0x10 };
    let table_len = header_len + 0x18 * files.len();
    let mut data_at = table_len.div_ceil(0x40) * 0x40;
    let mut out = vec![0u8; table_len];
    out[0..4].copy_from_slice(b"$CPD");
    out[4..8].copy_from_slice(&le32(files.len() as u32));
    out[8] = version;
    out[9] = 1;
    out[0xA] = header_len as u8;
    out[0xC..0xC + name.len()].copy_from_slice(name.as_bytes());
    let mut offsets = Vec::new();
    for (i, (fname, data)) in files.iter().enumerate() {
        let e = header_len + 0x18 * i;
        out[e..e + fname.len()].copy_from_slice(fname.as_bytes());
        out[e + 0xC..e + 0x10].copy_from_slice(&le32(data_at as u32));
        out[e + 0x10..e + 0x14].copy_from_slice(&le32(data.len() as u32));
        offsets.push(data_at);
        data_at = (data_at + data.len()).div_ceil(0x40) * 0x40;
    }
    if version >= 2 {
        let crc = crc32fast::hash(&out);
        out[0x10..0x14].copy_from_slice(&le32(crc));
    } else {
        out[0xB] = checksum8(&out);
    }
    let table = out.clone();
    let mut full = table;
    for ((_, data), off) in files.iter().zip(&offsets) {
        put(&mut full, *off, data);
    }
    (full, offsets)
}

/// The FTPR code partition of a CSE firmware: `$CPD` with FTPR.man and the
/// modules (each with a `.met`), manifest signed with `key`.
fn cse_ftpr(
    key: &TestKey,
    version: [u16; 4],
    cpd_version: u8,
    modules: &[&str],
) -> (Vec<u8>, usize) {
    cse_partition("FTPR", key, version, cpd_version, modules)
}

/// A CSE code partition `name`: `$CPD` with `<name>.man` signed with `key`,
/// then each module and its `.met`. Returns the bytes and the manifest's
/// offset within them.
pub fn cse_partition(
    name: &str,
    key: &TestKey,
    version: [u16; 4],
    cpd_version: u8,
    modules: &[&str],
) -> (Vec<u8>, usize) {
    // Each module gets a `.met` whose module-attributes extension (0x0A)
    // holds the module's SHA-256; the manifest lists each `.met`'s SHA-256
    // in an extension of its own. Hashes are stored byte-reversed, as Intel
    // stores them.
    let rev = |h: &[u8]| h.iter().rev().copied().collect::<Vec<u8>>();
    let mut files: Vec<(String, Vec<u8>)> = Vec::new();
    let mut listed = Vec::new();
    for (i, m) in modules.iter().enumerate() {
        let code = filler(0x200 + 0x40 * i, i as u8);
        let mut met = vec![0u8; 0x38];
        met[0..4].copy_from_slice(&le32(0x0A));
        met[4..8].copy_from_slice(&le32(0x38));
        met[0xC..0x10].copy_from_slice(&le32(code.len() as u32));
        met[0x10..0x14].copy_from_slice(&le32(code.len() as u32));
        met[0x18..0x38].copy_from_slice(&rev(&Sha256::digest(&code)));
        listed.extend_from_slice(&rev(&Sha256::digest(&met)));
        files.push((m.to_string(), code));
        files.push((format!("{m}.met"), met));
    }
    let mut body = cse_extensions();
    body.extend_from_slice(&le32(0x0F));
    body.extend_from_slice(&le32(8 + listed.len() as u32));
    body.extend_from_slice(&listed);
    let man = manifest(
        key,
        ManifestSpec {
            version,
            svn: 3,
            module_count: 0,
        },
        &body,
    );
    let man_name = format!("{name}.man");
    let mut all: Vec<(&str, Vec<u8>)> = vec![(man_name.as_str(), man)];
    all.extend(files.iter().map(|(n, d)| (n.as_str(), d.clone())));
    let (bytes, offsets) = cpd(name, cpd_version, &all);
    (bytes, offsets[0])
}

/// CSME 11 FTPR modules (reference §8), essential ones first.
pub const CSE_MODULES: &[&str] = &[
    "rbe", "kernel", "syslib", "bup", "pm", "vfs", "policy", "crypto", "heci", "storage",
    "fwupdate", "ptt",
];

// -------------------------------------------------------------- gen 2 / gen 3

/// Gen 2 module names (ME 8, reference §7), essential ROMP/BUP included.
pub const GEN2_MODULES: &[&str] = &[
    "UPDATE", "ROMP", "BUP", "KERNEL", "POLICY", "HOSTCOMM", "RSA", "CLS", "TDT",
];

/// A stock-looking gen 2 region (ME 8.1.x): ROM bypass, `$FPT` (header
/// 0x30) with FOVD, EFFS, an NVRAM entry without data, FTPR and NFTP;
/// FTPR = `$MN2` signed with the exponent-17 test key, `$MME` headers
/// (0x60 each, uncompressed modules) and module data.
pub fn gen2_stock() -> SynthMe {
    gen2(0x10000, 0x40000, GEN2_MODULES)
}

/// Gen 2 with FTPR at `ftpr` in a region of `size` bytes.
pub fn gen2(ftpr: usize, size: usize, modules: &[&str]) -> SynthMe {
    gen2_huffman(ftpr, size, modules, &[])
}

/// Huffman chunk size and the module address space base of [`gen2_huffman`].
pub const HUFFMAN_CHUNK: usize = 0x400;
const HUFFMAN_BASE: u32 = 0x2000_0000;

/// Gen 2 where the modules named in `huffman` are Huffman-compressed: their
/// headers point at one shared LLUT, whose chunk table gives 3 chunks (0x40
/// bytes of data each) to each of them; the other modules are LZMA.
pub fn gen2_huffman(ftpr: usize, size: usize, modules: &[&str], huffman: &[&str]) -> SynthMe {
    let mut buf = vec![0xFFu8; size];
    // Manifest body: partition name (0xC) + module headers; data after.
    let header_len = 0x80 + 0x100 + 4 + 0x100;
    let body_len = 0xC + 0x60 * modules.len();
    let mut data_at = (header_len + body_len).div_ceil(0x100) * 0x100;
    let mut body = vec![0u8; body_len];
    body[0..4].copy_from_slice(b"FTPR");
    let mut datas = Vec::new();
    for (i, name) in modules.iter().enumerate() {
        let data = filler(0x300 + 0x20 * i, 0x10 + i as u8);
        let h = 0xC + 0x60 * i;
        body[h..h + 4].copy_from_slice(b"$MME");
        body[h + 4..h + 4 + name.len()].copy_from_slice(name.as_bytes());
        body[h + 0x14..h + 0x34].copy_from_slice(&Sha256::digest(&data));
        body[h + 0x34..h + 0x38].copy_from_slice(&le32(0x2000_0000 + 0x10000 * i as u32));
        body[h + 0x38..h + 0x3C].copy_from_slice(&le32(data_at as u32));
        body[h + 0x3C..h + 0x40].copy_from_slice(&le32(data.len() as u32));
        body[h + 0x40..h + 0x44].copy_from_slice(&le32(data.len() as u32));
        if huffman.contains(name) {
            body[h + 0x3C..h + 0x40].copy_from_slice(&le32(2 * HUFFMAN_CHUNK as u32));
            body[h + 0x50..h + 0x54].copy_from_slice(&le32(1 << 4));
            continue; // data offset: the LLUT, patched below
        }
        body[h + 0x50..h + 0x54].copy_from_slice(&le32(2 << 4)); // LZMA
        datas.push((data_at, data.clone()));
        data_at = (data_at + data.len()).div_ceil(0x40) * 0x40;
    }
    if !huffman.is_empty() {
        let llut_at = data_at;
        let count = 64 * modules.len();
        let mut llut = vec![0u8; 0x40 + 4 * count];
        llut[0..4].copy_from_slice(b"LLUT");
        llut[4..8].copy_from_slice(&le32(count as u32));
        llut[8..12].copy_from_slice(&le32(HUFFMAN_BASE - 0x1000_0000));
        llut[0x30..0x34].copy_from_slice(&le32(HUFFMAN_CHUNK as u32));
        let mut chunk_at = (llut_at + llut.len()).div_ceil(0x40) * 0x40;
        let stream_start = ftpr + chunk_at;
        for i in 0..count {
            llut[0x40 + 4 * i..0x44 + 4 * i].copy_from_slice(&le32(0x8000_0000));
        }
        for (i, name) in modules.iter().enumerate() {
            if !huffman.contains(name) {
                continue;
            }
            let h = 0xC + 0x60 * i;
            body[h + 0x38..h + 0x3C].copy_from_slice(&le32(llut_at as u32));
            for c in 0..3 {
                let slot = 0x40 + 4 * (64 * i + c);
                llut[slot..slot + 4].copy_from_slice(&le32((ftpr + chunk_at) as u32));
                datas.push((chunk_at, filler(0x40, 0x40 + i as u8)));
                chunk_at += 0x40;
            }
        }
        llut[0x10..0x14].copy_from_slice(&le32((ftpr + chunk_at - stream_start) as u32));
        llut[0x14..0x18].copy_from_slice(&le32(stream_start as u32));
        datas.push((llut_at, llut));
        data_at = chunk_at;
    }
    let spec = ManifestSpec {
        version: [8, 1, 65, 1586],
        svn: 2,
        module_count: modules.len() as u32,
    };
    let man = manifest(&RSA2048_E17, spec, &body);
    put(&mut buf, ftpr, &man);
    for (at, data) in &datas {
        put(&mut buf, ftpr + at, data);
    }
    let ftpr_len = data_at.div_ceil(0x1000) * 0x1000;
    let entries = [
        entry("FOVD", 0x1000, 0x1000, 3),
        entry("EFFS", 0x2000, 0x4000, 4),
        entry("NVCL", 0xFFFF_FFFF, 0x1000, 2),
        entry("FTPR", ftpr as u32, ftpr_len as u32, 0),
        entry("NFTP", (ftpr + ftpr_len) as u32, 0x2000, 0),
    ];
    put(&mut buf, 0x1000, &filler(0x1000, 1));
    put(&mut buf, 0x2000, &filler(0x4000, 2));
    put(&mut buf, ftpr + ftpr_len, &filler(0x2000, 3));
    buf.truncate(size);
    write_fpt(&mut buf, 0x10, 0x20, 0x30, &entries);
    SynthMe {
        bytes: buf,
        fpt: Some(0x10),
        ftpr,
        manifest: ftpr,
        cpd: None,
        modules: Some(ftpr + header_len + 0xC),
        bpdt: None,
    }
}

/// What me_cleaner makes of [`gen2_stock`] with `-r -t`: only FTPR left in
/// the `$FPT`, EFFS flag cleared, non-essential modules 0xFF, FTPR moved to
/// 0x400 (`relocate`), region cut right after the kept modules (`truncate`).
pub fn gen2_cleaned(relocate: bool, truncate: bool) -> SynthMe {
    let stock = gen2_stock();
    let src = stock.bytes;
    // me_cleaner does not shrink the FTPR entry: it still claims the old length.
    let ftpr_len = 0x4000usize;
    let new_ftpr = if relocate { 0x400 } else { stock.ftpr };
    let mut buf = vec![0xFFu8; src.len()];
    let keep = (src.len() - stock.ftpr).min(0x3000 + 0x1000);
    buf[new_ftpr..new_ftpr + keep].copy_from_slice(&src[stock.ftpr..stock.ftpr + keep]);
    // Blank the non-essential modules' data.
    let mods = stock.modules.unwrap() - stock.ftpr + new_ftpr;
    for i in 0..GEN2_MODULES.len() {
        let h = mods + 0x60 * i;
        let name = &buf[h + 4..h + 0x14];
        let essential = name.starts_with(b"ROMP\0") || name.starts_with(b"BUP\0");
        if !essential {
            let off = u32::from_le_bytes(buf[h + 0x38..h + 0x3C].try_into().unwrap()) as usize;
            let len = u32::from_le_bytes(buf[h + 0x40..h + 0x44].try_into().unwrap()) as usize;
            buf[new_ftpr + off..new_ftpr + off + len].fill(0xFF);
        }
    }
    let entries = [entry("FTPR", new_ftpr as u32, ftpr_len as u32 * 4, 0)];
    write_fpt(&mut buf, 0x10, 0x20, 0x30, &entries);
    buf[0x24] &= !1; // EFFS present flag
    refresh_fpt_checksum(&mut buf, 0x10);
    if truncate {
        buf.truncate(new_ftpr + 0x3000);
    }
    SynthMe {
        bytes: buf,
        fpt: Some(0x10),
        ftpr: new_ftpr,
        manifest: new_ftpr,
        cpd: None,
        modules: Some(mods),
        bpdt: None,
    }
}

/// A stock-looking gen 3 region (CSME 11.8): `$FPT` (header 0x20) at 0x10
/// with FTPR, MFS, NFTP and an invalid entry; FTPR = `$CPD` v1 holding
/// FTPR.man (RSA-2048 test key, exponent 17) and [`CSE_MODULES`].
pub fn gen3_stock() -> SynthMe {
    let mut buf = vec![0xFFu8; 0x20000];
    let ftpr = 0x1000;
    let (part, man) = cse_ftpr(&RSA2048_E17, [11, 8, 82, 3838], 1, CSE_MODULES);
    put(&mut buf, ftpr, &part);
    let ftpr_len = part.len().div_ceil(0x1000) * 0x1000;
    let mfs = ftpr + ftpr_len;
    put(&mut buf, mfs, &filler(0x2000, 9));
    let nftp = mfs + 0x2000;
    let (nftp_part, _) = cse_partition("NFTP", &RSA2048_E17, [11, 8, 82, 3838], 1, &["pavp"]);
    put(&mut buf, nftp, &nftp_part);
    let mut invalid = entry("ROMB", 0, 0, 0);
    invalid.valid = false;
    let entries = [
        entry("FTPR", ftpr as u32, ftpr_len as u32, 0),
        entry("MFS", mfs as u32, 0x2000, 1),
        entry("NFTP", nftp as u32, 0x1000, 0),
        invalid,
    ];
    buf.truncate(0x20000);
    write_fpt(&mut buf, 0x10, 0x20, 0x20, &entries);
    SynthMe {
        bytes: buf,
        fpt: Some(0x10),
        ftpr,
        manifest: ftpr + man,
        cpd: Some(ftpr),
        modules: None,
        bpdt: None,
    }
}

// ---------------------------------------------------------------- IFWI/BPDT

/// A BPDT (version 1 or 2, with its CRC-32) listing `(type, offset, size)`
/// entries, offsets relative to the boot partition start.
pub fn bpdt(version: u8, entries: &[(u16, u32, u32)]) -> Vec<u8> {
    let mut out = vec![0u8; 0x18];
    out[0..4].copy_from_slice(&le32(0x55AA));
    out[4..6].copy_from_slice(&(entries.len() as u16).to_le_bytes());
    out[6] = version;
    for &(t, off, size) in entries {
        out.extend_from_slice(&t.to_le_bytes());
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&le32(off));
        out.extend_from_slice(&le32(size));
    }
    if version >= 2 {
        let crc = crc32fast::hash(&out[4..]);
        out[8..12].copy_from_slice(&le32(crc));
    }
    out
}

/// The IFWI data partition: a `$FPT` whose entry offsets are relative to
/// itself, with MFS and UTOK.
fn data_partition(buf: &mut Vec<u8>, at: usize, version: u8) {
    put(buf, at + 0x1000, &filler(0x2000, 5));
    put(buf, at + 0x3000, &filler(0x1000, 6));
    let entries = [
        entry("MFS", 0x1000, 0x2000, 1),
        entry("UTOK", 0x3000, 0x1000, 1),
    ];
    write_fpt(buf, at, version, 0x20, &entries);
}

/// A CSME 14-like IFWI 1.6 region: layout table at 0 (data at 0x1000, BP1
/// at 0x6000, BP2 at 0x16000), BP1 BPDT v1 with RBEP-like and FTPR, BP2 with
/// NFTP.
pub fn ifwi16() -> SynthMe {
    let mut buf = vec![0xFFu8; 0x20000];
    let (data, bp1, bp2) = (0x1000usize, 0x6000usize, 0x16000usize);
    let mut t = vec![0u8; 0x38];
    t[0..4].copy_from_slice(&le32(data as u32));
    t[4..8].copy_from_slice(&le32(0x5000));
    t[8..12].copy_from_slice(&le32(bp1 as u32));
    t[12..16].copy_from_slice(&le32(0x10000));
    t[16..20].copy_from_slice(&le32(bp2 as u32));
    t[20..24].copy_from_slice(&le32(0x8000));
    put(&mut buf, 0, &[0u8; 0x10]);
    put(&mut buf, 0x10, &t);
    put(&mut buf, 0x40, &0x22u64.to_le_bytes());
    data_partition(&mut buf, data, 0x20);
    let (ftpr_part, man) = cse_ftpr(&RSA2048_E17, [14, 0, 10, 1204], 1, CSE_MODULES);
    let (rbep, _) = cse_partition("RBEP", &RSA2048_E17, [14, 0, 10, 1204], 1, &["rbe"]);
    put(&mut buf, bp1 + 0x1000, &rbep);
    put(&mut buf, bp1 + 0x3000, &ftpr_part);
    let table = bpdt(1, &[(1, 0x1000, 0x2000), (2, 0x3000, 0xD000), (9, 0, 0)]);
    put(&mut buf, bp1, &table);
    let (nftp, _) = cse_partition("NFTP", &RSA2048_E17, [14, 0, 10, 1204], 1, &["pavp"]);
    put(&mut buf, bp2 + 0x1000, &nftp);
    put(&mut buf, bp2, &bpdt(1, &[(7, 0x1000, 0x7000)]));
    buf.truncate(0x20000);
    SynthMe {
        bytes: buf,
        fpt: Some(data),
        ftpr: bp1 + 0x3000,
        manifest: bp1 + 0x3000 + man,
        cpd: Some(bp1 + 0x3000),
        modules: None,
        bpdt: Some(bp1),
    }
}

/// A CSME 16.1-like IFWI 1.7 region: layout table 1.7 with CRC-32, data
/// `$FPT` version 0x21 (CRC-32), BP1 BPDT v2 with FTPR in a `$CPD` v2,
/// manifest 0x21000 signed with the RSA-3072 test key (PSS / SHA-384).
pub fn ifwi17() -> SynthMe {
    let mut buf = vec![0xFFu8; 0x30000];
    let (bp1, data, bp3) = (0x1000usize, 0x20000usize, 0x28000usize);
    let mut t = vec![0u8; 0x48];
    t[0..2].copy_from_slice(&0x48u16.to_le_bytes());
    t[8..12].copy_from_slice(&le32(data as u32));
    t[12..16].copy_from_slice(&le32(0x6000));
    t[16..20].copy_from_slice(&le32(bp1 as u32));
    t[20..24].copy_from_slice(&le32(0x1F000));
    t[32..36].copy_from_slice(&le32(bp3 as u32));
    t[36..40].copy_from_slice(&le32(0x8000));
    put(&mut buf, 0, &[0u8; 0x10]);
    put(&mut buf, 0x10, &t);
    let mut c = crc32fast::Hasher::new();
    c.update(&buf[0x10..0x14]);
    c.update(&[0; 4]);
    c.update(&buf[0x18..0x58]);
    let crc = c.finalize();
    put(&mut buf, 0x14, &le32(crc));
    data_partition(&mut buf, data, 0x21);
    let (ftpr_part, man) = cse_ftpr(&RSA3072, [16, 1, 30, 2307], 2, CSE_MODULES);
    put(&mut buf, bp1 + 0x1000, &ftpr_part);
    put(&mut buf, bp1, &bpdt(2, &[(2, 0x1000, 0x1E000)]));
    let (nftp, _) = cse_partition("NFTP", &RSA3072, [16, 1, 30, 2307], 2, &["pavp"]);
    put(&mut buf, bp3 + 0x1000, &nftp);
    put(&mut buf, bp3, &bpdt(2, &[(7, 0x1000, 0x7000)]));
    buf.truncate(0x30000);
    SynthMe {
        bytes: buf,
        fpt: Some(data),
        ftpr: bp1 + 0x1000,
        manifest: bp1 + 0x1000 + man,
        cpd: Some(bp1 + 0x1000),
        modules: None,
        bpdt: Some(bp1),
    }
}

/// A Gemini Lake-like bare BPDT (CSTXE 4): FTPR and a secondary BPDT that
/// lists NFTP, all offsets relative to the BPDT start.
pub fn glk_bpdt() -> SynthMe {
    let mut buf = vec![0xFFu8; 0x20000];
    let (ftpr_part, man) = cse_ftpr(
        &RSA2048_E17,
        [4, 0, 50, 2083],
        1,
        &["kernel", "syslib", "bup"],
    );
    put(&mut buf, 0x1000, &ftpr_part);
    put(&mut buf, 0x18000, &bpdt(1, &[(7, 0x19000, 0x4000)]));
    let (nftp, _) = cse_partition("NFTP", &RSA2048_E17, [4, 0, 50, 2083], 1, &["pavp"]);
    put(&mut buf, 0x19000, &nftp);
    put(
        &mut buf,
        0,
        &bpdt(1, &[(2, 0x1000, 0x10000), (5, 0x18000, 0x1000)]),
    );
    buf.truncate(0x20000);
    SynthMe {
        bytes: buf,
        fpt: None,
        ftpr: 0x1000,
        manifest: 0x1000 + man,
        cpd: Some(0x1000),
        modules: None,
        bpdt: Some(0),
    }
}
