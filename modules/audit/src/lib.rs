//! The tamper-evident audit log (DESIGN.md §2).
//!
//! Module code records events in its unit of work with [`Record::record`]; they are buffered
//! in the transaction and appended by [`AuditLog`] (a kernel commit hook) just before
//! `COMMIT`: gapless `seq` per chain under a lock on the chain's head row, `hash =
//! SHA-256(prev_hash ‖ canonical)` over the stored RFC 8785 text. A rolled-back transaction
//! leaves no event and no gap. Each tenant has a chain (`events`); events with no tenant
//! go to the platform chain (`platform_events`). Every 1,000 events, and hourly for a chain
//! with new events, a checkpoint signs the head with an Ed25519 key.
//!
//! Guarantees and their limits: `verify` finds any edit, insertion or deletion made behind
//! the application's back, and checkpoints signed with a key the database never holds catch
//! a chain rewritten consistently by someone with the owner role, up to the last
//! checkpoint. Events after the last checkpoint are protected by the chain alone: an
//! auditor who keeps the latest checkpoint detects a truncated or rewritten chain.

pub mod canonical;
pub mod chain;
mod http;
mod service;
pub mod signing;
mod store;

use std::sync::Arc;

use chrono::{DateTime, SubsecRound, Utc};
use serde_json::Value;

pub use chain::{Checkpoint, Verification};
pub use http::{AuditApi, PERMISSIONS, TenantEventsApi};
pub use service::{
    EventActor, EventFilter, EventView, checkpoint_due, export, list, list_checkpoints, verify,
    verify_export, verify_platform,
};
pub use signing::{Keys, PublicKey};

/// A checkpoint is signed at every multiple of this many events.
pub const CHECKPOINT_EVERY: i64 = 1_000;

/// An event to record: `type` is `domain.entity.action` (`member.role_changed`).
#[derive(Debug, Clone)]
pub struct NewEvent {
    kind: String,
    resource_type: Option<String>,
    resource_id: Option<String>,
    payload: Value,
    occurred_at: DateTime<Utc>,
}

impl NewEvent {
    /// An event of `kind`, happening now.
    pub fn new(kind: &str) -> NewEvent {
        NewEvent {
            kind: kind.to_string(),
            resource_type: None,
            resource_id: None,
            payload: Value::Object(Default::default()),
            occurred_at: Utc::now().trunc_subsecs(6),
        }
    }

    /// What it happened to.
    #[must_use]
    pub fn resource(mut self, resource_type: &str, resource_id: impl ToString) -> NewEvent {
        self.resource_type = Some(resource_type.to_string());
        self.resource_id = Some(resource_id.to_string());
        self
    }

    /// Details: an object of ids, counts and codes. Never an email address (hash it);
    /// integers beyond ±2^53−1 as strings.
    #[must_use]
    pub fn payload(mut self, payload: Value) -> NewEvent {
        self.payload = payload;
        self
    }
}

/// The events a unit of work buffered, in order.
#[derive(Debug, Default, Clone)]
struct Pending(Vec<NewEvent>);

/// Recording events in a transaction; they are written when it commits.
pub trait Record {
    /// Buffers `event`; it is appended to the chain at commit, or never.
    fn record(&mut self, event: NewEvent);
}

impl<T: kernel::Tx + ?Sized> Record for T {
    fn record(&mut self, event: NewEvent) {
        self.extensions_mut()
            .get_or_insert_default::<Pending>()
            .0
            .push(event);
    }
}

/// The audit log: installed on the kernel's `Db` as a commit hook.
#[derive(Clone)]
pub struct AuditLog {
    keys: Arc<Keys>,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog")
            .field("keys", &self.keys)
            .finish()
    }
}

impl AuditLog {
    pub fn new(keys: Keys) -> AuditLog {
        AuditLog {
            keys: Arc::new(keys),
        }
    }

    /// The signing keys.
    pub fn keys(&self) -> &Keys {
        &self.keys
    }
}

impl kernel::CommitHook for AuditLog {
    fn before_commit<'a>(
        &'a self,
        parts: kernel::CommitParts<'a>,
    ) -> futures_util::future::BoxFuture<'a, Result<(), kernel::Problem>> {
        Box::pin(async move {
            let Some(pending) = parts.extensions.remove::<Pending>() else {
                return Ok(());
            };
            if pending.0.is_empty() {
                return Ok(());
            }
            service::append(parts.conn, parts.context, pending.0, &self.keys).await
        })
    }
}

/// RFC 3339 UTC with microseconds, the one time format of the chain.
pub fn timestamp(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()
}
