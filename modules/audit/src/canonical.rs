//! RFC 8785 (JSON Canonicalization Scheme) for the values an audit event holds.
//!
//! JCS writes numbers as ECMAScript does with IEEE doubles. Audit payloads carry ids,
//! counts and minor units, never fractions, so this encoder accepts integers within
//! ±(2^53 − 1) (exactly representable, printed as integers) and refuses anything else:
//! larger integers travel as strings (DESIGN.md §2). Object members are sorted by their
//! names' UTF-16 code units; strings are escaped as `JSON.stringify` does.

use serde_json::Value;

/// Largest integer a double represents exactly.
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A value that JCS, as used here, cannot encode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot canonicalise {0}")]
pub struct CanonicalError(pub String);

/// The canonical text of `value`.
pub fn to_string(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::new();
    write(&mut out, value)?;
    Ok(out)
}

fn write(out: &mut String, value: &Value) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                if i.unsigned_abs() > MAX_SAFE_INTEGER {
                    return Err(CanonicalError(format!(
                        "the integer {i} (beyond ±2^53−1: send it as a string)"
                    )));
                }
                out.push_str(&i.to_string());
            } else if let Some(u) = n.as_u64() {
                if u > MAX_SAFE_INTEGER {
                    return Err(CanonicalError(format!(
                        "the integer {u} (beyond 2^53−1: send it as a string)"
                    )));
                }
                out.push_str(&u.to_string());
            } else {
                return Err(CanonicalError(format!(
                    "the fraction {n} (audit payloads hold integers)"
                )));
            }
        }
        Value::String(s) => write_string(out, s),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write(out, item)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let mut members: Vec<(&String, &Value)> = map.iter().collect();
            members.sort_by(|a, b| a.0.encode_utf16().cmp(b.0.encode_utf16()));
            out.push('{');
            for (i, (k, v)) in members.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_string(out, k);
                out.push(':');
                write(out, v)?;
            }
            out.push('}');
        }
    }
    Ok(())
}

fn write_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn members_are_sorted_by_utf16_code_units() {
        // RFC 8785 §3.2.3's sorting example (the keys' code units decide, not UTF-8 bytes).
        let value = json!({
            "\u{20ac}": "Euro Sign",
            "\r": "Carriage Return",
            "\u{fb33}": "Hebrew Letter Dalet With Dagesh",
            "1": "One",
            "\u{1f600}": "Emoji: Grinning Face",
            "\u{80}": "Control",
            "\u{f6}": "Latin Small Letter O With Diaeresis"
        });
        let text = to_string(&value).unwrap();
        let order: Vec<&str> = [
            "\\r",
            "1",
            "\u{80}",
            "\u{f6}",
            "\u{20ac}",
            "\u{1f600}",
            "\u{fb33}",
        ]
        .to_vec();
        let mut last = 0;
        for key in order {
            let at = text.find(&format!("\"{key}\":")).unwrap();
            assert!(at >= last, "{key} out of order in {text}");
            last = at;
        }
    }

    #[test]
    fn strings_are_escaped_like_json_stringify() {
        let text = to_string(&json!(["\u{0}\u{1f}\"\\/\n\t\u{7f}é€😀\u{2028}"])).unwrap();
        assert_eq!(
            text,
            "[\"\\u0000\\u001f\\\"\\\\/\\n\\t\u{7f}é€😀\u{2028}\"]"
        );
    }

    #[test]
    fn numbers_are_safe_integers_only() {
        assert_eq!(
            to_string(&json!({"b": -9007199254740991i64, "a": 0})).unwrap(),
            r#"{"a":0,"b":-9007199254740991}"#
        );
        assert!(to_string(&json!(9007199254740992u64)).is_err());
        assert!(to_string(&json!(1.5)).is_err());
        assert_eq!(
            to_string(&json!({"n": null, "t": true, "f": false, "e": {}, "l": []})).unwrap(),
            r#"{"e":{},"f":false,"l":[],"n":null,"t":true}"#
        );
    }
}
