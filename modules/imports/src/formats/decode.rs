//! The one decoding pipeline every format goes through (INTEGRATIONS.md §1): a person's
//! override first, then a byte order mark, then strict UTF-8, then the charset the file
//! declares (XML `encoding="…"`, OFX `CHARSET:`), and only then a guess. Files that are
//! not text at all (an image, a zip) are refused here, before any parser sees them.
//!
//! "Latin-1" is read as windows-1252, by the WHATWG rule `Encoding::for_label` follows:
//! that is what banks mean by it (€ is 0x80).

use std::borrow::Cow;

use encoding_rs::Encoding;

use super::FormatError;

/// How the encoding of a file was chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DecodedBy {
    /// A byte order mark at the start of the file.
    Bom,
    /// The bytes are valid UTF-8.
    Utf8,
    /// The charset the file itself declares.
    Declared,
    /// chardetng's guess.
    Guessed,
    /// The encoding a person gave (a CSV mapping's `encoding`).
    Override,
}

/// A file turned into text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decoded {
    /// The text, without its byte order mark.
    pub text: String,
    /// The WHATWG name of the encoding read: `UTF-8`, `windows-1252`, `UTF-16LE`…
    pub encoding: &'static str,
    /// How that encoding was chosen.
    pub how: DecodedBy,
    /// Some bytes were not valid in the encoding and became U+FFFD.
    pub had_errors: bool,
}

impl Decoded {
    /// What the import's warnings should say about the decoding: when the encoding was
    /// only declared or guessed (letters may be wrong), or when bytes were replaced.
    /// `None` when the file was plainly UTF-8 (or marked by a BOM, or the person chose
    /// the encoding) and every byte decoded.
    pub fn warning(&self) -> Option<String> {
        let mut parts = Vec::new();
        match self.how {
            DecodedBy::Declared => parts.push(format!(
                "the file is not UTF-8; read as {} (declared by the file)",
                self.encoding
            )),
            DecodedBy::Guessed => parts.push(format!(
                "the file is not UTF-8; read as {} (guessed; if letters look wrong, set the \
                 encoding in the mapping)",
                self.encoding
            )),
            DecodedBy::Bom | DecodedBy::Utf8 | DecodedBy::Override => {}
        }
        if self.had_errors {
            parts.push(format!(
                "some bytes are not valid {} and were replaced with \u{FFFD}",
                self.encoding
            ));
        }
        if parts.is_empty() {
            None
        } else {
            Some(parts.join("; "))
        }
    }
}

/// Decodes a file's bytes. `declared` is the charset label the file states (XML
/// declaration, OFX header), if any; `override_label` is the encoding a person chose,
/// which wins over everything. An unknown override label, or bytes that are not text
/// (many NUL bytes, a tenth control characters, a quarter undecodable), are a
/// [`FormatError`].
/// An unknown declared label is ignored (the file is guessed instead).
pub fn decode(
    bytes: &[u8],
    declared: Option<&str>,
    override_label: Option<&str>,
) -> Result<Decoded, FormatError> {
    let bom = Encoding::for_bom(bytes);
    let decoded = if let Some(label) = override_label {
        let encoding = label_encoding(label)
            .ok_or_else(|| FormatError(format!("unknown encoding `{}`", label.trim())))?;
        // A BOM of the very encoding chosen is still a BOM, not text.
        let body = match bom {
            Some((bom_encoding, len)) if bom_encoding == encoding => &bytes[len..],
            _ => bytes,
        };
        run(encoding, body, DecodedBy::Override)
    } else if let Some((encoding, len)) = bom {
        run(encoding, &bytes[len..], DecodedBy::Bom)
    } else {
        match std::str::from_utf8(bytes) {
            Ok(text) => Decoded {
                text: text.to_owned(),
                encoding: encoding_rs::UTF_8.name(),
                how: DecodedBy::Utf8,
                had_errors: false,
            },
            // Valid UTF-8 cut inside its last character (a truncated download): still UTF-8.
            Err(e) if e.error_len().is_none() && e.valid_up_to() > 0 => {
                run(encoding_rs::UTF_8, bytes, DecodedBy::Utf8)
            }
            Err(_) => not_utf8(bytes, declared),
        }
    };
    let utf16 = decoded.encoding.starts_with("UTF-16");
    if looks_binary(bytes, &decoded.text, utf16) {
        return Err(FormatError("the file is not text".into()));
    }
    Ok(decoded)
}

/// The declared charset, else a guess; a declared multi-byte charset the bytes break is
/// replaced by the guess when the guess reads them cleanly.
fn not_utf8(bytes: &[u8], declared: Option<&str>) -> Decoded {
    let guessed = || {
        let mut detector = chardetng::EncodingDetector::new(chardetng::Iso2022JpDetection::Deny);
        detector.feed(bytes, true);
        detector.guess(None, chardetng::Utf8Detection::Deny)
    };
    if let Some(encoding) = declared.and_then(label_encoding) {
        let by_declared = run(encoding, bytes, DecodedBy::Declared);
        if !by_declared.had_errors {
            return by_declared;
        }
        let by_guess = run(guessed(), bytes, DecodedBy::Guessed);
        return if by_guess.had_errors {
            by_declared
        } else {
            by_guess
        };
    }
    run(guessed(), bytes, DecodedBy::Guessed)
}

/// The encoding for a label, never the `replacement` encoding (which reads every byte as
/// U+FFFD).
fn label_encoding(label: &str) -> Option<&'static Encoding> {
    Encoding::for_label(label.trim().as_bytes()).filter(|e| *e != encoding_rs::REPLACEMENT)
}

fn run(encoding: &'static Encoding, body: &[u8], how: DecodedBy) -> Decoded {
    let (text, had_errors) = encoding.decode_without_bom_handling(body);
    Decoded {
        text: match text {
            Cow::Borrowed(s) => s.to_owned(),
            Cow::Owned(s) => s,
        },
        encoding: encoding.name(),
        how,
        had_errors,
    }
}

/// A control character no text file has: C0 controls other than tab, line feed, carriage
/// return and form feed, DEL, and the C1 controls (what windows-1252's five unassigned
/// bytes decode to).
pub(crate) fn is_binary_char(c: char) -> bool {
    matches!(c, '\u{0}'..='\u{8}' | '\u{b}' | '\u{e}'..='\u{1f}' | '\u{7f}'..='\u{9f}')
}

/// Binary, not text: NUL bytes in more than a few places (over 8, and over 1% of the
/// bytes), more than a tenth of the characters are controls, or more than a quarter are
/// replacement characters. A text file with one stray line of binary bytes (`bad_binary_junk.csv`:
/// 5 NULs in 271 bytes, about 5% controls) stays text; its parser rejects that line.
fn looks_binary(bytes: &[u8], text: &str, utf16: bool) -> bool {
    if !utf16 {
        let nuls = bytes.iter().filter(|b| **b == 0).count();
        if nuls > 8 && nuls * 100 > bytes.len() {
            return true;
        }
    }
    let (mut total, mut controls, mut replaced) = (0usize, 0usize, 0usize);
    for c in text.chars() {
        total += 1;
        if is_binary_char(c) {
            controls += 1;
        } else if c == '\u{FFFD}' {
            replaced += 1;
        }
    }
    controls * 10 > total || replaced * 4 > total
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> Option<Vec<u8>> {
        let path = format!(
            "{}/../../../shared/fixtures/imports/{name}",
            env!("CARGO_MANIFEST_DIR")
        );
        match std::fs::read(path) {
            Ok(bytes) => Some(bytes),
            Err(_) => {
                eprintln!("skipped: ../shared/fixtures absent");
                None
            }
        }
    }

    #[test]
    fn each_step_of_the_pipeline_in_its_order() {
        let latin1 = b"Name;Betrag\nB\xe4ckerei M\xfcller;-4,35\nJ\xfcrgen Wei\xdf;1,00\n\
                       Gr\xfcnstra\xdfe \xdcbernachtung;2,00\n";
        struct Case {
            name: &'static str,
            bytes: Vec<u8>,
            declared: Option<&'static str>,
            over: Option<&'static str>,
            text: &'static str,
            encoding: &'static str,
            how: DecodedBy,
            had_errors: bool,
        }
        let cases = [
            Case {
                name: "UTF-8 BOM",
                bytes: b"\xef\xbb\xbfDate,\xc2\xa3".to_vec(),
                declared: Some("windows-1252"),
                over: None,
                text: "Date,£",
                encoding: "UTF-8",
                how: DecodedBy::Bom,
                had_errors: false,
            },
            Case {
                name: "UTF-16LE BOM",
                bytes: b"\xff\xfeA\x00;\x00\xe4\x00".to_vec(),
                declared: None,
                over: None,
                text: "A;ä",
                encoding: "UTF-16LE",
                how: DecodedBy::Bom,
                had_errors: false,
            },
            Case {
                name: "strict UTF-8 beats a wrong declaration (Chase QFX)",
                bytes: "CHARSET:1252 ¦ ä".as_bytes().to_vec(),
                declared: Some("1252"),
                over: None,
                text: "CHARSET:1252 ¦ ä",
                encoding: "UTF-8",
                how: DecodedBy::Utf8,
                had_errors: false,
            },
            Case {
                name: "declared latin1 is windows-1252 (0x80 is €)",
                bytes: b"Preis \x80 5, M\xfcnchen".to_vec(),
                declared: Some("ISO-8859-1"),
                over: None,
                text: "Preis € 5, München",
                encoding: "windows-1252",
                how: DecodedBy::Declared,
                had_errors: false,
            },
            Case {
                name: "unknown declared label falls through to the guess",
                bytes: latin1.to_vec(),
                declared: Some("no-such-charset"),
                over: None,
                text: "Name;Betrag\nBäckerei Müller;-4,35\nJürgen Weiß;1,00\nGrünstraße Übernachtung;2,00\n",
                encoding: "windows-1252",
                how: DecodedBy::Guessed,
                had_errors: false,
            },
            Case {
                name: "guessed windows-1252 with umlauts",
                bytes: latin1.to_vec(),
                declared: None,
                over: None,
                text: "Name;Betrag\nBäckerei Müller;-4,35\nJürgen Weiß;1,00\nGrünstraße Übernachtung;2,00\n",
                encoding: "windows-1252",
                how: DecodedBy::Guessed,
                had_errors: false,
            },
            Case {
                name: "override wins over valid UTF-8",
                bytes: "Müller".as_bytes().to_vec(),
                declared: None,
                over: Some("latin1"),
                text: "MÃ¼ller",
                encoding: "windows-1252",
                how: DecodedBy::Override,
                had_errors: false,
            },
            Case {
                name: "override of UTF-8 drops the UTF-8 BOM",
                bytes: b"\xef\xbb\xbfDate,Amount\xff\n".to_vec(),
                declared: None,
                over: Some(" utf-8 "),
                text: "Date,Amount\u{FFFD}\n",
                encoding: "UTF-8",
                how: DecodedBy::Override,
                had_errors: true,
            },
            Case {
                name: "UTF-8 cut inside its last character",
                bytes: b"Caf\xc3\xa9 Cr\xc3".to_vec(),
                declared: None,
                over: None,
                text: "Café Cr\u{FFFD}",
                encoding: "UTF-8",
                how: DecodedBy::Utf8,
                had_errors: true,
            },
            Case {
                name: "a declared multi-byte charset the bytes break gives way to the guess",
                bytes: latin1.to_vec(),
                declared: Some("utf-8"),
                over: None,
                text: "Name;Betrag\nBäckerei Müller;-4,35\nJürgen Weiß;1,00\nGrünstraße Übernachtung;2,00\n",
                encoding: "windows-1252",
                how: DecodedBy::Guessed,
                had_errors: false,
            },
            Case {
                name: "empty file",
                bytes: Vec::new(),
                declared: None,
                over: None,
                text: "",
                encoding: "UTF-8",
                how: DecodedBy::Utf8,
                had_errors: false,
            },
        ];
        for case in cases {
            let got = decode(&case.bytes, case.declared, case.over)
                .unwrap_or_else(|e| panic!("{}: {e}", case.name));
            assert_eq!(got.text, case.text, "{}", case.name);
            assert_eq!(got.encoding, case.encoding, "{}", case.name);
            assert_eq!(got.how, case.how, "{}", case.name);
            assert_eq!(got.had_errors, case.had_errors, "{}", case.name);
        }
    }

    #[test]
    fn warnings_name_the_encoding_when_it_was_not_plain_utf8() {
        let d = |how, had_errors| Decoded {
            text: String::new(),
            encoding: "windows-1252",
            how,
            had_errors,
        };
        assert_eq!(d(DecodedBy::Utf8, false).warning(), None);
        assert_eq!(d(DecodedBy::Bom, false).warning(), None);
        assert_eq!(d(DecodedBy::Override, false).warning(), None);
        assert_eq!(
            d(DecodedBy::Declared, false).warning().as_deref(),
            Some("the file is not UTF-8; read as windows-1252 (declared by the file)")
        );
        let guessed = d(DecodedBy::Guessed, false).warning().unwrap_or_default();
        assert!(
            guessed.starts_with("the file is not UTF-8; read as windows-1252 (guessed"),
            "{guessed}"
        );
        assert_eq!(
            d(DecodedBy::Override, true).warning().as_deref(),
            Some("some bytes are not valid windows-1252 and were replaced with \u{FFFD}")
        );
        let both = d(DecodedBy::Guessed, true).warning().unwrap_or_default();
        assert!(
            both.contains("guessed") && both.contains("replaced"),
            "{both}"
        );
    }

    #[test]
    fn an_unknown_override_is_refused() {
        for label in ["klingon", "", "replacement"] {
            let e = decode(b"a,b", None, Some(label)).unwrap_err();
            assert!(e.0.starts_with("unknown encoding"), "{label}: {e}");
        }
    }

    #[test]
    fn binary_files_are_not_text() {
        // A PNG: signature, IHDR chunk, the start of compressed image data.
        let mut png =
            b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\x01\0\0\0\x01\0\x08\x06\0\0\0\x5c\x72\xa8\x66"
                .to_vec();
        png.extend_from_slice(b"\0\0\0\x09pHYs\0\0\x0b\x13\0\0\x0b\x13\x01\0\x9a\x9c\x18");
        png.extend((0u16..200).map(|i| (i * 37 % 251) as u8));
        let zip =
            b"PK\x03\x04\x14\0\0\0\x08\0\x8b\x4e\x5b\x57\0\0\0\0\0\0\0\0\0\0\0\0\x08\0\0\0a.csv";
        for (name, bytes) in [
            ("png", png.as_slice()),
            ("zip", zip.as_slice()),
            ("nul", b"\0\0\0\0".as_slice()),
        ] {
            for over in [None, Some("windows-1252")] {
                assert_eq!(
                    decode(bytes, None, over),
                    Err(FormatError("the file is not text".into())),
                    "{name} {over:?}"
                );
            }
        }
        // A UTF-16 file is all NULs between ASCII letters, and is text.
        let utf16: Vec<u8> = b"\xff\xfe"
            .iter()
            .copied()
            .chain(
                "Date,Amount\n2024-01-02,1.00\n"
                    .encode_utf16()
                    .flat_map(u16::to_le_bytes),
            )
            .collect();
        assert_eq!(
            decode(&utf16, None, None).map(|d| d.text).as_deref(),
            Ok("Date,Amount\n2024-01-02,1.00\n")
        );
    }

    #[test]
    fn one_line_of_binary_junk_between_rows_is_still_text() {
        let Some(bytes) = fixture("bad_binary_junk.csv") else {
            return;
        };
        let d = decode(&bytes, None, None).expect("text");
        assert!(d.text.contains("\"08/17/2022\",\"Posted\",\"DEPOSIT\""));
        assert!(d.text.contains("\"08/14/2022\",\"Posted\",\"ATM\""));
        assert!(d.text.contains('\0'));
        assert_ne!(d.how, DecodedBy::Utf8);
        assert!(d.warning().is_some());
    }

    #[test]
    fn the_fixtures_decode_as_their_files_say() {
        for (name, encoding, how, contains) in [
            (
                "latin1_umlauts.csv",
                "windows-1252",
                DecodedBy::Guessed,
                "Jürgen Weiß;Rückzahlung Übernachtung",
            ),
            (
                "csv_de_gls_latin1.csv",
                "windows-1252",
                DecodedBy::Guessed,
                "Auftraggeber/Empfänger",
            ),
            (
                "csv_uk_card_utf8_bom.csv",
                "UTF-8",
                DecodedBy::Bom,
                "£1,183.23",
            ),
            (
                "csv_de_commerzbank.csv",
                "UTF-8",
                DecodedBy::Utf8,
                "Währung",
            ),
            ("csv_de_n26.csv", "UTF-8", DecodedBy::Utf8, "Empfänger"),
            (
                "csv_us_schwab_checking.csv",
                "UTF-8",
                DecodedBy::Utf8,
                "BMO HARRIS BANK",
            ),
        ] {
            let Some(bytes) = fixture(name) else {
                return;
            };
            let d = decode(&bytes, None, None).expect(name);
            assert_eq!(
                (d.encoding, d.how, d.had_errors),
                (encoding, how, false),
                "{name}"
            );
            assert!(d.text.contains(contains), "{name}: {}", d.text);
            assert!(!d.text.starts_with('\u{FEFF}'), "{name}");
        }
        // The umlauts all survive.
        if let Some(bytes) = fixture("latin1_umlauts.csv") {
            let d = decode(&bytes, None, None).expect("latin1");
            for word in ["ä", "ö", "ü", "ß", "Ü"] {
                assert!(d.text.contains(word), "{word}");
            }
            // And a person who says latin1 gets the same text, without a warning.
            let by_override = decode(&bytes, None, Some("latin1")).expect("override");
            assert_eq!(by_override.text, d.text);
            assert_eq!(by_override.warning(), None);
        }
    }

    #[test]
    fn truncated_prefixes_never_panic() {
        for name in [
            "bad_binary_junk.csv",
            "latin1_umlauts.csv",
            "csv_uk_card_utf8_bom.csv",
            "csv_de_gls_latin1.csv",
        ] {
            let Some(bytes) = fixture(name) else {
                return;
            };
            for end in 0..=bytes.len() {
                let _ = decode(&bytes[..end], None, None);
                let _ = decode(&bytes[..end], Some("iso-8859-1"), None);
                let _ = decode(&bytes[..end], None, Some("utf-16le"));
            }
        }
    }
}
