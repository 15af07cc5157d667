//! The hash chain: what an event's canonical text holds, how its hash is computed, and the
//! verifier shared by `verify` on the database and `verify --file` on an export.

use std::collections::BTreeMap;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::{canonical, signing};

/// The version of the canonical field list and hash construction below.
pub const HASH_VERSION: i16 = 1;

/// The `prev_hash` of a chain's first event.
pub const GENESIS: [u8; 32] = [0; 32];

/// The facts of one event, as they are hashed (version 1).
#[derive(Debug, Clone, PartialEq)]
pub struct Facts {
    pub seq: i64,
    pub id: Uuid,
    /// `None` on the platform chain.
    pub tenant_id: Option<Uuid>,
    /// RFC 3339 UTC with microseconds.
    pub occurred_at: String,
    pub kind: String,
    pub actor_kind: String,
    pub actor_id: Option<Uuid>,
    pub source_agent: String,
    pub resource_type: Option<String>,
    pub resource_id: Option<String>,
    pub request_id: Option<String>,
    pub payload: Value,
}

impl Facts {
    /// The canonical text (RFC 8785) that is stored and hashed.
    pub fn canonical(&self) -> Result<String, canonical::CanonicalError> {
        canonical::to_string(&json!({
            "seq": self.seq,
            "id": self.id,
            "tenant_id": self.tenant_id,
            "occurred_at": self.occurred_at,
            "type": self.kind,
            "actor": { "kind": self.actor_kind, "id": self.actor_id },
            "source_agent": self.source_agent,
            "resource_type": self.resource_type,
            "resource_id": self.resource_id,
            "request_id": self.request_id,
            "payload": self.payload,
        }))
    }

    /// Reads the facts back from a canonical text.
    pub fn parse(canonical: &str) -> Option<Facts> {
        let v: Value = serde_json::from_str(canonical).ok()?;
        let opt_str = |v: &Value| v.as_str().map(str::to_string);
        let opt_uuid = |v: &Value| v.as_str().and_then(|s| s.parse().ok());
        Some(Facts {
            seq: v["seq"].as_i64()?,
            id: v["id"].as_str()?.parse().ok()?,
            tenant_id: opt_uuid(&v["tenant_id"]),
            occurred_at: v["occurred_at"].as_str()?.to_string(),
            kind: v["type"].as_str()?.to_string(),
            actor_kind: v["actor"]["kind"].as_str()?.to_string(),
            actor_id: opt_uuid(&v["actor"]["id"]),
            source_agent: v["source_agent"].as_str()?.to_string(),
            resource_type: opt_str(&v["resource_type"]),
            resource_id: opt_str(&v["resource_id"]),
            request_id: opt_str(&v["request_id"]),
            payload: v["payload"].clone(),
        })
    }
}

/// `SHA-256(prev_hash ‖ canonical)` over raw bytes.
pub fn hash(prev: &[u8], canonical: &str) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(canonical.as_bytes());
    h.finalize().into()
}

/// A signed checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Checkpoint {
    pub seq: i64,
    /// Lower-case hex.
    pub hash: String,
    /// RFC 3339 UTC with microseconds.
    pub signed_at: String,
    pub key_id: String,
    /// Base64.
    pub signature: String,
}

/// One stored event as the verifier sees it.
pub struct StoredEvent<'a> {
    pub seq: i64,
    pub canonical: &'a str,
    pub hash_version: i16,
    pub prev_hash: &'a [u8],
    pub hash: &'a [u8],
    /// The queryable columns, when verifying the database (they must say what the text
    /// says; their `payload` is ignored).
    pub columns: Option<&'a Facts>,
}

/// The outcome of a verification.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verification {
    /// The chain and every checkpoint hold.
    pub ok: bool,
    /// Events checked.
    pub checked: u64,
    /// Checkpoints whose signature and hash were checked.
    pub checkpoints: u64,
    /// The first sequence number found bad, if any.
    pub first_bad_seq: Option<i64>,
    /// What was wrong there, for a person.
    pub reason: Option<String>,
}

/// Checks events in `seq` order, one at a time, in constant memory.
pub struct Verifier {
    chain: String,
    tenant: Option<Uuid>,
    keys: Vec<signing::PublicKey>,
    checkpoints: BTreeMap<i64, Checkpoint>,
    prev: Vec<u8>,
    next_seq: i64,
    checked: u64,
    verified_checkpoints: u64,
    bad: Option<(i64, String)>,
}

impl Verifier {
    /// For the chain of `tenant` (`None`: the platform chain) with its checkpoints.
    pub fn new(
        tenant: Option<Uuid>,
        keys: Vec<signing::PublicKey>,
        checkpoints: Vec<Checkpoint>,
    ) -> Verifier {
        Verifier {
            chain: tenant
                .map(|t| t.to_string())
                .unwrap_or_else(|| "platform".into()),
            tenant,
            keys,
            checkpoints: checkpoints.into_iter().map(|c| (c.seq, c)).collect(),
            prev: GENESIS.to_vec(),
            next_seq: 1,
            checked: 0,
            verified_checkpoints: 0,
            bad: None,
        }
    }

    fn fail(&mut self, seq: i64, reason: impl Into<String>) {
        if self.bad.as_ref().is_none_or(|(s, _)| seq < *s) {
            self.bad = Some((seq, reason.into()));
        }
    }

    /// Checks the next event.
    pub fn event(&mut self, e: StoredEvent<'_>) {
        self.checked += 1;
        if self.bad.is_some() {
            return;
        }
        if e.seq != self.next_seq {
            let seq = self.next_seq.min(e.seq);
            self.fail(
                seq,
                format!("expected seq {}, found {}", self.next_seq, e.seq),
            );
            return;
        }
        if e.hash_version != HASH_VERSION {
            return self.fail(e.seq, format!("unknown hash_version {}", e.hash_version));
        }
        if e.prev_hash != self.prev.as_slice() {
            return self.fail(e.seq, "prev_hash is not the previous event's hash");
        }
        if hash(e.prev_hash, e.canonical) != e.hash {
            return self.fail(e.seq, "hash does not match the canonical text");
        }
        match Facts::parse(e.canonical) {
            None => return self.fail(e.seq, "canonical text is not an event"),
            Some(facts) => {
                if facts.seq != e.seq || facts.tenant_id != self.tenant {
                    return self.fail(e.seq, "canonical text names another seq or chain");
                }
                // The payload is only in the text; every other fact is also a column.
                if let Some(columns) = e.columns
                    && (Facts {
                        payload: Value::Null,
                        ..facts
                    } != Facts {
                        payload: Value::Null,
                        ..columns.clone()
                    })
                {
                    return self.fail(e.seq, "the columns do not say what the canonical text says");
                }
            }
        }
        if let Some(cp) = self.checkpoints.get(&e.seq).cloned() {
            if cp.hash != kernel::hex::encode(e.hash) {
                return self.fail(e.seq, "the event's hash differs from the signed checkpoint");
            }
            if !self.signature_ok(&cp) {
                return self.fail(e.seq, "the checkpoint's signature is not valid");
            }
            self.verified_checkpoints += 1;
        }
        self.prev = e.hash.to_vec();
        self.next_seq += 1;
    }

    fn signature_ok(&self, cp: &Checkpoint) -> bool {
        use base64::Engine;
        let Ok(sig) = base64::engine::general_purpose::STANDARD.decode(&cp.signature) else {
            return false;
        };
        let Some(hash) = kernel::hex::decode(&cp.hash) else {
            return false;
        };
        let msg = signing::message(&cp.key_id, &self.chain, cp.seq, &hash, &cp.signed_at);
        signing::verify(&self.keys, &cp.key_id, &msg, &sig)
    }

    /// Ends the walk. `head` is the stored head (`seq`, `hash`) when verifying the database.
    pub fn finish(mut self, head: Option<(i64, Vec<u8>)>) -> Verification {
        let last = self.next_seq - 1;
        if self.bad.is_none() {
            if let Some(beyond) = self.checkpoints.keys().find(|s| **s > last) {
                let beyond = *beyond;
                self.fail(last + 1, format!("a checkpoint signs seq {beyond}, beyond the last event: events were removed"));
            }
            for k in 1..=last / crate::CHECKPOINT_EVERY {
                let seq = k * crate::CHECKPOINT_EVERY;
                if !self.checkpoints.contains_key(&seq) {
                    self.fail(seq, format!("the checkpoint at seq {seq} is missing"));
                    break;
                }
            }
            if let Some((head_seq, head_hash)) = head {
                if head_seq > last {
                    self.fail(
                        last + 1,
                        "the head is past the last event: events were removed",
                    );
                } else if head_seq < last {
                    self.fail(head_seq + 1, "events exist past the head");
                } else if head_hash != self.prev {
                    self.fail(last.max(1), "the head's hash differs from the last event's");
                }
            }
        }
        Verification {
            ok: self.bad.is_none(),
            checked: self.checked,
            checkpoints: self.verified_checkpoints,
            first_bad_seq: self.bad.as_ref().map(|(s, _)| *s),
            reason: self.bad.map(|(_, r)| r),
        }
    }
}
