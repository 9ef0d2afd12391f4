//! The live ME: PCI config space (HFSTS), sysfs, `/dev/meiN` (MKHI, AMTHI), Boot Guard.
