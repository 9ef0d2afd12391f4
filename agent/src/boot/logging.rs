//! A `log` implementation for PID 1: every record to `/dev/kmsg` (so it is
//! in the kernel log, with a priority, beside the drivers' messages) and to
//! the console (so the operator sees it whatever the kernel's loglevel).
//! Without a console device it writes to stderr.

use log::{Level, LevelFilter, Log, Metadata, Record};
use std::fs::OpenOptions;
use std::io::Write;
use std::sync::Mutex;

/// The syslog priority `/dev/kmsg` expects in `<N>` for a log level.
pub fn kmsg_priority(level: Level) -> u8 {
    match level {
        Level::Error => 3,
        Level::Warn => 4,
        Level::Info => 6,
        Level::Debug | Level::Trace => 7,
    }
}

/// Formats one line for `/dev/kmsg`: `<prio>fortros: message`. The kernel
/// takes one record per write; embedded newlines are folded.
pub fn kmsg_line(level: Level, msg: &str) -> String {
    format!(
        "<{}>fortros: {}\n",
        kmsg_priority(level),
        msg.replace('\n', " | ")
    )
}

/// Formats one line for the console.
pub fn console_line(level: Level, msg: &str) -> String {
    format!("fortros [{}] {msg}\n", level.as_str().to_lowercase())
}

struct Sinks {
    kmsg: Option<std::fs::File>,
    console: Option<std::fs::File>,
}

pub struct InitLogger {
    sinks: Mutex<Sinks>,
    level: LevelFilter,
}

impl Log for InitLogger {
    fn enabled(&self, m: &Metadata) -> bool {
        m.level() <= self.level
    }
    fn log(&self, r: &Record) {
        if !self.enabled(r.metadata()) {
            return;
        }
        let msg = r.args().to_string();
        let Ok(mut s) = self.sinks.lock() else { return };
        if let Some(k) = s.kmsg.as_mut() {
            let _ = k.write_all(kmsg_line(r.level(), &msg).as_bytes());
        }
        let line = console_line(r.level(), &msg);
        match s.console.as_mut() {
            Some(c) => {
                let _ = c.write_all(line.as_bytes());
            }
            None => {
                let _ = std::io::stderr().write_all(line.as_bytes());
            }
        }
    }
    fn flush(&self) {}
}

/// Installs the logger (once; later calls are ignored). Opens `/dev/kmsg`
/// and `/dev/console` if they exist (devtmpfs must be mounted first).
pub fn init(level: LevelFilter) {
    let open = |p: &str| OpenOptions::new().write(true).open(p).ok();
    let logger = InitLogger {
        sinks: Mutex::new(Sinks {
            kmsg: open("/dev/kmsg"),
            console: open("/dev/console"),
        }),
        level,
    };
    if log::set_logger(Box::leak(Box::new(logger))).is_ok() {
        log::set_max_level(level);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_carry_priority_and_stay_one_record() {
        assert_eq!(kmsg_line(Level::Error, "a\nb"), "<3>fortros: a | b\n");
        assert_eq!(kmsg_line(Level::Info, "x"), "<6>fortros: x\n");
        assert_eq!(
            console_line(Level::Warn, "careful"),
            "fortros [warn] careful\n"
        );
    }
}
