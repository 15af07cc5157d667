//! Lower-case hexadecimal, the one encoding of digests and hashes in text (audit hashes,
//! cursors, development keys, email digests).

/// Lower-case hex of `bytes`.
pub fn encode(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
    out
}

/// The bytes of lower- or upper-case hex; `None` for anything else.
pub fn decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn hex_round_trips_and_refuses_what_is_not_hex() {
        assert_eq!(super::encode(&[0, 0xab, 0x10]), "00ab10");
        assert_eq!(super::decode("00AB10"), Some(vec![0, 0xab, 0x10]));
        for bad in ["0", "zz", "0g", "é0"] {
            assert_eq!(super::decode(bad), None, "{bad}");
        }
    }
}
