//! The identity routes (API.md, Identity).

use kernel::{ApiResult, Email, FieldErrors, JsonBody, Problem, RawEmail, UserTx, Validate};
use poem_openapi::{ApiResponse, Object, OpenApi, param::Path, payload::Json};
use serde::Deserialize;
use uuid::Uuid;

use crate::{
    Identity, Principal,
    password::check_strength,
    service::{Me, SessionView, TokenPair, UserView, check_time_zone},
};

pub use kernel::auth::BearerAuth;

#[derive(poem_openapi::Tags)]
enum Tag {
    /// Accounts, sign-in and sessions.
    Identity,
}

/// The identity routes.
pub struct IdentityApi {
    identity: Identity,
}

impl IdentityApi {
    pub fn new(identity: Identity) -> IdentityApi {
        IdentityApi { identity }
    }

    async fn principal(&self, auth: &BearerAuth) -> Result<Principal, Problem> {
        Ok(self.identity.authenticate(auth.token()).await?)
    }

    /// The caller, and the transaction that checked their session, for their own rows.
    async fn signed_in(&self, auth: &BearerAuth) -> Result<(Principal, UserTx), Problem> {
        Ok(self.identity.begin_authenticated(auth.token()).await?)
    }
}

fn too_long(errors: &mut FieldErrors, field: &str, value: &str, max: usize) {
    errors.check(
        value.chars().count() <= max,
        field,
        format!("must be at most {max} characters"),
    );
}

/// A new account.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignupRequest {
    pub email: RawEmail,
    /// 12–256 characters, not weak or common.
    #[oai(validator(min_length = 12, max_length = 256))]
    pub password: String,
    /// 1–200 characters.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: String,
    /// IANA zone (default `UTC`), used for quiet hours and daily summaries.
    pub time_zone: Option<String>,
}

impl Validate for SignupRequest {
    fn validate(&self, errors: &mut FieldErrors) {
        if let Err(e) = Email::parse(&self.email) {
            errors.add("email", e.to_string());
        }
        if let Err(e) = kernel::DisplayName::parse("name", &self.name) {
            errors.add(e.field, e.message);
        }
        if let Err(e) = check_strength("password", &self.password, &[&self.email, &self.name]) {
            errors.add(e.field, e.message);
        }
        if let Some(Err(e)) = self
            .time_zone
            .as_deref()
            .map(|tz| check_time_zone("time_zone", tz))
        {
            errors.add(e.field, e.message);
        }
    }
}

/// Credentials.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LoginRequest {
    // Not `RawEmail`: any other text is simply no account's address (`401`).
    #[oai(validator(max_length = 254))]
    pub email: String,
    #[oai(validator(max_length = 256))]
    pub password: String,
    /// A TOTP code, or a recovery code, when two-factor sign-in is on.
    #[oai(validator(max_length = 64))]
    pub totp_code: Option<String>,
    /// The `device_token` an earlier login of this account answered: with it, other
    /// clients' failed attempts never slow this one down.
    #[oai(validator(max_length = 200))]
    pub device_token: Option<String>,
}

impl Validate for LoginRequest {
    fn validate(&self, errors: &mut FieldErrors) {
        too_long(errors, "email", &self.email, 254);
        too_long(errors, "password", &self.password, 256);
        if let Some(code) = &self.totp_code {
            too_long(errors, "totp_code", code, 64);
        }
        if let Some(token) = &self.device_token {
            too_long(errors, "device_token", token, 200);
        }
    }
}

/// A token from a link or a previous response.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    #[oai(validator(max_length = 512))]
    pub token: String,
}

impl Validate for TokenRequest {
    fn validate(&self, errors: &mut FieldErrors) {
        too_long(errors, "token", &self.token, 512);
    }
}

/// A refresh token to exchange.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RefreshRequest {
    #[oai(validator(max_length = 512))]
    pub refresh_token: String,
}

impl Validate for RefreshRequest {
    fn validate(&self, errors: &mut FieldErrors) {
        too_long(errors, "refresh_token", &self.refresh_token, 512);
    }
}

/// An address to send a reset link to.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetRequest {
    // Not `RawEmail`: any other text is no account's address, and the answer is `202` alike.
    #[oai(validator(max_length = 254))]
    pub email: String,
}

impl Validate for ResetRequest {
    fn validate(&self, errors: &mut FieldErrors) {
        too_long(errors, "email", &self.email, 254);
    }
}

/// The reset link's token and the new password.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResetConfirmRequest {
    #[oai(validator(max_length = 512))]
    pub token: String,
    /// 12–256 characters, not weak or common.
    #[oai(validator(min_length = 12, max_length = 256))]
    pub new_password: String,
}

impl Validate for ResetConfirmRequest {
    fn validate(&self, errors: &mut FieldErrors) {
        too_long(errors, "token", &self.token, 512);
        // Only the length here: the strength is scored after the token checks out (and
        // against the account's own name and address), so junk tokens cost nothing.
        too_long(errors, "new_password", &self.new_password, 256);
        errors.check(
            self.new_password.chars().count() >= 12,
            "new_password",
            "must be at least 12 characters",
        );
    }
}

/// Changes to the signed-in user.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MePatch {
    /// 1–200 characters.
    #[oai(validator(min_length = 1, max_length = 200))]
    pub name: Option<String>,
    pub time_zone: Option<String>,
}

impl Validate for MePatch {
    fn validate(&self, errors: &mut FieldErrors) {
        if let Some(Err(e)) = self
            .name
            .as_deref()
            .map(|n| kernel::DisplayName::parse("name", n))
        {
            errors.add(e.field, e.message);
        }
        if let Some(Err(e)) = self
            .time_zone
            .as_deref()
            .map(|tz| check_time_zone("time_zone", tz))
        {
            errors.add(e.field, e.message);
        }
    }
}

/// The password, to start two-factor enrollment.
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PasswordRequest {
    #[oai(validator(max_length = 256))]
    pub password: String,
}

impl Validate for PasswordRequest {
    fn validate(&self, errors: &mut FieldErrors) {
        too_long(errors, "password", &self.password, 256);
    }
}

/// A current TOTP code (or, to disable, a recovery code).
#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodeRequest {
    #[oai(validator(max_length = 64))]
    pub code: String,
}

impl Validate for CodeRequest {
    fn validate(&self, errors: &mut FieldErrors) {
        too_long(errors, "code", &self.code, 64);
    }
}

/// Single-use recovery codes, each usable once in place of a TOTP code. Shown only now.
#[derive(Debug, Object)]
pub struct RecoveryCodes {
    pub recovery_codes: Vec<String>,
}

#[derive(ApiResponse)]
pub enum Created {
    /// The account was created; a verification mail is on its way.
    #[oai(status = 201)]
    Created(Json<UserView>),
}

#[derive(ApiResponse)]
pub enum NoContent {
    /// Done.
    #[oai(status = 204)]
    NoContent,
}

#[derive(ApiResponse)]
pub enum Accepted {
    /// Accepted: if the address has an account, a reset link was mailed.
    #[oai(status = 202)]
    Accepted,
}

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Identity")]
impl IdentityApi {
    /// Creates an account and mails a verification link. An unverified user can sign in.
    #[oai(path = "/auth/signup", method = "post", operation_id = "signup")]
    async fn signup(&self, body: JsonBody<SignupRequest>) -> ApiResult<Created> {
        let r = body.into_inner();
        let email = Email::parse(&r.email).map_err(|e| {
            Problem::validation(vec![kernel::FieldError::new("email", e.to_string())])
        })?;
        let name = kernel::DisplayName::parse("name", &r.name)
            .map_err(|e| Problem::validation(vec![e]))?
            .into_inner();
        let tz = match r.time_zone.as_deref() {
            Some(tz) => {
                check_time_zone("time_zone", tz).map_err(|e| Problem::validation(vec![e]))?
            }
            None => "UTC".into(),
        };
        Ok(Created::Created(Json(
            self.identity.signup(email, r.password, name, tz).await?,
        )))
    }

    /// Confirms an email address with the token of the verification mail.
    #[oai(
        path = "/auth/verify-email",
        method = "post",
        operation_id = "verify_email"
    )]
    async fn verify_email(&self, body: JsonBody<TokenRequest>) -> ApiResult<NoContent> {
        self.identity.verify_email(&body.token).await?;
        Ok(NoContent::NoContent)
    }

    /// Signs in. Unknown email and wrong password answer the same `401 invalid_credentials`.
    #[oai(path = "/auth/login", method = "post", operation_id = "login")]
    async fn login(&self, body: JsonBody<LoginRequest>) -> ApiResult<Json<TokenPair>> {
        let r = body.into_inner();
        Ok(Json(
            self.identity
                .login(&r.email, r.password, r.totp_code, r.device_token.as_deref())
                .await?,
        ))
    }

    /// Exchanges a refresh token, once, for a new pair. Presenting a spent one signs the
    /// whole session out (a client that retries after a lost response must sign in again).
    #[oai(path = "/auth/refresh", method = "post", operation_id = "refresh")]
    async fn refresh(&self, body: JsonBody<RefreshRequest>) -> ApiResult<Json<TokenPair>> {
        Ok(Json(self.identity.refresh(&body.refresh_token).await?))
    }

    /// Signs this session out; its tokens stop working at once.
    #[oai(path = "/auth/logout", method = "post", operation_id = "logout")]
    async fn logout(&self, auth: BearerAuth) -> ApiResult<NoContent> {
        let (me, mut tx) = self.signed_in(&auth).await?;
        self.identity
            .revoke_session(&mut tx, me.session_id, "logout")
            .await?;
        tx.commit().await?;
        Ok(NoContent::NoContent)
    }

    /// Mails a single-use reset link (valid one hour) if the address has an account. Always `202`.
    #[oai(
        path = "/auth/password-reset",
        method = "post",
        operation_id = "request_password_reset"
    )]
    async fn password_reset(&self, body: JsonBody<ResetRequest>) -> ApiResult<Accepted> {
        self.identity.request_reset(&body.email).await?;
        Ok(Accepted::Accepted)
    }

    /// Sets a new password with a reset link's token; every session is signed out.
    #[oai(
        path = "/auth/password-reset/confirm",
        method = "post",
        operation_id = "confirm_password_reset"
    )]
    async fn password_reset_confirm(
        &self,
        body: JsonBody<ResetConfirmRequest>,
    ) -> ApiResult<NoContent> {
        let r = body.into_inner();
        self.identity
            .confirm_reset(&r.token, r.new_password)
            .await?;
        Ok(NoContent::NoContent)
    }

    /// The signed-in user and the tenants they belong to.
    #[oai(path = "/me", method = "get", operation_id = "get_me")]
    async fn me(&self, auth: BearerAuth) -> ApiResult<Json<Me>> {
        // The session check and the profile in one transaction.
        // The session check and the profile in one transaction.
        let (_, mut tx) = self.signed_in(&auth).await?;
        let me = self.identity.me(&mut tx).await?;
        tx.commit().await?;
        Ok(Json(me))
    }

    /// Changes the signed-in user's name or time zone.
    #[oai(path = "/me", method = "patch", operation_id = "update_me")]
    async fn update_me(&self, auth: BearerAuth, body: JsonBody<MePatch>) -> ApiResult<Json<Me>> {
        let r = body.into_inner();
        let name = r.name.map(|n| n.trim().to_string());
        let tz = r
            .time_zone
            .map(|tz| check_time_zone("time_zone", &tz).map_err(|e| Problem::validation(vec![e])))
            .transpose()?;
        let (_, mut tx) = self.signed_in(&auth).await?;
        let me = self.identity.update_me(&mut tx, name, tz).await?;
        tx.commit().await?;
        Ok(Json(me))
    }

    /// Starts two-factor enrollment: a secret for an authenticator app (shown once).
    #[oai(path = "/me/2fa/enroll", method = "post", operation_id = "enroll_totp")]
    async fn totp_enroll(
        &self,
        auth: BearerAuth,
        body: JsonBody<PasswordRequest>,
    ) -> ApiResult<Json<crate::TotpEnrollment>> {
        let (_, mut tx) = self.signed_in(&auth).await?;
        let enrollment = self
            .identity
            .totp_enroll(&mut tx, body.into_inner().password)
            .await?;
        tx.commit().await?;
        Ok(Json(enrollment))
    }

    /// Turns two-factor sign-in on with a first code; returns ten recovery codes (shown once).
    #[oai(
        path = "/me/2fa/activate",
        method = "post",
        operation_id = "activate_totp"
    )]
    async fn totp_activate(
        &self,
        auth: BearerAuth,
        body: JsonBody<CodeRequest>,
    ) -> ApiResult<Json<RecoveryCodes>> {
        let me = self.principal(&auth).await?;
        Ok(Json(RecoveryCodes {
            recovery_codes: self.identity.totp_activate(me, &body.code).await?,
        }))
    }

    /// Turns two-factor sign-in off, with a current code or a recovery code.
    #[oai(
        path = "/me/2fa/disable",
        method = "post",
        operation_id = "disable_totp"
    )]
    async fn totp_disable(
        &self,
        auth: BearerAuth,
        body: JsonBody<CodeRequest>,
    ) -> ApiResult<NoContent> {
        let me = self.principal(&auth).await?;
        self.identity.totp_disable(me, &body.code).await?;
        Ok(NoContent::NoContent)
    }

    /// The signed-in user's live sessions.
    #[oai(
        path = "/me/sessions",
        method = "get",
        operation_id = "list_my_sessions"
    )]
    async fn sessions(&self, auth: BearerAuth) -> ApiResult<Json<Vec<SessionView>>> {
        let (me, mut tx) = self.signed_in(&auth).await?;
        let sessions = self.identity.sessions(&mut tx, Some(me.session_id)).await?;
        tx.commit().await?;
        Ok(Json(sessions))
    }

    /// Signs one of the user's sessions out; its tokens stop working at once.
    #[oai(
        path = "/me/sessions/:id",
        method = "delete",
        operation_id = "revoke_my_session"
    )]
    async fn revoke_session(&self, auth: BearerAuth, id: Path<Uuid>) -> ApiResult<NoContent> {
        let (_, mut tx) = self.signed_in(&auth).await?;
        self.identity
            .revoke_session(&mut tx, id.0, "revoked")
            .await?;
        tx.commit().await?;
        Ok(NoContent::NoContent)
    }
}
