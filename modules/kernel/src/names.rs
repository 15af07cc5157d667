//! Names people give things, each with one rule: display names (of users, tenants, API
//! keys) and the role lists given to members, invitations and API keys.

use crate::problem::FieldError;

/// Longest display name, in characters.
pub const MAX_DISPLAY_NAME: usize = 200;

/// Most roles one member, invitation or API key holds.
pub const MAX_ROLES: usize = 10;

/// A display name: trimmed, 1–200 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
    /// Parses `raw` for the request field `field`.
    pub fn parse(field: &str, raw: &str) -> Result<DisplayName, FieldError> {
        let name = raw.trim();
        if name.is_empty() || name.chars().count() > MAX_DISPLAY_NAME {
            return Err(FieldError::new(
                field,
                format!("must be 1-{MAX_DISPLAY_NAME} characters"),
            ));
        }
        if name.chars().any(char::is_control) {
            return Err(FieldError::new(
                field,
                "must not contain control characters",
            ));
        }
        Ok(DisplayName(name.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_inner(self) -> String {
        self.0
    }
}

impl std::fmt::Display for DisplayName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Role names to give: 1–10, stored sorted and each once. Whether each names a role of the
/// tenant, and whether the giver may grant it, is the access layer's decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleNames(Vec<String>);

impl RoleNames {
    /// Parses `raw` for the request field `field`.
    pub fn parse(field: &str, raw: &[String]) -> Result<RoleNames, FieldError> {
        if raw.is_empty() || raw.len() > MAX_ROLES {
            return Err(FieldError::new(
                field,
                format!("must name 1-{MAX_ROLES} roles"),
            ));
        }
        let mut roles = raw.to_vec();
        roles.sort();
        roles.dedup();
        Ok(RoleNames(roles))
    }

    /// Just `owner`.
    pub fn owner() -> RoleNames {
        RoleNames(vec!["owner".to_string()])
    }

    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    pub fn into_inner(self) -> Vec<String> {
        self.0
    }

    /// Whether `owner` is among them.
    pub fn includes_owner(&self) -> bool {
        self.0.iter().any(|r| r == "owner")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_display_name_is_trimmed_and_bounded() {
        assert_eq!(
            DisplayName::parse("name", "  Acme ").unwrap().as_str(),
            "Acme"
        );
        for bad in ["", "   ", "a\u{7}b", &"x".repeat(201)] {
            assert_eq!(DisplayName::parse("name", bad).unwrap_err().field, "name");
        }
        assert!(DisplayName::parse("name", &"é".repeat(200)).is_ok());
    }

    #[test]
    fn role_names_are_sorted_once_and_bounded() {
        let roles = |r: &[&str]| r.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            RoleNames::parse("roles", &roles(&["viewer", "admin", "viewer"]))
                .unwrap()
                .into_inner(),
            roles(&["admin", "viewer"])
        );
        assert!(RoleNames::parse("roles", &[]).is_err());
        assert!(RoleNames::parse("roles", &roles(&["a"; 11])).is_err());
    }
}
