//! An email address that parsed: trimmed, lower-cased, within RFC 5321's lengths.

use std::fmt;

/// Longest address: RFC 5321's 256-octet path less its angle brackets.
pub const MAX_EMAIL: usize = 254;

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a valid email address: {0}")]
pub struct EmailError(&'static str);

/// A normalised email address. Comparing two is comparing addresses: both are lower-cased
/// (providers treat the local part case-insensitively in practice).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Email(String);

impl Email {
    /// Parses and normalises an address.
    pub fn parse(raw: &str) -> Result<Email, EmailError> {
        let s = raw.trim();
        if s.len() > MAX_EMAIL {
            return Err(EmailError("longer than 254 characters"));
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(EmailError("contains spaces or control characters"));
        }
        let (local, domain) = s.rsplit_once('@').ok_or(EmailError("no @"))?;
        if local.is_empty() || local.len() > 64 {
            return Err(EmailError("the part before @ must be 1-64 characters"));
        }
        if local.contains('@')
            || local.contains(['<', '>', '(', ')', '[', ']', ',', ';', ':', '\\', '"'])
        {
            return Err(EmailError(
                "the part before @ has characters addresses cannot have unquoted",
            ));
        }
        if local.starts_with('.') || local.ends_with('.') || local.contains("..") {
            return Err(EmailError("misplaced dot before @"));
        }
        if s.chars().any(invisible) {
            return Err(EmailError(
                "contains invisible or direction-changing characters",
            ));
        }
        // Mail to a non-ASCII local part needs SMTPUTF8, which most relays lack: such an
        // account could never verify or reset. (One spelling per address, too: no NFC and
        // NFD twins, no look-alike letters from other scripts.)
        if !local.is_ascii() {
            return Err(EmailError(
                "the part before @ must be ASCII (letters a-z, digits and . _ % + -): Balance cannot deliver mail to other addresses",
            ));
        }
        let domain = ascii_domain(domain)?;
        let labels: Vec<&str> = domain.split('.').collect();
        let label_ok = |l: &&str| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.chars().all(|c| c.is_alphanumeric() || c == '-')
        };
        if labels.len() < 2 || !labels.iter().all(label_ok) {
            return Err(EmailError("the domain must be a name such as example.com"));
        }
        Ok(Email(format!("{local}@{domain}").to_lowercase()))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Characters that do not show, or turn text around: refused in addresses.
fn invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// The domain in its ASCII form (IDNA: internationalised names become `xn--` labels,
/// full-width letters plain ones). A label that mixes ASCII letters with letters of another
/// script (a Cyrillic `а` among Latin ones) is refused: it exists to look like another name.
fn ascii_domain(domain: &str) -> Result<String, EmailError> {
    if domain.is_ascii() {
        return Ok(domain.to_string());
    }
    let latin = |c: char| {
        c.is_ascii_alphabetic()
            || (('\u{00C0}'..='\u{024F}').contains(&c) && c != '\u{00D7}' && c != '\u{00F7}')
            || ('\u{1E00}'..='\u{1EFF}').contains(&c)
    };
    let mixed = domain.split('.').any(|label| {
        label.chars().any(latin) && label.chars().any(|c| c.is_alphabetic() && !latin(c))
    });
    if mixed {
        return Err(EmailError("the domain mixes letters of different scripts"));
    }
    match url::Host::parse(domain) {
        Ok(url::Host::Domain(ascii)) if ascii.is_ascii() => Ok(ascii),
        _ => Err(EmailError("the domain must be a name such as example.com")),
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Email({})", self.0)
    }
}

impl serde::Serialize for Email {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> serde::Deserialize<'de> for Email {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Email::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// An email address as a request carries it, not judged yet: the request's `Validate` runs
/// [`Email::parse`], so a bad address is one of the `422`'s errors beside the others. This
/// type exists for the spec alone, which poem-openapi cannot otherwise tell `format: email`
/// (with `maxLength` 254); it parses like a `String`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct RawEmail(pub String);

impl std::ops::Deref for RawEmail {
    type Target = str;
    fn deref(&self) -> &str {
        &self.0
    }
}

mod schema {
    use std::borrow::Cow;

    use poem_openapi::{
        registry::{MetaSchema, MetaSchemaRef},
        types::{ParseError, ParseFromJSON, ParseResult, ToJSON, Type},
    };
    use serde_json::Value;

    use super::{MAX_EMAIL, RawEmail};

    impl Type for RawEmail {
        const IS_REQUIRED: bool = true;
        type RawValueType = Self;
        type RawElementValueType = Self;

        fn name() -> Cow<'static, str> {
            "string_email".into()
        }

        fn schema_ref() -> MetaSchemaRef {
            MetaSchemaRef::Inline(Box::new(MetaSchema {
                max_length: Some(MAX_EMAIL),
                ..MetaSchema::new_with_format("string", "email")
            }))
        }

        fn as_raw_value(&self) -> Option<&Self> {
            Some(self)
        }

        fn raw_element_iter<'a>(&'a self) -> Box<dyn Iterator<Item = &'a Self> + 'a> {
            Box::new(std::iter::once(self))
        }
    }

    // Required by `Object`; request bodies are parsed with serde (`kernel::json`), not here.
    impl ParseFromJSON for RawEmail {
        fn parse_from_json(value: Option<Value>) -> ParseResult<Self> {
            String::parse_from_json(value)
                .map(RawEmail)
                .map_err(ParseError::propagate)
        }
    }

    impl ToJSON for RawEmail {
        fn to_json(&self) -> Option<Value> {
            self.0.to_json()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_normalised_or_refused() {
        assert_eq!(
            Email::parse("  Ada.Lovelace+bal@Example.COM ")
                .unwrap()
                .as_str(),
            "ada.lovelace+bal@example.com"
        );
        // Internationalised domains in their ASCII form; one spelling per address.
        assert_eq!(
            Email::parse("juergen@Bücher.de").unwrap().as_str(),
            "juergen@xn--bcher-kva.de"
        );
        assert_eq!(
            Email::parse("juergen@bu\u{0308}cher.de").unwrap().as_str(),
            "juergen@xn--bcher-kva.de",
            "NFD and NFC are one domain"
        );
        assert_eq!(
            Email::parse("ada@ｅｘａｍｐｌｅ.com").unwrap().as_str(),
            "ada@example.com"
        );
        let bad = [
            "",
            "plain",
            "@example.com",
            "a@",
            "a@b",
            "a b@example.com",
            "a@exa mple.com",
            "a@@example.com",
            ".a@example.com",
            "a..b@example.com",
            "a@-example.com",
            "a@example..com",
            "a\u{0}@example.com",
            "<a>@example.com",
            // Not deliverable without SMTPUTF8, and the way to NFC/NFD twins.
            "jürgen@example.com",
            "jose\u{301}@example.com",
            // Look-alikes and invisible characters.
            "\u{430}da@example.com",
            "ada@ex\u{430}mple.com",
            "\u{FF41}da@example.com",
            "a\u{200B}da@example.com",
            "ada\u{202E}@example.com",
            "ada@exam\u{200B}ple.com",
        ];
        for raw in bad {
            assert!(Email::parse(raw).is_err(), "{raw:?}");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
        assert!(Email::parse(&format!("a@{}.com", "b".repeat(250))).is_err());
    }

    #[test]
    fn a_raw_email_reads_any_string_and_tells_the_spec_its_format() {
        use poem_openapi::types::Type;
        let raw: RawEmail = serde_json::from_str("\"not an address\"").unwrap();
        assert_eq!(&*raw, "not an address", "judged later, by Email::parse");
        let schema = serde_json::to_value(RawEmail::schema_ref().unwrap_inline()).unwrap();
        assert_eq!(
            schema,
            serde_json::json!({"type": "string", "format": "email", "maxLength": 254})
        );
    }
}
