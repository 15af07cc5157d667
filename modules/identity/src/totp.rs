//! TOTP (RFC 6238): HMAC-SHA-1, 6 digits, 30-second steps, ±1 step accepted. Each code is
//! accepted once per user: a code's step must be later than the last step used.

use ring::hmac;

/// Seconds per step.
pub const STEP: u64 = 30;

/// The code of `secret` at step `counter` with `digits` digits (RFC 4226 truncation).
pub fn code_at(secret: &[u8], counter: u64, digits: u32) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, secret);
    let mac = hmac::sign(&key, &counter.to_be_bytes());
    let h = mac.as_ref();
    let offset = (h[h.len() - 1] & 0x0f) as usize;
    let binary = u32::from_be_bytes([
        h[offset] & 0x7f,
        h[offset + 1],
        h[offset + 2],
        h[offset + 3],
    ]);
    format!(
        "{:0width$}",
        binary % 10u32.pow(digits),
        width = digits as usize
    )
}

/// The step of a Unix time.
pub fn step_of(unix: u64) -> u64 {
    unix / STEP
}

/// The step (of `now - 1`, `now`, `now + 1`) at which `code` is valid, if any. Compared in
/// constant time per candidate.
pub fn matching_step(secret: &[u8], code: &str, now_step: u64) -> Option<u64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    [now_step.saturating_sub(1), now_step, now_step + 1]
        .into_iter()
        .find(|s| same(code_at(secret, *s, 6).as_bytes(), code.as_bytes()))
}

/// Equal contents, in time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

const ALPHABET: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

/// RFC 4648 base32 without padding (what authenticator apps read).
pub fn base32(bytes: &[u8]) -> String {
    let mut out = String::new();
    let (mut buffer, mut bits) = (0u32, 0u32);
    for &b in bytes {
        buffer = (buffer << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            out.push(ALPHABET[((buffer >> (bits - 5)) & 31) as usize] as char);
            bits -= 5;
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((buffer << (5 - bits)) & 31) as usize] as char);
    }
    out
}

/// Decodes RFC 4648 base32 (no padding, case-insensitive).
pub fn from_base32(s: &str) -> Option<Vec<u8>> {
    let (mut out, mut buffer, mut bits) = (Vec::new(), 0u32, 0u32);
    for c in s.trim_end_matches('=').bytes() {
        let v = ALPHABET.iter().position(|a| *a == c.to_ascii_uppercase())? as u32;
        buffer = (buffer << 5) | v;
        bits += 5;
        if bits >= 8 {
            out.push((buffer >> (bits - 8)) as u8);
            bits -= 8;
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc_6238_test_vectors_for_sha1() {
        let secret = b"12345678901234567890";
        for (time, code) in [
            (59u64, "94287082"),
            (1_111_111_109, "07081804"),
            (1_111_111_111, "14050471"),
            (1_234_567_890, "89005924"),
            (2_000_000_000, "69279037"),
            (20_000_000_000, "65353130"),
        ] {
            assert_eq!(code_at(secret, step_of(time), 8), code, "T = {time}");
        }
    }

    #[test]
    fn one_step_either_side_is_accepted_and_no_further() {
        let secret = b"12345678901234567890";
        let now = step_of(1_700_000_000);
        for (delta, ok) in [(-2i64, false), (-1, true), (0, true), (1, true), (2, false)] {
            let code = code_at(secret, (now as i64 + delta) as u64, 6);
            assert_eq!(
                matching_step(secret, &code, now).is_some(),
                ok,
                "step {delta:+}"
            );
        }
        assert!(matching_step(secret, "12345", now).is_none());
        assert!(matching_step(secret, "abcdef", now).is_none());
    }

    #[test]
    fn base32_matches_rfc_4648() {
        assert_eq!(base32(b"foobar"), "MZXW6YTBOI");
        assert_eq!(
            base32(b"12345678901234567890"),
            "GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ"
        );
    }
}
