//! Passwords: argon2id with the parameters of DESIGN.md §4, re-hashed on login when they
//! change; strength checked with zxcvbn (a maintained estimator, not a hand-made list).

use argon2::{Algorithm, Argon2, Params, PasswordHash, PasswordHasher, PasswordVerifier, Version};
use kernel::FieldError;

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Argon2Params {
    /// Memory in KiB.
    pub m_kib: u32,
    pub t: u32,
    pub p: u32,
}

impl Argon2Params {
    /// DESIGN.md §4: m = 19,456 KiB, t = 2, p = 1.
    pub const PRODUCTION: Argon2Params = Argon2Params {
        m_kib: 19_456,
        t: 2,
        p: 1,
    };
    /// Light parameters for tests (every test but one, which uses production's).
    pub const TEST: Argon2Params = Argon2Params {
        m_kib: 64,
        t: 1,
        p: 1,
    };

    fn hasher(&self) -> Argon2<'static> {
        let params =
            Params::new(self.m_kib, self.t, self.p, None).expect("valid argon2 parameters");
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
    }
}

/// Hashes and checks passwords.
#[derive(Debug, Clone)]
pub struct Passwords {
    params: Argon2Params,
    /// Verified against when the account does not exist, so both cost the same.
    dummy: String,
}

impl Passwords {
    pub fn new(params: Argon2Params) -> Passwords {
        let dummy = params
            .hasher()
            .hash_password(b"balance-dummy-password")
            .expect("argon2 hashes")
            .to_string();
        Passwords { params, dummy }
    }

    /// The PHC string of `password`.
    pub fn hash(&self, password: &str) -> String {
        self.params
            .hasher()
            .hash_password(password.as_bytes())
            .expect("argon2 hashes")
            .to_string()
    }

    /// Whether `password` matches `stored` (or the dummy when there is no account), and
    /// whether the stored hash should be replaced because the parameters changed.
    pub fn verify(&self, password: &str, stored: Option<&str>) -> (bool, bool) {
        let phc = stored.unwrap_or(&self.dummy);
        let Ok(parsed) = PasswordHash::new(phc) else {
            return (false, false);
        };
        let ok = self
            .params
            .hasher()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
            && stored.is_some();
        let current = Params::try_from(&parsed)
            .map(|p| {
                p.m_cost() == self.params.m_kib
                    && p.t_cost() == self.params.t
                    && p.p_cost() == self.params.p
            })
            .unwrap_or(false);
        (
            ok,
            ok && (!current || parsed.algorithm.as_str() != "argon2id"),
        )
    }
}

/// Checks a new password: 12–256 characters, and not weak or common (zxcvbn score ≥ 3,
/// knowing the user's email and name).
pub fn check_strength(field: &str, password: &str, context: &[&str]) -> Result<(), FieldError> {
    let chars = password.chars().count();
    if chars < 12 {
        return Err(FieldError::new(field, "must be at least 12 characters"));
    }
    if chars > 256 {
        return Err(FieldError::new(field, "must be at most 256 characters"));
    }
    let estimate = zxcvbn::zxcvbn(password, context);
    if (estimate.score() as u8) < 3 {
        let hint = estimate
            .feedback()
            .and_then(|f| {
                f.warning()
                    .map(|w| w.to_string())
                    .or_else(|| f.suggestions().first().map(|s| s.to_string()))
            })
            .unwrap_or_else(|| "add more words or characters".into());
        return Err(FieldError::new(
            field,
            format!("is too easy to guess: {hint}"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weak_and_common_passwords_are_refused() {
        for weak in [
            "password1234",
            "qwertyuiop12",
            "ada@example.com1",
            "aaaaaaaaaaaa",
            "short",
        ] {
            assert!(
                check_strength("password", weak, &["ada@example.com", "Ada"]).is_err(),
                "{weak}"
            );
        }
        assert!(check_strength("password", "correct horse battery staple", &[]).is_ok());
        assert!(check_strength("password", &"x".repeat(257), &[]).is_err());
    }

    #[test]
    fn a_hash_verifies_its_password_and_asks_for_rehash_when_parameters_change() {
        let light = Passwords::new(Argon2Params::TEST);
        let h = light.hash("correct horse battery staple");
        assert_eq!(
            light.verify("correct horse battery staple", Some(&h)),
            (true, false)
        );
        assert_eq!(
            light.verify("wrong horse battery staple", Some(&h)),
            (false, false)
        );
        assert_eq!(
            light.verify("anything at all", None),
            (false, false),
            "no account: the dummy never matches"
        );
        let heavier = Passwords::new(Argon2Params {
            m_kib: 128,
            t: 1,
            p: 1,
        });
        assert_eq!(
            heavier.verify("correct horse battery staple", Some(&h)),
            (true, true)
        );
    }
}
