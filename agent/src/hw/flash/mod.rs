//! SPI flash access: MTD, flashrom and image files, behind one trait; safe writes.
