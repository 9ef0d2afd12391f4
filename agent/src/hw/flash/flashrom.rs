//! The flash through a `flashrom` subprocess, for platforms where the kernel
//! exposes no MTD device for the BIOS flash (Debian's kernels lack
//! spi-intel). Each range is named in a layout file and selected with
//! `-i`, so flashrom reads, erases or writes only that range. flashrom's own
//! output is turned into one clear reason when it fails.
//!
//! flashrom erases as part of writing and picks the erase commands itself;
//! the erase block size here (4 KiB unless told) only shapes our plan.

use super::{check_erase, check_range, Flash, FlashError};
use std::io::Write;
use std::path::PathBuf;
use std::process::Command;

/// The flashrom program: `$FORTROS_FLASHROM`, else `flashrom` on PATH.
pub fn program() -> String {
    std::env::var("FORTROS_FLASHROM").unwrap_or_else(|_| "flashrom".into())
}

/// Largest chip size accepted from flashrom's output.
const MAX_CHIP: u64 = 256 << 20;

/// The name of our single layout region.
const REGION: &str = "fortros";

/// A flash reached through flashrom with one programmer string
/// (`internal`, `dummy:emulate=W25Q128FV,image=/tmp/x.bin`, ...).
#[derive(Debug)]
pub struct FlashromFlash {
    program: String,
    programmer: String,
    size: u64,
    block: u32,
    dir: tempfile::TempDir,
}

/// Known flashrom messages and what they mean for the operator.
const KNOWN: &[(&str, &str)] = &[
    ("No EEPROM/flash device found", "no flash chip found by this programmer"),
    ("Multiple flash chip definitions match", "several chip definitions match: name the chip with -c"),
    ("Programmer initialization failed", "programmer initialization failed (wrong programmer, no access to the chipset, or lockdown)"),
    ("Error: Unknown programmer", "unknown programmer name"),
    ("Invalid region specified", "flashrom rejected the layout region"),
    ("Transaction error", "SPI transaction error (the region may be write-protected by the descriptor or the chipset)"),
    ("Erase/write failed", "erase or write failed"),
    ("Verification FAILED", "verification after writing failed"),
    ("VERIFY FAILED", "verification after writing failed"),
    ("Your flash chip is in an unknown state", "the chip is in an unknown state after a failed write"),
    ("Error: Image size", "image size does not match the chip"),
    ("Permission denied", "permission denied (run as root; lockdown blocks /dev/mem)"),
];

/// Turns flashrom's combined output into one line: a known message mapped
/// to its meaning (with flashrom's own line), else its last non-empty line.
pub fn explain(output: &str) -> String {
    for line in output.lines() {
        for (needle, meaning) in KNOWN {
            if line.contains(needle) {
                return format!("{meaning} (flashrom: {})", line.trim());
            }
        }
    }
    output
        .lines()
        .rev()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .unwrap_or("no output")
        .to_string()
}

/// Finds the chip size in `--flash-size` output: the last line that is a
/// plain decimal number.
pub fn parse_flash_size(output: &str) -> Option<u64> {
    output
        .lines()
        .rev()
        .filter_map(|l| l.trim().parse::<u64>().ok())
        .find(|&n| n > 0)
}

impl FlashromFlash {
    /// Probes the chip (`--flash-size`) with the 4 KiB planning block.
    pub fn open(programmer: &str) -> Result<Self, FlashError> {
        Self::open_with(&program(), programmer, 4096)
    }

    pub fn open_with(program: &str, programmer: &str, block: u32) -> Result<Self, FlashError> {
        let dir = tempfile::Builder::new()
            .prefix("fortros-flashrom")
            .tempdir()
            .map_err(|source| FlashError::Open {
                device: std::env::temp_dir(),
                source,
            })?;
        let mut f = FlashromFlash {
            program: program.to_string(),
            programmer: programmer.to_string(),
            size: 0,
            block,
            dir,
        };
        let out = f.run("probe", &["--flash-size"])?;
        f.size = parse_flash_size(&out).ok_or_else(|| FlashError::Flashrom {
            action: "probe".into(),
            exit: "0".into(),
            reason: format!("no chip size in the output: {}", explain(&out)),
        })?;
        // The largest SPI NOR parts are 128 MiB; anything beyond 256 MiB is a
        // misread, and we hold whole-chip buffers.
        if f.size > MAX_CHIP {
            return Err(FlashError::Flashrom {
                action: "probe".into(),
                exit: "0".into(),
                reason: format!("implausible chip size {:#x}", f.size),
            });
        }
        log::info!("flashrom {programmer}: chip of {:#x} bytes", f.size);
        Ok(f)
    }

    fn run(&self, action: &str, args: &[&str]) -> Result<String, FlashError> {
        let out = Command::new(&self.program)
            .arg("-p")
            .arg(&self.programmer)
            .args(args)
            .output()
            .map_err(|source| FlashError::FlashromSpawn {
                program: self.program.clone(),
                source,
            })?;
        let text = format!(
            "{}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        log::debug!("flashrom {action} {args:?}: {}", out.status);
        if !out.status.success() {
            return Err(FlashError::Flashrom {
                action: action.to_string(),
                exit: out
                    .status
                    .code()
                    .map_or("signal".to_string(), |c| c.to_string()),
                reason: explain(&text),
            });
        }
        Ok(text)
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Writes a layout file naming `offset..offset+len` and returns its path.
    fn layout(&self, offset: u64, len: u64) -> Result<String, FlashError> {
        let p = self.path("layout.txt");
        let text = format!("{:08x}:{:08x} {REGION}\n", offset, offset + len - 1);
        std::fs::write(&p, text).map_err(|e| self.io_error("layout file", offset, len, e))?;
        Ok(p.display().to_string())
    }

    /// A whole-chip image file: 0xFF except `data` at `offset`.
    fn image_with(&self, offset: u64, data: &[u8]) -> Result<String, FlashError> {
        let p = self.path("write.bin");
        let len = data.len() as u64;
        let mut f =
            std::fs::File::create(&p).map_err(|e| self.io_error("image file", offset, len, e))?;
        let mut img = vec![0xFFu8; self.size as usize];
        if let Some(dst) = img.get_mut(offset as usize..(offset + len) as usize) {
            dst.copy_from_slice(data);
        }
        f.write_all(&img)
            .map_err(|e| self.io_error("image file", offset, len, e))?;
        Ok(p.display().to_string())
    }
}

impl Flash for FlashromFlash {
    fn name(&self) -> String {
        format!("flashrom -p {}", self.programmer)
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn erase_block_size(&self) -> u32 {
        self.block
    }
    fn read_chunk_hint(&self) -> usize {
        // One flashrom run reads the whole chip: don't pay its start-up per MiB.
        self.size as usize
    }
    fn read(&mut self, offset: u64, buf: &mut [u8]) -> Result<(), FlashError> {
        let len = buf.len() as u64;
        check_range(&self.name(), offset, len, self.size)?;
        if len == 0 {
            return Ok(());
        }
        let out = self.path("read.bin");
        let out_s = out.display().to_string();
        if offset == 0 && len == self.size {
            self.run("read", &["-r", &out_s])?;
        } else {
            let layout = self.layout(offset, len)?;
            self.run("read", &["-l", &layout, "-i", REGION, "-r", &out_s])?;
        }
        let all = std::fs::read(&out).map_err(|e| self.io_error("read result", offset, len, e))?;
        let got = all
            .get(offset as usize..(offset + len) as usize)
            .ok_or_else(|| FlashError::Flashrom {
                action: "read".into(),
                exit: "0".into(),
                reason: format!(
                    "output file is {:#x} bytes, expected {:#x}",
                    all.len(),
                    self.size
                ),
            })?;
        buf.copy_from_slice(got);
        Ok(())
    }
    fn erase(&mut self, offset: u64, len: u64) -> Result<(), FlashError> {
        check_erase(&self.name(), offset, len, self.size, self.block)?;
        let layout = self.layout(offset, len)?;
        self.run("erase", &["-l", &layout, "-i", REGION, "-E"])?;
        Ok(())
    }
    fn write(&mut self, offset: u64, data: &[u8]) -> Result<(), FlashError> {
        // flashrom erases where needed and verifies the included region.
        self.erase_and_write(offset, data)
    }
    fn erase_and_write(&mut self, offset: u64, data: &[u8]) -> Result<(), FlashError> {
        let len = data.len() as u64;
        check_range(&self.name(), offset, len, self.size)?;
        if len == 0 {
            return Ok(());
        }
        let layout = self.layout(offset, len)?;
        let image = self.image_with(offset, data)?;
        self.run("write", &["-l", &layout, "-i", REGION, "-N", "-w", &image])?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explains_known_failures() {
        let out = "flashrom v1.3\nCalibrating delay loop... OK.\nNo EEPROM/flash device found.\nNote: flashrom can never write if the flash chip isn't found automatically.\n";
        let e = explain(out);
        assert!(e.starts_with("no flash chip found"), "{e}");
        assert!(e.contains("flashrom: No EEPROM/flash device found."), "{e}");
        assert_eq!(
            explain("a\nsomething odd happened\n\n"),
            "something odd happened"
        );
        assert_eq!(explain(""), "no output");
    }

    #[test]
    fn parses_flash_size() {
        let out = "flashrom unknown on Linux\nFound Winbond flash chip \"W25Q128.V\" (16384 kB, SPI) on dummy.\nThanks for your help!\n16777216\n";
        assert_eq!(parse_flash_size(out), Some(16 << 20));
        assert_eq!(parse_flash_size("no number here\n"), None);
    }

    #[test]
    fn a_missing_program_is_a_spawn_error() {
        let e = FlashromFlash::open_with("/nonexistent/flashrom", "dummy", 4096).unwrap_err();
        assert!(matches!(e, FlashError::FlashromSpawn { .. }), "{e}");
    }
}
