//! Tokens: short-lived access JWTs, and opaque single-use secrets stored as HMACs.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD as B64};
use hmac::{Hmac, KeyInit, Mac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use kernel::{Secret, UserId};
use sha2::Sha256;
use uuid::Uuid;

/// Claims of an access token (DESIGN.md §4).
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Claims {
    pub iss: String,
    pub aud: String,
    pub sub: Uuid,
    pub sid: Uuid,
    pub jti: Uuid,
    pub iat: u64,
    pub exp: u64,
    /// Not issued here (the claim is checked when a token carries it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
}

/// Signs and checks access tokens: HS256 only, `kid` names the key, first key signs.
pub struct Jwt {
    keys: Vec<(String, Secret<Vec<u8>>)>,
    issuer: String,
    ttl_secs: u64,
}

impl Jwt {
    pub fn new(keys: Vec<(String, Secret<Vec<u8>>)>, issuer: String, ttl_secs: u64) -> Jwt {
        Jwt {
            keys,
            issuer,
            ttl_secs,
        }
    }

    pub fn ttl_secs(&self) -> u64 {
        self.ttl_secs
    }

    /// An access token for `user`'s session `sid`.
    pub fn issue(&self, user: UserId, sid: Uuid) -> String {
        let now = jsonwebtoken::get_current_timestamp();
        let claims = Claims {
            iss: self.issuer.clone(),
            aud: self.issuer.clone(),
            sub: user.as_uuid(),
            sid,
            jti: Uuid::now_v7(),
            iat: now,
            exp: now + self.ttl_secs,
            nbf: None,
        };
        let (kid, secret) = &self.keys[0];
        let mut header = Header::new(Algorithm::HS256);
        header.kid = Some(kid.clone());
        jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(secret.expose()))
            .expect("HS256 signs")
    }

    /// The claims of a valid token: pinned algorithm, known `kid`, issuer, audience,
    /// expiry with at most 5 s of leeway; never issued in the future (`iat`, `nbf`), and
    /// never valid for longer than tokens are issued for (`exp - iat`), so even a token
    /// signed with a leaked key cannot outlive the configured lifetime.
    pub fn verify(&self, token: &str) -> Option<Claims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::HS256 {
            return None;
        }
        let kid = header.kid?;
        let (_, secret) = self.keys.iter().find(|(id, _)| *id == kid)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 5;
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        validation.validate_nbf = true;
        let claims = jsonwebtoken::decode::<Claims>(
            token,
            &DecodingKey::from_secret(secret.expose()),
            &validation,
        )
        .ok()?
        .claims;
        const LEEWAY: u64 = 5;
        let now = jsonwebtoken::get_current_timestamp();
        let issued_ahead = claims.iat > now + LEEWAY;
        let too_long = claims.exp.saturating_sub(claims.iat) > self.ttl_secs + LEEWAY;
        (!issued_ahead && !too_long).then_some(claims)
    }
}

/// Server peppers for token HMACs: the first hashes new tokens, all verify.
pub struct Peppers(pub Vec<(String, Secret<Vec<u8>>)>);

/// A freshly minted opaque token: what the client gets, and what is stored.
pub struct Minted {
    /// `<prefix>_<id>_<secret>`: shown to the client once.
    pub token: String,
    pub id: Uuid,
    pub pepper_id: String,
    pub hash: Vec<u8>,
}

impl Peppers {
    fn mac(&self, pepper_id: &str, secret: &[u8]) -> Option<Hmac<Sha256>> {
        let (_, pepper) = self.0.iter().find(|(id, _)| id == pepper_id)?;
        let mut mac = Hmac::<Sha256>::new_from_slice(pepper.expose()).expect("HMAC takes any key");
        mac.update(secret);
        Some(mac)
    }

    /// A new token with `prefix` (`brt` refresh, `bvt` verification, `bpr` reset).
    pub fn mint(&self, prefix: &str) -> Minted {
        let id = Uuid::now_v7();
        let secret: [u8; 32] = rand::random();
        let pepper_id = self.0[0].0.clone();
        let hash = self
            .mac(&pepper_id, &secret)
            .expect("the first pepper exists")
            .finalize()
            .into_bytes()
            .to_vec();
        Minted {
            token: format!("{prefix}_{}_{}", id.simple(), B64.encode(secret)),
            id,
            pepper_id,
            hash,
        }
    }

    /// The id a token names, if it is shaped like one of `prefix`.
    pub fn parse(prefix: &str, token: &str) -> Option<(Uuid, Vec<u8>)> {
        let rest = token.strip_prefix(prefix)?.strip_prefix('_')?;
        let (id, secret) = rest.split_once('_')?;
        Some((
            Uuid::try_parse(id).ok()?,
            B64.decode(secret).ok().filter(|s| s.len() == 32)?,
        ))
    }

    /// `(pepper id, HMAC)` of `data` under the current pepper, for values that are not
    /// minted here (recovery codes).
    pub fn hash_current(&self, data: &[u8]) -> (String, Vec<u8>) {
        let id = self.0[0].0.clone();
        let hash = self
            .mac(&id, data)
            .expect("the first pepper exists")
            .finalize()
            .into_bytes()
            .to_vec();
        (id, hash)
    }

    /// The HMAC of `data` under every pepper (a lookup by hash, so peppers can rotate).
    pub fn hash_all(&self, data: &[u8]) -> Vec<Vec<u8>> {
        self.0
            .iter()
            .filter_map(|(id, _)| self.mac(id, data))
            .map(|m| m.finalize().into_bytes().to_vec())
            .collect()
    }

    /// Whether `secret` matches the stored hash (constant time).
    pub fn matches(&self, pepper_id: &str, secret: &[u8], stored: &[u8]) -> bool {
        self.mac(pepper_id, secret)
            .is_some_and(|mac| mac.verify_slice(stored).is_ok())
    }

    /// A device token for the account whose email digest is `digest`: handed out at a
    /// successful login, sent back with the next ones, it shows a client that signed in to
    /// this account before (OWASP's device cookies). Stateless: `bdv_<device id>_<HMAC of
    /// the digest and the id>`.
    pub fn device_token(&self, digest: &str) -> String {
        let device = Uuid::now_v7();
        let (_, mac) = self.hash_current(Self::device_message(digest, device).as_bytes());
        format!("bdv_{}_{}", device.simple(), B64.encode(mac))
    }

    /// The device a token names, if it was issued for the account of `digest` under any
    /// pepper.
    pub fn device_of(&self, token: &str, digest: &str) -> Option<Uuid> {
        let rest = token.strip_prefix("bdv_")?;
        let (id, mac) = rest.split_once('_')?;
        let device = Uuid::try_parse(id).ok()?;
        let mac = B64.decode(mac).ok()?;
        let message = Self::device_message(digest, device);
        self.0
            .iter()
            .filter_map(|(id, _)| self.mac(id, message.as_bytes()))
            .any(|m| m.verify_slice(&mac).is_ok())
            .then_some(device)
    }

    fn device_message(digest: &str, device: Uuid) -> String {
        format!("device:{digest}:{device}")
    }

    /// `HMAC(pepper, lowercased email)`, hex: how an email appears where an id cannot
    /// (audit payloads, throttle keys).
    pub fn email_digest(&self, email: &str) -> String {
        let mac = self
            .mac(&self.0[0].0, email.to_lowercase().as_bytes())
            .expect("the first pepper exists");
        kernel::hex::encode(&mac.finalize().into_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_from_the_future_or_beyond_the_lifetime_are_refused() {
        let jwt = jwt();
        let sign = |claims: &Claims| {
            let mut header = Header::new(Algorithm::HS256);
            header.kid = Some(jwt.keys[0].0.clone());
            jsonwebtoken::encode(
                &header,
                claims,
                &EncodingKey::from_secret(jwt.keys[0].1.expose()),
            )
            .unwrap()
        };
        let now = jsonwebtoken::get_current_timestamp();
        let good = Claims {
            iss: jwt.issuer.clone(),
            aud: jwt.issuer.clone(),
            sub: Uuid::now_v7(),
            sid: Uuid::now_v7(),
            jti: Uuid::now_v7(),
            iat: now,
            exp: now + jwt.ttl_secs,
            nbf: None,
        };
        assert!(jwt.verify(&sign(&good)).is_some());
        let cases = [
            Claims {
                exp: now + 10 * 365 * 86_400,
                ..good.clone()
            },
            Claims {
                nbf: Some(now + 86_400),
                ..good.clone()
            },
            Claims {
                iat: now + 365 * 86_400,
                exp: now + 365 * 86_400 + 60,
                ..good.clone()
            },
        ];
        for claims in cases {
            assert!(jwt.verify(&sign(&claims)).is_none(), "{claims:?}");
        }
        assert!(
            jwt.verify(&sign(&Claims {
                nbf: Some(now),
                ..good
            }))
            .is_some()
        );
    }

    #[test]
    fn a_device_token_names_its_device_for_its_account_only() {
        let peppers = Peppers(vec![("p1".into(), kernel::Secret::new(vec![7; 32]))]);
        let token = peppers.device_token("digest-a");
        let device = peppers
            .device_of(&token, "digest-a")
            .expect("its own account");
        assert_eq!(peppers.device_of(&token, "digest-a"), Some(device));
        assert_eq!(peppers.device_of(&token, "digest-b"), None);
        let mut forged = token.clone();
        forged.replace_range(5..6, if &token[5..6] == "0" { "1" } else { "0" });
        assert_eq!(peppers.device_of(&forged, "digest-a"), None);
        assert_eq!(peppers.device_of("bdv_junk", "digest-a"), None);
    }

    fn jwt() -> Jwt {
        Jwt::new(
            vec![
                ("k2".into(), Secret::new(vec![2; 32])),
                ("k1".into(), Secret::new(vec![1; 32])),
            ],
            "https://b.example".into(),
            900,
        )
    }

    #[test]
    fn access_tokens_verify_with_their_kid_and_nothing_else() {
        let t = jwt().issue(UserId::new(), Uuid::now_v7());
        assert!(jwt().verify(&t).is_some());
        let other_issuer = Jwt::new(
            vec![("k2".into(), Secret::new(vec![2; 32]))],
            "https://evil.example".into(),
            900,
        );
        assert!(
            other_issuer.verify(&t).is_none(),
            "issuer and audience are checked"
        );
        let rotated_out = Jwt::new(
            vec![("k3".into(), Secret::new(vec![3; 32]))],
            "https://b.example".into(),
            900,
        );
        assert!(
            rotated_out.verify(&t).is_none(),
            "an unknown kid is refused"
        );
        let mut tampered = t.clone();
        tampered.pop();
        assert!(jwt().verify(&tampered).is_none());
        // alg=none is refused.
        let parts: Vec<&str> = t.split('.').collect();
        let none_header = B64.encode(br#"{"alg":"none","kid":"k2"}"#);
        assert!(
            jwt()
                .verify(&format!("{none_header}.{}.", parts[1]))
                .is_none()
        );
    }

    #[test]
    fn opaque_tokens_verify_under_any_configured_pepper() {
        let peppers = Peppers(vec![
            ("p2".into(), Secret::new(b"new pepper".to_vec())),
            ("p1".into(), Secret::new(b"old".to_vec())),
        ]);
        let minted = peppers.mint("brt");
        let (id, secret) = Peppers::parse("brt", &minted.token).unwrap();
        assert_eq!(id, minted.id);
        assert!(peppers.matches(&minted.pepper_id, &secret, &minted.hash));
        assert!(!peppers.matches(&minted.pepper_id, &[0; 32], &minted.hash));
        assert!(
            Peppers::parse("bvt", &minted.token).is_none(),
            "another kind of token"
        );
        assert!(Peppers::parse("brt", "brt_nope_nope").is_none());
    }
}
