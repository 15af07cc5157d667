//! Secrets at rest (DESIGN.md §4): AES-256-GCM under a versioned key ring
//! (`BALANCE_ENCRYPTION_KEYS`: the first key encrypts, every key decrypts), a random 96-bit
//! nonce per encryption, the key id inside every ciphertext, and associated data that binds
//! a ciphertext to its row (e.g. the user id), so a ciphertext copied to another row fails.
//!
//! Ciphertext layout: `0x01 ‖ len(key_id) ‖ key_id ‖ nonce (12) ‖ sealed data ‖ tag (16)`.

use ring::{
    aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey},
    rand::{SecureRandom, SystemRandom},
};

pub mod rotation;

pub use kernel::Secret;

const VERSION: u8 = 1;

/// Why a ciphertext did not open.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VaultError {
    #[error("the ciphertext is malformed")]
    Malformed,
    #[error("no key `{0}` in the key ring")]
    UnknownKey(String),
    /// Wrong key, wrong associated data, or a modified ciphertext: indistinguishable by design.
    #[error("the ciphertext does not open with its key and associated data")]
    Rejected,
}

/// The key ring.
pub struct Vault {
    keys: Vec<(String, LessSafeKey)>,
    rng: SystemRandom,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ids: Vec<&str> = self.keys.iter().map(|(id, _)| id.as_str()).collect();
        f.debug_struct("Vault").field("key_ids", &ids).finish()
    }
}

impl Vault {
    /// From `(key id, 32-byte key)` pairs; the first encrypts.
    pub fn new<'a>(
        keys: impl IntoIterator<Item = (&'a str, &'a [u8])>,
    ) -> Result<Vault, VaultError> {
        let keys = keys
            .into_iter()
            .map(|(id, key)| {
                let unbound = UnboundKey::new(&AES_256_GCM, key)
                    .map_err(|_| VaultError::UnknownKey(id.to_string()))?;
                Ok((id.to_string(), LessSafeKey::new(unbound)))
            })
            .collect::<Result<Vec<_>, VaultError>>()?;
        assert!(
            !keys.is_empty(),
            "configuration guarantees at least one key"
        );
        assert!(
            keys.iter().all(|(id, _)| id.len() <= 255),
            "key ids are short"
        );
        Ok(Vault {
            keys,
            rng: SystemRandom::new(),
        })
    }

    /// Encrypts `plaintext` bound to `aad` under the current key.
    pub fn encrypt(&self, plaintext: &[u8], aad: &[u8]) -> Vec<u8> {
        let (id, key) = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        self.rng.fill(&mut nonce).expect("the system RNG works");
        let mut sealed = plaintext.to_vec();
        key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(aad),
            &mut sealed,
        )
        .expect("AES-GCM seals any length we store");
        let mut out = Vec::with_capacity(2 + id.len() + NONCE_LEN + sealed.len());
        out.push(VERSION);
        out.push(id.len() as u8);
        out.extend_from_slice(id.as_bytes());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        out
    }

    /// Opens a ciphertext made by [`Vault::encrypt`] with the same `aad`.
    pub fn decrypt(&self, ciphertext: &[u8], aad: &[u8]) -> Result<Secret<Vec<u8>>, VaultError> {
        let (&version, rest) = ciphertext.split_first().ok_or(VaultError::Malformed)?;
        if version != VERSION {
            return Err(VaultError::Malformed);
        }
        let (&id_len, rest) = rest.split_first().ok_or(VaultError::Malformed)?;
        let id_len = id_len as usize;
        if rest.len() < id_len + NONCE_LEN + AES_256_GCM.tag_len() {
            return Err(VaultError::Malformed);
        }
        let (id, rest) = rest.split_at(id_len);
        let (nonce, sealed) = rest.split_at(NONCE_LEN);
        let id = std::str::from_utf8(id).map_err(|_| VaultError::Malformed)?;
        let (_, key) = self
            .keys
            .iter()
            .find(|(k, _)| k == id)
            .ok_or_else(|| VaultError::UnknownKey(id.to_string()))?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| VaultError::Malformed)?;
        let mut buffer = sealed.to_vec();
        let plain = key
            .open_in_place(nonce, Aad::from(aad), &mut buffer)
            .map_err(|_| VaultError::Rejected)?;
        Ok(Secret::new(plain.to_vec()))
    }

    /// The id of the key that encrypts.
    pub fn first_key_id(&self) -> &str {
        &self.keys[0].0
    }

    /// Whether the ring holds the key `id`.
    pub fn has_key(&self, id: &str) -> bool {
        self.keys.iter().any(|(k, _)| k == id)
    }

    /// Opens `ciphertext` and seals it again under the first key, bound to the same `aad`;
    /// `None` when it is already under the first key.
    pub fn reseal(&self, ciphertext: &[u8], aad: &[u8]) -> Result<Option<Vec<u8>>, VaultError> {
        if Vault::key_id(ciphertext) == Some(self.first_key_id()) {
            return Ok(None);
        }
        let plain = self.decrypt(ciphertext, aad)?;
        Ok(Some(self.encrypt(plain.expose(), aad)))
    }

    /// The id of the key a ciphertext was made with (to find rows to re-encrypt after a rotation).
    pub fn key_id(ciphertext: &[u8]) -> Option<&str> {
        let len = *ciphertext.get(1)? as usize;
        std::str::from_utf8(ciphertext.get(2..2 + len)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault() -> Vault {
        Vault::new([("k2", &[2u8; 32][..]), ("k1", &[1u8; 32][..])]).unwrap()
    }

    #[test]
    fn a_secret_round_trips_bound_to_its_row() {
        let v = vault();
        let c = v.encrypt(b"JBSWY3DPEHPK3PXP", b"user:1");
        assert_eq!(
            v.decrypt(&c, b"user:1").unwrap().expose(),
            b"JBSWY3DPEHPK3PXP"
        );
        assert_eq!(Vault::key_id(&c), Some("k2"), "the first key encrypts");
        assert_ne!(
            v.encrypt(b"same", b"a"),
            v.encrypt(b"same", b"a"),
            "a fresh nonce every time"
        );
    }

    #[test]
    fn another_row_a_modified_ciphertext_or_an_unknown_key_is_refused() {
        let v = vault();
        let c = v.encrypt(b"secret", b"user:1");
        assert_eq!(
            v.decrypt(&c, b"user:2").unwrap_err(),
            VaultError::Rejected,
            "copied to another row"
        );
        for i in [0usize, 1, 5, c.len() / 2, c.len() - 1] {
            let mut t = c.clone();
            t[i] ^= 0x40;
            assert!(v.decrypt(&t, b"user:1").is_err(), "byte {i} modified");
        }
        assert!(
            v.decrypt(&c[..c.len() - 1], b"user:1").is_err(),
            "truncated"
        );
        let other = Vault::new([("k9", &[9u8; 32][..])]).unwrap();
        assert_eq!(
            other.decrypt(&c, b"user:1").unwrap_err(),
            VaultError::UnknownKey("k2".into())
        );
    }

    #[test]
    fn keys_rotate_old_ciphertexts_still_open() {
        let old = Vault::new([("k1", &[1u8; 32][..])]).unwrap();
        let c = old.encrypt(b"secret", b"row");
        let rotated = vault();
        assert_eq!(rotated.decrypt(&c, b"row").unwrap().expose(), b"secret");
        assert_eq!(Vault::key_id(&rotated.encrypt(b"x", b"row")), Some("k2"));
        assert_eq!(
            format!("{:?}", rotated.decrypt(&c, b"row").unwrap()),
            "***",
            "a secret never prints"
        );
    }
}
