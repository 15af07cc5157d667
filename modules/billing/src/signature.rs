//! Stripe's webhook signature (INTEGRATIONS.md §3): `Stripe-Signature: t=<unix>,v1=<hex>…`
//! where each `v1` is HMAC-SHA256 over `"<t>.<raw body>"` keyed by an endpoint secret
//! (`whsec_…` as bytes). While a secret rolls Stripe sends one `v1` per secret, and every
//! configured secret is tried. The timestamp must be within 5 minutes either way. Checked on
//! the raw bytes before anything is parsed; `v0` (legacy) and unknown schemes are ignored.

use ring::hmac;

/// How far the signature's timestamp may be from now, either way.
pub const TOLERANCE_SECS: i64 = 300;

/// Why a signature was refused (logged, never sent).
pub fn verify(header: &str, body: &[u8], secrets: &[String], now: i64) -> Result<(), &'static str> {
    let mut timestamp = None;
    let mut candidates = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = Some(t.parse::<i64>().map_err(|_| "bad timestamp")?),
            Some(("v1", v)) => candidates.push(v),
            _ => {}
        }
    }
    let t = timestamp.ok_or("no timestamp")?;
    if candidates.is_empty() {
        return Err("no v1 signature");
    }
    let signed = [t.to_string().as_bytes(), b".", body].concat();
    let matches = secrets.iter().any(|secret| {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        candidates.iter().any(|c| {
            kernel::hex::decode(c).is_some_and(|tag| hmac::verify(&key, &signed, &tag).is_ok())
        })
    });
    if !matches {
        return Err("no signature matches a configured secret");
    }
    // Checked after the signature, so a forged header learns nothing about our clock.
    if (now - t).abs() > TOLERANCE_SECS {
        return Err("timestamp outside the tolerance");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(secret: &str, t: i64, body: &[u8]) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        let tag = hmac::sign(&key, &[t.to_string().as_bytes(), b".", body].concat());
        kernel::hex::encode(tag.as_ref())
    }

    #[test]
    fn any_v1_under_any_secret_within_five_minutes() {
        let body = br#"{"id":"evt_1"}"#;
        let now = 1_800_000_000;
        let secrets = vec!["whsec_old".to_string(), "whsec_new".to_string()];
        let good = sign("whsec_new", now, body);
        let other = sign("whsec_elsewhere", now, body);
        for header in [
            format!("t={now},v1={good}"),
            format!("t={now},v1={other},v1={good}"),
            format!("t={now},v0=abc,v1={good}"),
        ] {
            assert_eq!(
                verify(&header, body, &secrets, now + 299),
                Ok(()),
                "{header}"
            );
        }
        assert!(verify(&format!("t={now},v1={other}"), body, &secrets, now).is_err());
        assert!(
            verify(
                &format!("t={now},v1={good}"),
                b"{\"id\":\"evt_2\"}",
                &secrets,
                now
            )
            .is_err()
        );
        assert!(verify(&format!("t={now},v1={good}"), body, &secrets, now + 301).is_err());
        assert!(verify(&format!("t={now},v1={good}"), body, &secrets, now - 301).is_err());
        assert!(verify(&format!("v1={good}"), body, &secrets, now).is_err());
        assert!(verify(&format!("t={now}"), body, &secrets, now).is_err());
        assert!(verify(&format!("t=x,v1={good}"), body, &secrets, now).is_err());
        assert!(verify("", body, &secrets, now).is_err());
    }
}
