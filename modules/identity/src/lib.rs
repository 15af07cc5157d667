//! Accounts and sessions (API.md, Identity; DESIGN.md §1 and §4): signup with email
//! verification, login, access JWTs with rotating refresh tokens, logout, password reset,
//! `/me` and its sessions, brute-force limits, and an audit event for every change and
//! every security-relevant attempt (platform chain; no email address in a payload).

mod http;
pub mod limits;
pub mod password;
mod second_factor;
mod service;
pub mod tokens;
pub mod totp;

use std::sync::Arc;

use kernel::{Db, Secret, UserId};
use uuid::Uuid;

pub use http::{BearerAuth, IdentityApi};
pub use limits::{Limit, Limits};
pub use password::{Argon2Params, Passwords};
pub use second_factor::TotpEnrollment;
pub use service::{Me, MeTenant, SessionView, TokenPair, UserView};

/// What identity needs from configuration.
#[derive(Debug, Clone)]
pub struct IdentityConfig {
    /// `iss` and `aud` of access tokens; the base of links in mail.
    pub public_url: url::Url,
    /// `BALANCE_JWT_KEYS`: the first signs, all verify.
    pub jwt_keys: Vec<(String, Secret<Vec<u8>>)>,
    /// `BALANCE_TOKEN_PEPPERS`: the first hashes new tokens, all verify.
    pub peppers: Vec<(String, Secret<Vec<u8>>)>,
    pub argon2: Argon2Params,
    pub limits: Limits,
    /// Access token lifetime (15 minutes).
    pub access_ttl_secs: u64,
    /// Refresh token lifetime.
    pub refresh_ttl_secs: u64,
    /// `BALANCE_ENCRYPTION_KEYS`: the vault's key ring (TOTP secrets).
    pub encryption_keys: Vec<(String, Secret<Vec<u8>>)>,
}

/// A signed-in caller: who, and through which session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Principal {
    pub user_id: UserId,
    pub session_id: Uuid,
}

/// The identity service.
#[derive(Clone)]
pub struct Identity(Arc<service::Inner>);

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Identity")
    }
}

impl Identity {
    pub fn new(db: Db, config: IdentityConfig) -> Identity {
        Identity(Arc::new(service::Inner::new(db, config)))
    }
}
