//! Two-factor sign-in: TOTP secrets encrypted by the vault, single-use codes, recovery codes.

use audit::{NewEvent, Record};
use kernel::{Email, Problem, SystemTx, Tx, UserId, UserTx};
use poem_openapi::Object;
use serde_json::json;

use crate::{Identity, IdentityError, Principal, limits, service::blocking, store, totp};

/// What an authenticator app needs; shown once, at enrollment.
#[derive(Debug, Clone, Object)]
pub struct TotpEnrollment {
    /// The shared secret, base32.
    pub secret: String,
    /// The same as an `otpauth://` URI (for a QR code).
    pub otpauth_uri: String,
}

fn conflict(code: &'static str, detail: &'static str) -> IdentityError {
    IdentityError::TotpState { code, detail }
}

fn now_step() -> u64 {
    totp::step_of(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs(),
    )
}

/// A recovery code as typed: case, spaces and dashes do not matter.
fn normalise(code: &str) -> String {
    code.chars()
        .filter(|c| c.is_ascii_alphanumeric())
        .collect::<String>()
        .to_ascii_lowercase()
}

/// Which second factor a code was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Code {
    Totp,
    Recovery,
}

impl Identity {
    pub(crate) fn aad(user: UserId) -> Vec<u8> {
        format!("user_totp:{user}").into_bytes()
    }

    /// Accepts a TOTP code (once) or a recovery code (once) of `user`, inside `tx`: which
    /// kind it was, or `None` when it is neither.
    async fn accept_code<T: Tx>(
        &self,
        tx: &mut T,
        user: UserId,
        code: &str,
    ) -> Result<Option<Code>, IdentityError> {
        let Some(ciphertext) = store::active_totp_secret(tx.conn(), user).await? else {
            return Ok(None);
        };
        let secret = self
            .inner()
            .vault
            .decrypt(&ciphertext, &Self::aad(user))
            .map_err(|e| {
                tracing::error!(error = %e, "a TOTP secret does not open");
                Problem::internal().with_cause(e)
            })?;
        if let Some(step) = totp::matching_step(secret.expose(), code, now_step()) {
            // Single use: only a later step than the last one used is accepted.
            let fresh = store::advance_totp_step(tx.conn(), user, step as i64).await?;
            return Ok(fresh.then_some(Code::Totp));
        }
        let normalised = normalise(code);
        let codes = store::unused_recovery_codes(tx.conn(), user).await?;
        let hit = codes.into_iter().find(|c| {
            self.inner()
                .peppers
                .matches(&c.pepper_id, normalised.as_bytes(), &c.hash)
        });
        let Some(hit) = hit else {
            return Ok(None);
        };
        let spent = store::spend_recovery_code(tx.conn(), hit.id).await?;
        Ok(spent.then_some(Code::Recovery))
    }

    /// At login, after the password: `401 totp_required` without a code, `401 totp_invalid`
    /// with a wrong or used one (counted toward `totp_account`).
    pub(crate) async fn second_factor_at_login(
        &self,
        tx: &mut SystemTx,
        user: UserId,
        code: Option<&str>,
        email_digest: &str,
    ) -> Result<(), IdentityError> {
        if !store::totp_enabled(tx.conn(), user).await? {
            return Ok(());
        }
        let inner = self.inner();
        let key = format!("totp:{user}");
        limits::check_account(&inner.db, &key, inner.limits.totp_account).await?;
        let Some(code) = code else {
            return Err(IdentityError::TotpRequired);
        };
        if let Some(kind) = self.accept_code(tx, user, code).await? {
            limits::reset_account(&inner.db, &key).await?;
            if kind == Code::Recovery {
                // A recovery code is the last resort: its owner must hear of every use.
                self.alert(
                    tx,
                    user,
                    "Someone signed in to your account with one of your recovery codes. Each works once; if this was not you, reset your password and turn two-factor sign-in off and on again for new codes.",
                )
                .await?;
            }
            return Ok(());
        }
        self.security_event(
            NewEvent::new("auth.login_failed")
                .resource("user", user)
                .payload(json!({ "email_hmac": email_digest, "reason": "totp_invalid" })),
        )
        .await?;
        self.code_failed(user).await?;
        Err(IdentityError::TotpInvalid)
    }

    /// A new two-factor secret for the transaction's user, pending until activated; the
    /// password is checked again first.
    pub async fn totp_enroll(
        &self,
        tx: &mut UserTx,
        password: String,
    ) -> Result<TotpEnrollment, IdentityError> {
        let user = tx.user_id();
        let store::EmailAndHash {
            email,
            password_hash,
        } = store::email_and_hash(tx.conn(), user).await?;
        // The password is re-checked like a login's: limited (before any hashing) and
        // counted for the account, so a stolen access token is no password oracle.
        let inner = self.inner();
        let digest = self.account_digest(&email);
        let reauth_key = format!("reauth:{user}");
        let account_key = format!("login:{digest}");
        limits::check_account(&inner.db, &reauth_key, inner.limits.login_account).await?;
        let passwords = inner.passwords.clone();
        let (ok, _) = blocking(move || passwords.verify(&password, password_hash.as_deref())).await;
        if !ok {
            self.security_event(
                NewEvent::new("auth.password_check_failed")
                    .resource("user", user)
                    .payload(json!({ "operation": "enroll_totp" })),
            )
            .await?;
            let ip = kernel::RequestContext::current().and_then(|c| c.client_ip);
            self.password_failed(
                crate::service::FailureScope::Reauth(&reauth_key),
                &account_key,
                &digest,
                ip,
                Some(user),
            )
            .await?;
            return Err(IdentityError::InvalidCredentials);
        }
        limits::reset_account(&inner.db, &reauth_key).await?;
        if store::totp_enabled(tx.conn(), user).await? {
            return Err(conflict(
                "totp_already_enabled",
                "Two-factor sign-in is already on; disable it first.",
            ));
        }
        let secret: [u8; 20] = rand::random();
        let ciphertext = self.inner().vault.encrypt(&secret, &Self::aad(user));
        store::enroll_totp(tx.conn(), user, &ciphertext).await?;
        let secret = totp::base32(&secret);
        let label: String =
            url::form_urlencoded::byte_serialize(format!("Balance:{email}").as_bytes()).collect();
        let otpauth_uri = format!(
            "otpauth://totp/{label}?secret={secret}&issuer=Balance&algorithm=SHA1&digits=6&period=30"
        );
        Ok(TotpEnrollment {
            secret,
            otpauth_uri,
        })
    }

    /// `POST /me/2fa/activate`: the first code turns it on; ten recovery codes, shown once.
    pub async fn totp_activate(
        &self,
        principal: Principal,
        code: &str,
    ) -> Result<Vec<String>, IdentityError> {
        let user = principal.user_id;
        let inner = self.inner();
        let key = format!("totp:{user}");
        limits::check_account(&inner.db, &key, inner.limits.totp_account).await?;
        let mut tx = UserTx::begin(&inner.db, user).await?;
        let Some(ciphertext) = store::lock_pending_totp_secret(tx.conn(), user).await? else {
            return Err(conflict(
                "totp_not_enrolled",
                "Enroll first (POST /me/2fa/enroll), or it is already on.",
            ));
        };
        let secret = inner
            .vault
            .decrypt(&ciphertext, &Self::aad(user))
            .map_err(|e| Problem::internal().with_cause(e))?;
        let Some(step) = totp::matching_step(secret.expose(), code, now_step()) else {
            drop(tx);
            self.totp_failed(user, "activate_totp").await?;
            return Err(IdentityError::TotpInvalid);
        };
        store::activate_totp(tx.conn(), user, step as i64).await?;
        store::delete_recovery_codes(tx.conn(), user).await?;
        let mut codes = Vec::with_capacity(10);
        for _ in 0..10 {
            let raw: [u8; 7] = rand::random();
            let code = totp::base32(&raw).to_ascii_lowercase()[..10].to_string();
            let (pepper, hash) = inner.peppers.hash_current(code.as_bytes());
            store::insert_recovery_code(tx.conn(), user, &pepper, &hash).await?;
            codes.push(format!("{}-{}", &code[..5], &code[5..]));
        }
        self.alert(
            &mut tx,
            user,
            "Two-factor sign-in was turned on for your account.",
        )
        .await?;
        tx.record(NewEvent::new("auth.totp_enabled").resource("user", user));
        tx.commit().await?;
        Ok(codes)
    }

    /// `POST /me/2fa/disable`: with a current code or a recovery code.
    pub async fn totp_disable(
        &self,
        principal: Principal,
        code: &str,
    ) -> Result<(), IdentityError> {
        let user = principal.user_id;
        let inner = self.inner();
        let key = format!("totp:{user}");
        limits::check_account(&inner.db, &key, inner.limits.totp_account).await?;
        let mut tx = UserTx::begin(&inner.db, user).await?;
        if !store::totp_enabled(tx.conn(), user).await? {
            return Err(conflict(
                "totp_not_enabled",
                "Two-factor sign-in is not on.",
            ));
        }
        if self.accept_code(&mut tx, user, code).await?.is_none() {
            drop(tx);
            self.totp_failed(user, "disable_totp").await?;
            return Err(IdentityError::TotpInvalid);
        }
        store::delete_recovery_codes(tx.conn(), user).await?;
        store::delete_totp(tx.conn(), user).await?;
        self.alert(
            &mut tx,
            user,
            "Two-factor sign-in was turned off for your account.",
        )
        .await?;
        tx.record(NewEvent::new("auth.totp_disabled").resource("user", user));
        Ok(tx.commit().await?)
    }

    /// A wrong code outside login: audited, then counted.
    async fn totp_failed(&self, user: UserId, operation: &str) -> Result<(), Problem> {
        self.security_event(
            NewEvent::new("auth.totp_failed")
                .resource("user", user)
                .payload(json!({ "operation": operation })),
        )
        .await?;
        self.code_failed(user).await
    }

    /// Counts a wrong code against `totp_account`; reaching it is audited once per window
    /// (`auth.totp_locked`).
    async fn code_failed(&self, user: UserId) -> Result<(), Problem> {
        let inner = self.inner();
        let limit = inner.limits.totp_account;
        let count = limits::count_account(&inner.db, &format!("totp:{user}"), limit).await?;
        if count.count == limit.max {
            self.security_event(
                NewEvent::new("auth.totp_locked")
                    .resource("user", user)
                    .payload(json!({ "seconds": limit.per.as_secs() })),
            )
            .await?;
        }
        Ok(())
    }

    /// Queues a security alert mail to `user` in `tx`.
    pub(crate) async fn alert<T: Tx>(
        &self,
        tx: &mut T,
        user: UserId,
        what: &str,
    ) -> Result<(), IdentityError> {
        let Some(store::Addressee { email, name, .. }) = store::addressee(tx.conn(), user).await?
        else {
            return Ok(());
        };
        if let Ok(email) = Email::parse(&email) {
            mail::queue(
                tx,
                &email,
                &mail::Template::SecurityAlert {
                    name,
                    what: what.to_string(),
                },
            )
            .await?;
        }
        Ok(())
    }
}
