//! The bank connection routes and the providers' webhook. Thin: authorize, parse, call the
//! service, map.

use std::sync::Arc;

use kernel::{
    ApiResult, Keyset, LazyJson, TenantId, Validate,
    auth::{Authorize, BearerAuth},
    idempotency::{Fingerprint, IdempotencyKey},
};
use poem_openapi::{
    ApiResponse, Object, OpenApi,
    param::{Header, Path, Query},
    payload::Json,
};
use serde::Deserialize;
use uuid::Uuid;

use crate::{
    Banking,
    domain::{AccountChoice, Connection, LinkTokenView},
};

/// The permission of each operation, declared beside the routes (spec: `x-permission`).
pub const PERMISSIONS: &[(&str, &str)] = &[
    ("create_link_token", WRITE),
    ("list_bank_connections", READ),
    ("create_bank_connection", WRITE),
    ("get_bank_connection", READ),
    ("delete_bank_connection", WRITE),
    ("sync_bank_connection", WRITE),
];
const READ: &str = "bank_connections:read";
const WRITE: &str = "bank_connections:write";

#[derive(poem_openapi::Tags)]
enum Tag {
    /// Bank connections: Plaid or the built-in sandbox bank, synced by cursor into the
    /// ledger without duplicates.
    Banking,
    /// Calls from outside services, checked by their signatures.
    Webhooks,
}

kernel::page_object!(
    /// Bank connections, newest first.
    ConnectionList,
    Connection
);

#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinkTokenBody {
    /// `sandbox` or `plaid`.
    #[oai(validator(min_length = 1, max_length = 40))]
    pub provider: String,
    /// Update mode: the connection to repair (its status is `needs_reauth`).
    pub connection_id: Option<Uuid>,
}

impl Validate for LinkTokenBody {
    fn validate(&self, errors: &mut kernel::FieldErrors) {
        provider_name(&self.provider, errors);
    }
}

fn provider_name(provider: &str, errors: &mut kernel::FieldErrors) {
    if !(1..=40).contains(&provider.chars().count()) {
        errors.add("provider", "must be 1 to 40 characters");
    }
}

#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountChoiceBody {
    #[oai(validator(min_length = 1, max_length = 200))]
    pub provider_account_id: String,
    /// An existing ledger account of the same currency; absent: a new one is opened.
    pub account_id: Option<Uuid>,
}

#[derive(Debug, Object, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewConnectionBody {
    /// `sandbox` or `plaid`.
    #[oai(validator(min_length = 1, max_length = 40))]
    pub provider: String,
    /// What Link returned (single use). The sandbox takes none (a new bank) or
    /// `sandbox-public-<16 hex digits>` (that bank again).
    #[oai(validator(min_length = 1, max_length = 500))]
    pub public_token: Option<String>,
    /// Where each bank account's transactions go; accounts not named get new ledger
    /// accounts.
    #[oai(validator(max_items = 50))]
    pub accounts: Option<Vec<AccountChoiceBody>>,
}

impl Validate for NewConnectionBody {
    fn validate(&self, errors: &mut kernel::FieldErrors) {
        provider_name(&self.provider, errors);
        if let Some(token) = &self.public_token
            && !(1..=500).contains(&token.chars().count())
        {
            errors.add("public_token", "must be 1 to 500 characters");
        }
        if let Some(accounts) = &self.accounts {
            for (i, a) in accounts.iter().enumerate() {
                if !(1..=200).contains(&a.provider_account_id.chars().count()) {
                    errors.add(
                        format!("accounts[{i}].provider_account_id"),
                        "must be 1 to 200 characters",
                    );
                }
            }
            let mut seen = std::collections::HashSet::new();
            if !accounts.iter().all(|a| seen.insert(&a.provider_account_id)) {
                errors.add("accounts", "must name each bank account once");
            }
            let mut chosen = std::collections::HashSet::new();
            if !accounts
                .iter()
                .filter_map(|a| a.account_id)
                .all(|id| chosen.insert(id))
            {
                errors.add(
                    "accounts",
                    "must link each ledger account to one bank account",
                );
            }
            if accounts.len() > 50 {
                errors.add("accounts", "must name at most 50 accounts");
            }
        }
    }
}

/// A provider's webhook body (Plaid: `{webhook_type, webhook_code, item_id, …}`). Its
/// exact bytes are checked against the signature header; other fields are allowed.
#[derive(Debug, Object, Deserialize)]
pub struct ProviderWebhook {
    pub webhook_type: Option<String>,
    pub webhook_code: Option<String>,
    pub item_id: Option<String>,
}

impl Validate for ProviderWebhook {}

#[derive(Debug, Object)]
pub struct SyncQueued {
    pub job_id: Uuid,
}

#[derive(Debug, Object)]
pub struct WebhookReceived {
    pub received: bool,
    /// The sync it asked for (joined or queued), if any.
    pub sync_job_id: Option<Uuid>,
}

#[derive(ApiResponse)]
pub enum Created {
    #[oai(status = 201)]
    Created(Json<Connection>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
pub enum Queued {
    /// Queued, or the sync already queued or running (joined).
    #[oai(status = 202)]
    Queued(Json<SyncQueued>, #[oai(header = "Location")] String),
}

#[derive(ApiResponse)]
pub enum Deleted {
    /// Disconnected.
    #[oai(status = 204)]
    Deleted,
}

/// The routes of bank connections.
pub struct BankingApi {
    authz: Arc<dyn Authorize>,
    banking: Banking,
    cursors: kernel::CursorSigner,
}

impl BankingApi {
    pub fn new(authz: Arc<dyn Authorize>, banking: Banking, cursors: kernel::CursorSigner) -> Self {
        BankingApi {
            authz,
            banking,
            cursors,
        }
    }
}

#[OpenApi(prefix_path = "/api/v1", tag = "Tag::Banking")]
impl BankingApi {
    /// A link token to open the provider's Link with; with `connection_id`, an
    /// update-mode token that repairs a connection whose bank wants a new login.
    #[oai(
        path = "/tenants/:tenant_id/bank-connections/link-token",
        method = "post",
        operation_id = "create_link_token"
    )]
    async fn create_link_token(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        body: LazyJson<LinkTokenBody>,
    ) -> ApiResult<Json<LinkTokenView>> {
        let tx = self.authz.tenant(auth.token(), tenant_id.0, WRITE).await?;
        let body = body.parse()?.into_inner();
        let token = self
            .banking
            .link_token(tx, &body.provider, body.connection_id)
            .await?;
        Ok(Json(LinkTokenView {
            link_token: token.link_token,
            expires_at: token.expires_at,
        }))
    }

    /// Bank connections, newest first.
    #[oai(
        path = "/tenants/:tenant_id/bank-connections",
        method = "get",
        operation_id = "list_bank_connections"
    )]
    async fn list_bank_connections(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        limit: Query<Option<i64>>,
        cursor: Query<Option<String>>,
    ) -> ApiResult<Json<ConnectionList>> {
        let mut tx = self.authz.tenant(auth.token(), tenant_id.0, READ).await?;
        let page = Keyset::parse(
            &self.cursors,
            "list_bank_connections",
            tenant_id.0,
            limit.0,
            cursor.0.as_deref(),
        )?;
        let list = self.banking.connections(&mut tx, &page).await?;
        tx.commit().await?;
        Ok(Json(list.into()))
    }

    /// Connects a bank: the public token is exchanged (the provider's token is sealed at
    /// rest and never returned), each bank account linked to a ledger account, and the
    /// first sync queued (`sync_job_id`). Takes `Idempotency-Key`.
    #[oai(
        path = "/tenants/:tenant_id/bank-connections",
        method = "post",
        operation_id = "create_bank_connection"
    )]
    async fn create_bank_connection(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        #[oai(name = "Idempotency-Key")] key: Header<Option<String>>,
        body: LazyJson<NewConnectionBody>,
    ) -> ApiResult<Created> {
        let tx = self.authz.tenant(auth.token(), tenant_id.0, WRITE).await?;
        let body = body.parse()?;
        let key = IdempotencyKey::parse_optional(key.0.as_deref())?;
        let fingerprint = Fingerprint::new("create_bank_connection", body.digest());
        let body = body.into_inner();
        let choices: Vec<AccountChoice> = body
            .accounts
            .unwrap_or_default()
            .into_iter()
            .map(|a| AccountChoice {
                provider_account_id: a.provider_account_id,
                account_id: a.account_id,
            })
            .collect();
        let (connection, _replayed) = self
            .banking
            .connect(
                tx,
                &body.provider,
                body.public_token.as_deref(),
                &choices,
                key.as_ref(),
                fingerprint,
            )
            .await?;
        let at = format!(
            "/api/v1/tenants/{}/bank-connections/{}",
            tenant_id.0, connection.id
        );
        Ok(Created::Created(Json(connection), at))
    }

    /// One connection: status (`active`, `needs_reauth`, `error`, `disconnected`), last
    /// sync, last error, and each account with the bank's balance beside ours.
    #[oai(
        path = "/tenants/:tenant_id/bank-connections/:id",
        method = "get",
        operation_id = "get_bank_connection"
    )]
    async fn get_bank_connection(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
    ) -> ApiResult<Json<Connection>> {
        let mut tx = self.authz.tenant(auth.token(), tenant_id.0, READ).await?;
        let connection = self.banking.connection(&mut tx, id.0).await?;
        tx.commit().await?;
        Ok(Json(connection))
    }

    /// Disconnects: the token is revoked at the provider and dropped; the accounts and
    /// their transactions stay.
    #[oai(
        path = "/tenants/:tenant_id/bank-connections/:id",
        method = "delete",
        operation_id = "delete_bank_connection"
    )]
    async fn delete_bank_connection(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
    ) -> ApiResult<Deleted> {
        let tx = self.authz.tenant(auth.token(), tenant_id.0, WRITE).await?;
        self.banking.disconnect(tx, id.0).await?;
        Ok(Deleted::Deleted)
    }

    /// Syncs now (`202` + the job); a sync already queued or running is joined.
    #[oai(
        path = "/tenants/:tenant_id/bank-connections/:id/sync",
        method = "post",
        operation_id = "sync_bank_connection"
    )]
    async fn sync_bank_connection(
        &self,
        auth: BearerAuth,
        tenant_id: Path<TenantId>,
        id: Path<Uuid>,
    ) -> ApiResult<Queued> {
        let mut tx = self.authz.tenant(auth.token(), tenant_id.0, WRITE).await?;
        let job = self.banking.request_sync(&mut tx, id.0).await?;
        tx.commit().await?;
        Ok(Queued::Queued(
            Json(SyncQueued { job_id: job }),
            format!("/api/v1/tenants/{}/jobs/{job}", tenant_id.0),
        ))
    }

    /// Plaid's webhooks for a tenant's items (the link token names this URL). The
    /// `Plaid-Verification` JWT is checked against the exact body (ES256, body hash, at
    /// most 5 minutes old); `SYNC_UPDATES_AVAILABLE` asks for a sync, coalesced with one
    /// queued or running. Public: the signature is the credential.
    #[oai(
        path = "/webhooks/plaid/:tenant_id",
        method = "post",
        operation_id = "plaid_webhook",
        tag = "Tag::Webhooks"
    )]
    async fn plaid_webhook(
        &self,
        request: &poem::Request,
        tenant_id: Path<TenantId>,
        body: LazyJson<ProviderWebhook>,
    ) -> ApiResult<Json<WebhookReceived>> {
        let job = self
            .banking
            .webhook("plaid", tenant_id.0, request.headers(), body.bytes())
            .await?;
        Ok(Json(WebhookReceived {
            received: true,
            sync_job_id: job,
        }))
    }
}
