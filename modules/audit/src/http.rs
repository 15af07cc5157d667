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
