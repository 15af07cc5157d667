//! The audit log's public route: the keys that verify checkpoints.

use std::sync::Arc;

use poem_openapi::{Object, OpenApi, payload::Json};

use crate::Keys;

/// `GET /api/v1/audit/public-key`.
pub struct AuditApi {
    keys: Arc<Keys>,
}

impl AuditApi {
    pub fn new(log: &crate::AuditLog) -> AuditApi {
        AuditApi {
            keys: log.keys.clone(),
        }
    }
}

/// A key that verifies audit checkpoints.
#[derive(Debug, Object)]
pub struct AuditPublicKey {
    /// The id checkpoints name in `key_id`.
    pub key_id: String,
    /// Always `Ed25519`.
    pub algorithm: String,
    /// The raw 32-byte public key, base64.
    pub public_key: String,
}

/// Every key that signed or signs checkpoints; the first signs new ones.
#[derive(Debug, Object)]
pub struct AuditPublicKeys {
    pub keys: Vec<AuditPublicKey>,
}

#[OpenApi(prefix_path = "/api/v1", tag = "AuditTag::Audit")]
impl AuditApi {
    /// The Ed25519 public keys that sign audit checkpoints, by key id. Keep them with the
    /// checkpoints you export: `balance audit verify --file … --keys …` checks an export offline.
    #[oai(
        path = "/audit/public-key",
        method = "get",
        operation_id = "get_audit_public_keys"
    )]
    async fn public_keys(&self) -> kernel::ApiResult<Json<AuditPublicKeys>> {
        Ok(Json(AuditPublicKeys {
            keys: self
                .keys
                .public_keys()
                .into_iter()
                .map(|k| AuditPublicKey {
                    key_id: k.key_id,
                    algorithm: k.algorithm,
                    public_key: k.public_key,
                })
                .collect(),
        }))
    }
}

#[derive(poem_openapi::Tags)]
enum AuditTag {
    /// The tamper-evident audit log.
    Audit,
}

/// The tenant routes of the audit log (`events:read`).
pub struct TenantEventsApi {
    authz: Arc<dyn kernel::auth::Authorize>,
    log: crate::AuditLog,
    cursors: kernel::CursorSigner,
}

impl TenantEventsApi {
    pub fn new(
        authz: Arc<dyn kernel::auth::Authorize>,
        log: &crate::AuditLog,
        cursors: kernel::CursorSigner,
    ) -> TenantEventsApi {
        TenantEventsApi {
            authz,
            log: log.clone(),
            cursors,
        }
    }
}

/// The permission of each operation, declared beside the routes; the spec carries it as
/// `x-permission`.
pub const PERMISSIONS: &[(&str, &str)] = &[
    ("list_events", EVENTS_READ),
    ("verify_events", EVENTS_READ),
    ("list_event_checkpoints", EVENTS_READ),
    ("export_events", EVENTS_READ),
];
const EVENTS_READ: &str = "events:read";

kernel::page_object!(
    /// A page of events, newest first.
    EventPage,
    crate::EventView
);

/// The outcome of verifying a tenant's chain.
#[derive(Debug, Object)]
pub struct VerificationView {
    /// The chain and every checkpoint hold.
    pub ok: bool,
    /// Events checked.
    pub checked: u64,
    /// Checkpoints checked.
    pub checkpoints: u64,
    /// The first sequence number found bad.
    pub first_bad_seq: Option<i64>,
    pub reason: Option<String>,
}

/// A signed checkpoint (see `GET /audit/public-key`).
#[derive(Debug, Object)]
pub struct CheckpointView {
    pub seq: i64,
    /// Lower-case hex.
    pub hash: String,
    pub signed_at: String,
    pub key_id: String,
    /// Base64.
    pub signature: String,
}

#[derive(poem_openapi::ApiResponse)]
pub enum ExportResponse {
    /// The chain as NDJSON: a header, the checkpoints, then every event.
    #[oai(status = 200, content_type = "application/x-ndjson")]
    Ok(poem_openapi::payload::Binary<poem::Body>),
}

#[OpenApi(prefix_path = "/api/v1", tag = "AuditTag::Audit")]
impl TenantEventsApi {
    /// The tenant's audit log, newest first, with filters.
    #[oai(
        path = "/tenants/:tenant_id/events",
        method = "get",
        operation_id = "list_events"
    )]
    #[allow(clippy::too_many_arguments)]
    async fn list(
        &self,
        auth: kernel::auth::BearerAuth,
        tenant_id: poem_openapi::param::Path<kernel::TenantId>,
        #[oai(name = "type")] kind: poem_openapi::param::Query<Option<String>>,
        actor_id: poem_openapi::param::Query<Option<uuid::Uuid>>,
        resource_type: poem_openapi::param::Query<Option<String>>,
        resource_id: poem_openapi::param::Query<Option<String>>,
        from: poem_openapi::param::Query<Option<chrono::DateTime<chrono::Utc>>>,
        to: poem_openapi::param::Query<Option<chrono::DateTime<chrono::Utc>>>,
        limit: poem_openapi::param::Query<Option<i64>>,
        cursor: poem_openapi::param::Query<Option<String>>,
    ) -> kernel::ApiResult<Json<EventPage>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, EVENTS_READ)
            .await?;
        let filter = crate::EventFilter {
            kind: kind.0,
            actor_id: actor_id.0,
            resource_type: resource_type.0,
            resource_id: resource_id.0,
            from: from.0,
            to: to.0,
        };
        let mut parts = vec![tenant_id.0.to_string()];
        parts.extend(filter.query_parts());
        let query = kernel::QueryId::new(
            "list_events",
            &parts.iter().map(String::as_str).collect::<Vec<_>>(),
        );
        let params =
            kernel::PageParams::parse(limit.0, cursor.0.as_deref(), &self.cursors, &query)?;
        let events = crate::list(&mut tx, &filter, &params).await?;
        tx.commit().await?;
        let page = kernel::Page::from_rows(events, &params, &self.cursors, &query, |e| {
            kernel::Position {
                key: serde_json::json!(e.seq),
                id: e.id,
            }
        });
        Ok(Json(page.into()))
    }

    /// Checks the tenant's hash chain and signed checkpoints.
    #[oai(
        path = "/tenants/:tenant_id/events/verify",
        method = "get",
        operation_id = "verify_events"
    )]
    async fn verify(
        &self,
        auth: kernel::auth::BearerAuth,
        tenant_id: poem_openapi::param::Path<kernel::TenantId>,
    ) -> kernel::ApiResult<Json<VerificationView>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, EVENTS_READ)
            .await?;
        let v = crate::verify(&mut tx, self.log.keys().public_keys()).await?;
        tx.commit().await?;
        Ok(Json(VerificationView {
            ok: v.ok,
            checked: v.checked,
            checkpoints: v.checkpoints,
            first_bad_seq: v.first_bad_seq,
            reason: v.reason,
        }))
    }

    /// The tenant's signed checkpoints: keep the latest to detect a truncated or rewritten chain.
    #[oai(
        path = "/tenants/:tenant_id/events/checkpoints",
        method = "get",
        operation_id = "list_event_checkpoints"
    )]
    async fn checkpoints(
        &self,
        auth: kernel::auth::BearerAuth,
        tenant_id: poem_openapi::param::Path<kernel::TenantId>,
    ) -> kernel::ApiResult<Json<Vec<CheckpointView>>> {
        let mut tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, EVENTS_READ)
            .await?;
        let cps = crate::list_checkpoints(&mut tx).await?;
        tx.commit().await?;
        Ok(Json(
            cps.into_iter()
                .map(|c| CheckpointView {
                    seq: c.seq,
                    hash: c.hash,
                    signed_at: c.signed_at,
                    key_id: c.key_id,
                    signature: c.signature,
                })
                .collect(),
        ))
    }

    /// The tenant's chain as NDJSON, streamed; verifies offline with `balance audit verify --file`.
    #[oai(
        path = "/tenants/:tenant_id/events/export",
        method = "get",
        operation_id = "export_events"
    )]
    async fn export(
        &self,
        auth: kernel::auth::BearerAuth,
        tenant_id: poem_openapi::param::Path<kernel::TenantId>,
    ) -> kernel::ApiResult<ExportResponse> {
        let tx = self
            .authz
            .tenant(auth.token(), tenant_id.0, EVENTS_READ)
            .await?;
        let stream = futures_util::StreamExt::map(crate::export(tx), |chunk| {
            chunk
                .map(bytes_of)
                .map_err(|e| std::io::Error::other(e.to_string()))
        });
        Ok(ExportResponse::Ok(poem_openapi::payload::Binary(
            poem::Body::from_bytes_stream(stream),
        )))
    }
}

fn bytes_of(s: String) -> Vec<u8> {
    s.into_bytes()
}
