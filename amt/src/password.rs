//! AMT admin passwords: AMT's rules (8-32 characters, at least one upper
//! case letter, one lower case letter, one digit and one special character;
//! Intel AMT developer guide, me-runtime.md §5.5) and generation from
//! random bytes (the node uses the TPM's RNG).

use thiserror::Error;
use zeroize::Zeroizing;

pub const MIN_LEN: usize = 8;
pub const MAX_LEN: usize = 32;
/// Length of generated passwords.
pub const GENERATED_LEN: usize = 24;

const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
const LOWER: &[u8] = b"abcdefghijkmnopqrstuvwxyz";
const DIGIT: &[u8] = b"23456789";
/// No `:` (it separates the Digest A1 fields), no `"` or `,` (header
/// quoting), no spaces.
const SPECIAL: &[u8] = b"!#%&()*+-./;<=>?@[]^_{}~";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum PasswordError {
    #[error("AMT password must be {MIN_LEN} to {MAX_LEN} characters, got {0}")]
    Length(usize),
    #[error("AMT password needs at least one {0}")]
    Missing(&'static str),
    #[error("AMT password may only hold printable ASCII without ':', '\"' or ','")]
    Character,
}

/// Checks AMT's complexity rules (never says which character failed: the
/// message may end up in a log).
pub fn check(p: &str) -> Result<(), PasswordError> {
    let len = p.chars().count();
    if !(MIN_LEN..=MAX_LEN).contains(&len) {
        return Err(PasswordError::Length(len));
    }
    if p.bytes()
        .any(|b| !(0x21..0x7f).contains(&b) || b == b':' || b == b'"' || b == b',')
    {
        return Err(PasswordError::Character);
    }
    let has = |f: fn(&u8) -> bool| p.as_bytes().iter().any(f);
    if !has(u8::is_ascii_uppercase) {
        return Err(PasswordError::Missing("upper case letter"));
    }
    if !has(u8::is_ascii_lowercase) {
        return Err(PasswordError::Missing("lower case letter"));
    }
    if !has(u8::is_ascii_digit) {
        return Err(PasswordError::Missing("digit"));
    }
    if !has(|b| b.is_ascii_punctuation()) {
        return Err(PasswordError::Missing("special character"));
    }
    Ok(())
}

/// A password of [`GENERATED_LEN`] characters meeting [`check`], drawn
/// from `random` (called for more bytes as needed; unbiased by rejection).
pub fn generate(
    mut random: impl FnMut(&mut [u8]) -> Result<(), String>,
) -> Result<Zeroizing<String>, String> {
    let alphabet: Vec<u8> = [UPPER, LOWER, DIGIT, SPECIAL].concat();
    // The largest multiple of the alphabet size below 256: bytes above it
    // are dropped so every character is equally likely.
    let limit = 256 - 256 % alphabet.len();
    for _attempt in 0..64 {
        let mut out = Zeroizing::new(String::with_capacity(GENERATED_LEN));
        let mut buf = Zeroizing::new([0u8; 64]);
        while out.len() < GENERATED_LEN {
            random(&mut buf[..])?;
            for &b in buf.iter() {
                if (b as usize) < limit && out.len() < GENERATED_LEN {
                    if let Some(&c) = alphabet.get(b as usize % alphabet.len()) {
                        out.push(c as char);
                    }
                }
            }
        }
        if check(&out).is_ok() {
            return Ok(out);
        }
    }
    Err("random source produced no acceptable password in 64 attempts".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        assert_eq!(check("Aa1!"), Err(PasswordError::Length(4)));
        assert_eq!(check(&"Aa1!".repeat(9)), Err(PasswordError::Length(36)));
        assert_eq!(
            check("aa1!aaaa"),
            Err(PasswordError::Missing("upper case letter"))
        );
        assert_eq!(
            check("AA1!AAAA"),
            Err(PasswordError::Missing("lower case letter"))
        );
        assert_eq!(check("Aa!!aaaa"), Err(PasswordError::Missing("digit")));
        assert_eq!(
            check("Aa11aaaa"),
            Err(PasswordError::Missing("special character"))
        );
        assert_eq!(check("Aa1:aaaa"), Err(PasswordError::Character));
        assert_eq!(check("Aa1! aaa"), Err(PasswordError::Character));
        assert_eq!(check("Aa1!aaaaé"), Err(PasswordError::Character));
        assert!(check("P@ssw0rd").is_ok());
    }

    #[test]
    fn generated_passwords_pass_and_differ() {
        let mut state = 1u64;
        let mut rng = |b: &mut [u8]| {
            for x in b.iter_mut() {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                *x = (state >> 33) as u8;
            }
            Ok(())
        };
        let a = generate(&mut rng).unwrap();
        let b = generate(&mut rng).unwrap();
        assert_eq!(a.len(), GENERATED_LEN);
        assert!(check(&a).is_ok() && check(&b).is_ok());
        assert_ne!(*a, *b);
        // A stuck source cannot satisfy the rules: an error, not a loop.
        assert!(generate(|b: &mut [u8]| {
            b.fill(0);
            Ok(())
        })
        .is_err());
        assert!(generate(|_: &mut [u8]| Err("TPM gone".into())).is_err());
    }
}
