//! Ed25519 keys that sign checkpoints: the first key of `BALANCE_AUDIT_SIGNING_KEYS` signs,
//! every key verifies, so keys rotate and old checkpoints stay verifiable.
//!
//! The signed message (DESIGN.md §2), fields joined by `\n`:
//! `balance-audit-v1`, key id, chain (`<tenant uuid>` or `platform`), seq (decimal),
//! hash (lower-case hex), signed_at (RFC 3339 UTC with microseconds).

use base64::{Engine, engine::general_purpose::STANDARD as B64};
use ring::signature::{ED25519, Ed25519KeyPair, KeyPair, UnparsedPublicKey};

/// A key that can sign.
pub struct SigningKey {
    pub key_id: String,
    pair: Ed25519KeyPair,
}

/// A key that can verify.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PublicKey {
    pub key_id: String,
    /// Always `Ed25519`.
    pub algorithm: String,
    /// The raw 32-byte public key, base64.
    pub public_key: String,
}

/// The signing key ring.
pub struct Keys {
    signing: Vec<SigningKey>,
}

impl std::fmt::Debug for Keys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.signing.iter().map(|k| k.key_id.as_str()).collect();
        f.debug_struct("Keys").field("key_ids", &ids).finish()
    }
}

/// A seed that is not a valid Ed25519 key.
#[derive(Debug, thiserror::Error)]
#[error("audit signing key `{0}` is not a valid Ed25519 seed")]
pub struct BadKey(pub String);

impl Keys {
    /// From `(key id, 32-byte seed)` pairs, the first signing.
    pub fn from_seeds<'a>(
        seeds: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Keys, BadKey> {
        let signing = seeds
            .into_iter()
            .map(|(id, seed)| {
                Ed25519KeyPair::from_seed_unchecked(seed)
                    .map(|pair| SigningKey {
                        key_id: id.to_string(),
                        pair,
                    })
                    .map_err(|_| BadKey(id.to_string()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        assert!(
            !signing.is_empty(),
            "configuration guarantees at least one key"
        );
        Ok(Keys { signing })
    }

    /// The key that signs new checkpoints.
    pub fn current(&self) -> &SigningKey {
        &self.signing[0]
    }

    /// Every public key, for `GET /audit/public-key` and offline verification.
    pub fn public_keys(&self) -> Vec<PublicKey> {
        self.signing
            .iter()
            .map(|k| PublicKey {
                key_id: k.key_id.clone(),
                algorithm: "Ed25519".into(),
                public_key: B64.encode(k.pair.public_key().as_ref()),
            })
            .collect()
    }
}

/// The bytes a checkpoint's signature covers.
pub fn message(key_id: &str, chain: &str, seq: i64, hash: &[u8], signed_at: &str) -> Vec<u8> {
    format!(
        "balance-audit-v1\n{key_id}\n{chain}\n{seq}\n{}\n{signed_at}",
        kernel::hex::encode(hash)
    )
    .into_bytes()
}

impl SigningKey {
    /// Signs `message`.
    pub fn sign(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

/// Whether `signature` over `message` is valid under the public key `key_id` of `keys`.
pub fn verify(keys: &[PublicKey], key_id: &str, message: &[u8], signature: &[u8]) -> bool {
    let Some(key) = keys
        .iter()
        .find(|k| k.key_id == key_id && k.algorithm == "Ed25519")
    else {
        return false;
    };
    let Ok(raw) = B64.decode(&key.public_key) else {
        return false;
    };
    UnparsedPublicKey::new(&ED25519, raw)
        .verify(message, signature)
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signature_verifies_under_its_key_id_only() {
        let keys = Keys::from_seeds([("k2", &[2u8; 32][..]), ("k1", &[1u8; 32][..])]).unwrap();
        let public = keys.public_keys();
        let msg = message(
            "k2",
            "platform",
            1000,
            &[7; 32],
            "2026-11-25T08:00:00.000000Z",
        );
        let sig = keys.current().sign(&msg);
        assert_eq!(keys.current().key_id, "k2");
        assert!(verify(&public, "k2", &msg, &sig));
        assert!(!verify(&public, "k1", &msg, &sig), "another key");
        assert!(!verify(&public, "k3", &msg, &sig), "an unknown key id");
        let other = message(
            "k2",
            "platform",
            1001,
            &[7; 32],
            "2026-11-25T08:00:00.000000Z",
        );
        assert!(!verify(&public, "k2", &other, &sig), "another message");
    }
}
