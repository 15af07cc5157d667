//! An email address that parsed: trimmed, lower-cased, within RFC 5321's lengths.

use std::fmt;

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
        if s.len() > 254 {
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
        Ok(Email(s.to_lowercase()))
    }

    /// The normalised address.
    pub fn as_str(&self) -> &str {
        &self.0
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
        assert_eq!(
            Email::parse("jürgen@bücher.de").unwrap().as_str(),
            "jürgen@bücher.de"
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
        ];
        for raw in bad {
            assert!(Email::parse(raw).is_err(), "{raw:?}");
        }
        assert!(Email::parse(&format!("{}@example.com", "a".repeat(65))).is_err());
        assert!(Email::parse(&format!("a@{}.com", "b".repeat(250))).is_err());
    }
}
