//! Accounts and sessions (API.md, Identity; DESIGN.md §1 and §4): signup with email
//! verification, login, access JWTs with rotating refresh tokens, logout, password reset,
//! `/me` and its sessions, brute-force limits, and an audit event for every change and
//! every security-relevant attempt (platform chain; no email address in a payload).

mod error;
mod http;
pub mod limits;
pub mod password;
mod rotation;
mod second_factor;
mod service;
mod store;
pub mod tokens;
pub mod totp;

use std::sync::Arc;

use kernel::{Db, Secret, UserId};
use uuid::Uuid;

pub use error::IdentityError;
pub use http::{BearerAuth, IdentityApi};
pub use limits::{Limit, Limits};
pub use password::{Argon2Params, Passwords};
pub use rotation::TotpSecrets;
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

impl IdentityConfig {
    /// Fresh random keys, light argon2 parameters and generous limits: for tests that build
    /// services without the binary's configuration. Never for a running platform.
    pub fn ephemeral(public_url: url::Url) -> IdentityConfig {
        use rand::RngCore;
        let key = |id: &str| {
            let mut bytes = vec![0u8; 32];
            rand::rng().fill_bytes(&mut bytes);
            vec![(id.to_string(), Secret::new(bytes))]
        };
        let open = Limit {
            max: 1_000_000,
            per: std::time::Duration::from_secs(60),
        };
        IdentityConfig {
            public_url,
            jwt_keys: key("test"),
            peppers: key("test"),
            argon2: Argon2Params::TEST,
            limits: Limits::all(open),
            access_ttl_secs: 900,
            refresh_ttl_secs: 86_400,
            encryption_keys: key("test"),
        }
    }
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

/// A freshly minted API key: shown once; only its HMAC is stored.
pub struct MintedApiKey {
    /// `bal_live_<tenant id, base32>_<secret>`.
    pub token: String,
    /// What lists show: enough to recognise a key, not to use it.
    pub prefix: String,
    pub pepper_id: String,
    pub hash: Vec<u8>,
}

impl Identity {
    /// Seals a secret that must be kept for a short while (an API key's `Idempotency-Key`
    /// replay) with the vault; `aad` binds it to where it is stored.
    pub fn seal(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        self.0.vault.encrypt(plaintext, aad)
    }

    /// The vault's key ring (shared with the modules that seal their own secrets).
    pub fn vault(&self) -> std::sync::Arc<vault::Vault> {
        self.0.vault.clone()
    }

    /// Opens what [`Identity::seal`] sealed with the same `aad`.
    pub fn unseal(&self, ciphertext: &[u8], aad: &[u8]) -> Option<kernel::Secret<Vec<u8>>> {
        self.0.vault.decrypt(ciphertext, aad).ok()
    }

    /// Mints an API key for `tenant`.
    pub fn mint_api_key(&self, tenant: kernel::TenantId) -> MintedApiKey {
        self.mint_tenant_token("bal_live", tenant)
    }

    /// Mints `<kind>_<tenant id, base32>_<secret>`: a secret that names its tenant, so it is
    /// checked inside that tenant's rows (DESIGN.md §1).
    fn mint_tenant_token(&self, kind: &str, tenant: kernel::TenantId) -> MintedApiKey {
        use base64::Engine;
        let tenant_b32 = totp::base32(tenant.as_uuid().as_bytes()).to_ascii_lowercase();
        let raw: [u8; 32] = rand::random();
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(raw);
        let (pepper_id, hash) = self.0.peppers.hash_current(secret.as_bytes());
        MintedApiKey {
            prefix: format!("{kind}_{}…{}", &tenant_b32[..6], &secret[..6]),
            token: format!("{kind}_{tenant_b32}_{secret}"),
            pepper_id,
            hash,
        }
    }

    /// The tenant an API key names and its HMACs under every configured pepper (to find it
    /// among the tenant's keys); `None` when the token is not shaped like an API key.
    pub fn api_key_lookup(&self, token: &str) -> Option<(kernel::TenantId, Vec<Vec<u8>>)> {
        self.tenant_token_lookup("bal_live", token)
    }

    /// The configured limits (other modules enforce theirs from here, e.g. invitations).
    pub fn limits(&self) -> &Limits {
        &self.0.limits
    }

    /// Counts one request of the API key with these HMACs (from [`Identity::api_key_lookup`])
    /// against the `api_key` rate limit: a `429` past it. Only a holder of the key can
    /// count against its window.
    pub fn count_api_key_request(&self, hashes: &[Vec<u8>]) -> Result<(), kernel::Problem> {
        let Some(first) = hashes.first() else {
            return Ok(());
        };
        self.0
            .keys
            .hit(first.clone(), self.0.limits.api_key)
            .map_err(|r| r.problem)
    }

    fn tenant_token_lookup(
        &self,
        kind: &str,
        token: &str,
    ) -> Option<(kernel::TenantId, Vec<Vec<u8>>)> {
        let rest = token.strip_prefix(kind)?.strip_prefix('_')?;
        let (tenant_b32, secret) = rest.split_once('_')?;
        let bytes: [u8; 16] = totp::from_base32(tenant_b32)?.try_into().ok()?;
        let tenant = kernel::TenantId::from_uuid(uuid::Uuid::from_bytes(bytes));
        Some((tenant, self.0.peppers.hash_all(secret.as_bytes())))
    }
}

impl Identity {
    /// Mints an invitation token for `tenant`: `bin_<tenant id, base32>_<secret>`.
    pub fn mint_invitation(&self, tenant: kernel::TenantId) -> MintedApiKey {
        self.mint_tenant_token("bin", tenant)
    }

    /// The tenant an invitation token names, and its HMACs under every pepper.
    pub fn invitation_lookup(&self, token: &str) -> Option<(kernel::TenantId, Vec<Vec<u8>>)> {
        self.tenant_token_lookup("bin", token)
    }
}
