//! A builder of synthetic Intel flash descriptors (IFD v1 or v2), written
//! from the layout in the reference (§2), not copied from any real image.
//! Defaults give a plausible 8 MiB layout: descriptor 0x0-0xFFF, ME
//! 0x1000-0x1FFFFF, BIOS 0x200000-end; other regions disabled.

/// FLVALSIG.
pub const FLVALSIG: u32 = 0x0FF0_A55A;

#[derive(Debug, Clone)]
pub struct DescriptorBuilder {
    v2: bool,
    signature_at_zero: bool,
    /// FLREG values by index (16 slots on v2, 5 on v1).
    flreg: Vec<u32>,
    masters: Vec<u32>,
    pch_straps: Vec<u32>,
    mch_straps: Vec<u32>,
    fmsba: usize,
    iccriba: u8,
    nr: u8,
    read_clock: u32,
    density_code: u32,
    raw_patches: Vec<(usize, Vec<u8>)>,
}

/// FLREG encoding of an enabled region `base..=limit` (4 KiB aligned).
pub fn flreg(base: u32, limit: u32) -> u32 {
    ((limit >> 12) << 16) | (base >> 12)
}

/// The canonical "disabled" FLREG value on v2 (and what we use on v1).
pub const FLREG_DISABLED: u32 = 0x0000_7FFF;

impl DescriptorBuilder {
    /// An IFD v2 descriptor shaped like a 100-series LP part (PSL 66, MSL 3,
    /// FMSBA 0x300, ICCRIBA 0x31), read clock 6, one 8 MiB chip.
    pub fn v2() -> DescriptorBuilder {
        let mut slots = vec![FLREG_DISABLED; 16];
        slots[0] = 0;
        slots[1] = flreg(0x20_0000, 0x7F_FFFF);
        slots[2] = flreg(0x1000, 0x1F_FFFF);
        DescriptorBuilder {
            v2: true,
            signature_at_zero: false,
            flreg: slots,
            // host: read 0-3, write 1,3; ME: read 0,2,3, write 2; GbE: 3.
            masters: vec![0x00A0_0F00, 0x0040_0D00, 0x0080_0800, 0, 0],
            pch_straps: vec![0; 66],
            mch_straps: vec![0; 3],
            fmsba: 0x300,
            iccriba: 0x31,
            nr: 0,
            read_clock: 6,
            density_code: 4,
            raw_patches: Vec::new(),
        }
    }

    /// An IFD v1 descriptor shaped like a 6/7-series part (NR 2, ISL 18,
    /// MSL 1, FMSBA 0x200, ICCRIBA 0x21), read clock 0, one 8 MiB chip.
    pub fn v1() -> DescriptorBuilder {
        let mut slots = vec![0x0000_1FFF; 5];
        slots[0] = 0;
        slots[1] = flreg(0x20_0000, 0x7F_FFFF);
        slots[2] = flreg(0x1000, 0x1F_FFFF);
        DescriptorBuilder {
            v2: false,
            signature_at_zero: false,
            flreg: slots,
            masters: vec![0x0A0B_0000, 0x0C0D_0000, 0x0808_0118],
            pch_straps: vec![0; 18],
            mch_straps: vec![0; 1],
            fmsba: 0x200,
            iccriba: 0x21,
            nr: 2,
            read_clock: 0,
            density_code: 4,
            raw_patches: Vec::new(),
        }
    }

    /// Puts the signature at 0x0 (ICH8-10) instead of 0x10.
    pub fn signature_at_zero(mut self) -> Self {
        self.signature_at_zero = true;
        self
    }

    /// Sets the strap-section shape (a platform fingerprint).
    pub fn shape(mut self, psl: usize, msl: usize, fmsba: usize, iccriba: u8) -> Self {
        self.pch_straps.resize(psl, 0);
        self.mch_straps.resize(msl, 0);
        self.fmsba = fmsba;
        self.iccriba = iccriba;
        self
    }

    /// Sets FLCOMP's read-clock field.
    pub fn read_clock(mut self, code: u32) -> Self {
        self.read_clock = code & 7;
        self
    }

    /// Sets the chip density code (0 = 512 KiB … 7 = 64 MiB).
    pub fn density_code(mut self, code: u32) -> Self {
        self.density_code = code;
        self
    }

    /// Enables region `index` at `base..=limit`.
    pub fn region(mut self, index: usize, base: u32, limit: u32) -> Self {
        self.flreg[index] = flreg(base, limit);
        self
    }

    /// Sets FLREG`index` to a raw value.
    pub fn flreg_raw(mut self, index: usize, raw: u32) -> Self {
        self.flreg[index] = raw;
        self
    }

    /// Disables region `index`.
    pub fn disable_region(mut self, index: usize) -> Self {
        self.flreg[index] = FLREG_DISABLED;
        self
    }

    /// Sets FLMSTR`number` (1-based).
    pub fn master(mut self, number: usize, raw: u32) -> Self {
        self.masters[number - 1] = raw;
        self
    }

    /// Sets PCHSTRP`n`.
    pub fn pch_strap(mut self, n: usize, value: u32) -> Self {
        self.pch_straps[n] = value;
        self
    }

    /// ORs `mask` into PCHSTRP`n`.
    pub fn set_pch_strap_bits(mut self, n: usize, mask: u32) -> Self {
        self.pch_straps[n] |= mask;
        self
    }

    /// Sets MCHSTRP`n`.
    pub fn mch_strap(mut self, n: usize, value: u32) -> Self {
        self.mch_straps[n] = value;
        self
    }

    /// Overwrites raw bytes at `offset` after building (for hostile cases).
    pub fn patch(mut self, offset: usize, bytes: &[u8]) -> Self {
        self.raw_patches.push((offset, bytes.to_vec()));
        self
    }

    /// The 4 KiB descriptor.
    pub fn build(&self) -> Vec<u8> {
        let mut d = vec![0xFF; 0x1000];
        let put = |d: &mut Vec<u8>, off: usize, v: u32| {
            d[off..off + 4].copy_from_slice(&v.to_le_bytes());
        };
        let sig = if self.signature_at_zero { 0 } else { 0x10 };
        let (fcba, frba, fmba, fpsba) = if self.v2 {
            (0x30, 0x40, 0x80, 0x100)
        } else {
            (0x30, 0x40, 0x60, 0x100)
        };
        put(&mut d, sig, FLVALSIG);
        let flmap0 = (fcba >> 4) as u32 | ((frba >> 4) as u32) << 16 | (self.nr as u32) << 24;
        let flmap1 = (fmba >> 4) as u32
            | 2 << 8
            | ((fpsba >> 4) as u32) << 16
            | (self.pch_straps.len() as u32) << 24;
        let flmap2 = (self.fmsba >> 4) as u32
            | (self.mch_straps.len() as u32) << 8
            | (self.iccriba as u32) << 16;
        put(&mut d, sig + 4, flmap0);
        put(&mut d, sig + 8, flmap1);
        put(&mut d, sig + 12, flmap2);
        put(&mut d, sig + 16, if self.v2 { 0xFFFF_FFFF } else { 0x25 });
        let density = if self.v2 {
            self.density_code | 0xF << 4
        } else {
            self.density_code & 7
        };
        put(&mut d, fcba, density | self.read_clock << 17);
        put(&mut d, fcba + 4, 0);
        put(&mut d, fcba + 8, 0);
        for (i, v) in self.flreg.iter().enumerate() {
            put(&mut d, frba + 4 * i, *v);
        }
        for (i, v) in self.masters.iter().enumerate() {
            put(&mut d, fmba + 4 * i, *v);
        }
        for (i, v) in self.pch_straps.iter().enumerate() {
            put(&mut d, fpsba + 4 * i, *v);
        }
        for (i, v) in self.mch_straps.iter().enumerate() {
            put(&mut d, self.fmsba + 4 * i, *v);
        }
        for (off, bytes) in &self.raw_patches {
            d[*off..*off + bytes.len()].copy_from_slice(bytes);
        }
        d
    }

    /// A full image of `size` bytes: this descriptor at 0, 0xFF elsewhere.
    pub fn build_image(&self, size: usize) -> Vec<u8> {
        let mut image = vec![0xFF; size];
        let d = self.build();
        image[..d.len()].copy_from_slice(&d);
        image
    }
}

/// Builds a full image: `descriptor` at 0 and each `(offset, bytes)` payload
/// (an ME region from the ME builders, say) copied in; 0xFF elsewhere.
pub fn full_image(size: usize, descriptor: &[u8], payloads: &[(usize, &[u8])]) -> Vec<u8> {
    let mut image = vec![0xFF; size];
    image[..descriptor.len()].copy_from_slice(descriptor);
    for (offset, bytes) in payloads {
        image[*offset..*offset + bytes.len()].copy_from_slice(bytes);
    }
    image
}

/// A full image of `size` bytes: `desc` with the ME region set to
/// 0x1000..0x1000 + `me.len()` (rounded up to 4 KiB) and the BIOS region
/// from there to the end, `me` (from the [`super::me`] builders, say)
/// copied in at 0x1000, 0xFF elsewhere.
pub fn full_image_with_me(desc: DescriptorBuilder, me: &[u8], size: usize) -> Vec<u8> {
    let me_end = 0x1000 + me.len().div_ceil(0x1000) * 0x1000;
    let desc = desc
        .region(2, 0x1000, me_end as u32 - 1)
        .region(1, me_end as u32, size as u32 - 1);
    full_image(size, &desc.build(), &[(0x1000, me)])
}

/// A full image laid out as on Apollo/Gemini Lake: the ME region disabled,
/// the BIOS region from 0x1000 to the end, and `ifwi` (a bare BPDT) at its
/// start.
pub fn full_image_with_ifwi_in_bios(desc: DescriptorBuilder, ifwi: &[u8], size: usize) -> Vec<u8> {
    let desc = desc.disable_region(2).region(1, 0x1000, size as u32 - 1);
    full_image(size, &desc.build(), &[(0x1000, ifwi)])
}
