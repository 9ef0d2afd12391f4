//! The rest of the node: the SPI image as /dev/mtd0, swtpm as /dev/tpmrm0,
//! and user-mode networking.

use fortros_e2e::{boot, node_available, work, Boot};

#[test]
fn spi_image_is_mtd0_and_writes_reach_the_host_file_with_tpm_and_network() {
    if !node_available("spi_image_is_mtd0_and_writes_reach_the_host_file_with_tpm_and_network") {
        return;
    }
    // 1 MiB image: an IFD-like signature at 0x10, 0xFF elsewhere, and zeros
    // in the last erase block (the guest's write must replace them).
    let mut img = vec![0xFFu8; 1 << 20];
    img[0x10..0x14].copy_from_slice(&[0x5A, 0xA5, 0xF0, 0x0F]);
    let last = img.len() - 4096;
    img[last..].fill(0);
    let dir = work().join("e2e");
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("spi-mtd.bin");
    std::fs::write(&path, &img).unwrap();
    let o = boot(&Boot {
        name: "node-mtd",
        checks: "mtd,tpm,net",
        append: "fortros.mtdmarker=WRITTEN-BY-GUEST",
        spi: Some(&path),
        tpm: true,
        net: true,
        ..Boot::default()
    });
    assert_eq!(o.get("mtd.dev"), "/dev/mtd0");
    assert_eq!(o.get("mtd.size"), (1u32 << 20).to_string());
    assert_eq!(o.get("mtd.erasesize"), "4096");
    assert!(o.get("mtd.head").starts_with(&"ff".repeat(16)));
    assert_eq!(&o.get("mtd.head")[32..40], "5aa5f00f");
    let after = std::fs::read(&path).unwrap();
    assert_eq!(&after[last..last + 16], b"WRITTEN-BY-GUEST");
    assert!(
        after[last + 16..].iter().all(|b| *b == 0),
        "conv=sync pads with zeros"
    );
    assert_eq!(&after[..last], &img[..last], "nothing else changed");
    // swtpm as tpm-tis
    assert_eq!(o.get("tpm.tpmrm0"), "/dev/tpmrm0");
    assert_eq!(o.get("tpm.version"), "2");
    // TPM2_GetRandom(8): tag 8001, size 0x14, rc 0, 8 bytes
    assert!(o.get("tpm.getrandom").starts_with("80010000001400000000"));
    // DHCP from QEMU's user-mode network
    assert_eq!(o.get("net.ipv4"), "10.0.2.15/24");
    assert_eq!(o.get("net.route"), "10.0.2.2");
}
