//! Pure parsing and transforms of Intel SPI flash images: bytes in, typed
//! values or new bytes out. No I/O, no panics on hostile input.
