//! Standard Webhooks signatures: `webhook-id`, `webhook-timestamp` and `webhook-signature:
//! v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, with secrets written `whsec_<base64>`.
//!
//! The header may carry several space-separated signatures (secret rotation); one valid
//! signature from any of the given secrets is enough. Comparison is constant-time.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const SECRET_PREFIX: &str = "whsec_";

/// A webhook signing secret. Its `Debug` prints nothing of the key.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookSecret(***)")
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("webhook secret must start with \"whsec_\"")]
    MissingPrefix,
    #[error("webhook secret is not valid base64 after \"whsec_\"")]
    NotBase64,
    #[error("webhook secret must hold between 16 and 64 bytes of key")]
    BadLength,
}

impl WebhookSecret {
    /// Parses `whsec_<base64>`.
    pub fn parse(text: &str) -> Result<Self, SecretError> {
        let encoded = text
            .strip_prefix(SECRET_PREFIX)
            .ok_or(SecretError::MissingPrefix)?;
        let key = STANDARD
            .decode(encoded)
            .map_err(|_| SecretError::NotBase64)?;
        if !(16..=64).contains(&key.len()) {
            return Err(SecretError::BadLength);
        }
        Ok(Self(key))
    }

    /// Wraps raw key bytes (e.g. freshly generated); 16 to 64 bytes.
    pub fn from_bytes(key: Vec<u8>) -> Result<Self, SecretError> {
        if !(16..=64).contains(&key.len()) {
            return Err(SecretError::BadLength);
        }
        Ok(Self(key))
    }

    /// The `whsec_<base64>` form, for showing the secret once to the operator who created it.
    pub fn expose(&self) -> String {
        format!("{SECRET_PREFIX}{}", STANDARD.encode(&self.0))
    }

    fn mac(&self, id: &str, timestamp: i64, body: &[u8]) -> HmacSha256 {
        // HMAC accepts keys of any length, so this never fails.
        let mut mac = match HmacSha256::new_from_slice(&self.0) {
            Ok(mac) => mac,
            Err(_) => unreachable_hmac(),
        };
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        mac
    }

    /// The `v1,<base64>` signature of a message.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let tag = self.mac(id, timestamp, body).finalize().into_bytes();
        format!("v1,{}", STANDARD.encode(tag))
    }
}

#[cold]
fn unreachable_hmac() -> ! {
    // `Hmac::new_from_slice` only fails for fixed-size-key MACs, never for HMAC.
    panic!("HMAC-SHA256 accepts keys of every length")
}

/// Why a signed request was refused. All variants map to 401 at the HTTP edge.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("webhook-timestamp is not a number")]
    BadTimestamp,
    #[error("webhook-timestamp is outside the tolerance")]
    StaleTimestamp,
    #[error("no valid signature")]
    NoMatch,
}

/// The three Standard Webhooks headers of a request, as received.
#[derive(Debug, Clone, Copy)]
pub struct SignedHeaders<'a> {
    pub id: Option<&'a str>,
    pub timestamp: Option<&'a str>,
    pub signature: Option<&'a str>,
}

/// Verifies a request against any of `secrets`. `now` and `tolerance_secs` bound the
/// timestamp in both directions. Returns the webhook id.
pub fn verify<'a>(
    secrets: &[WebhookSecret],
    headers: SignedHeaders<'a>,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<&'a str, VerifyError> {
    verify_which(secrets, headers, body, now, tolerance_secs).map(|(id, _)| id)
}

/// [`verify`], also telling which of `secrets` (its index) signed the request.
pub fn verify_which<'a>(
    secrets: &[WebhookSecret],
    headers: SignedHeaders<'a>,
    body: &[u8],
    now: i64,
    tolerance_secs: i64,
) -> Result<(&'a str, usize), VerifyError> {
    let id = headers
        .id
        .filter(|id| !id.is_empty())
        .ok_or(VerifyError::MissingHeader("webhook-id"))?;
    let timestamp = headers
        .timestamp
        .ok_or(VerifyError::MissingHeader("webhook-timestamp"))?;
    let signature = headers
        .signature
        .ok_or(VerifyError::MissingHeader("webhook-signature"))?;
    let timestamp: i64 = timestamp
        .trim()
        .parse()
        .map_err(|_| VerifyError::BadTimestamp)?;
    // In i128: the difference of two i64 overflows an i64 for timestamps far in the past or
    // future (`webhook-timestamp: -9223372036854775808`).
    if (i128::from(now) - i128::from(timestamp)).abs() > i128::from(tolerance_secs) {
        return Err(VerifyError::StaleTimestamp);
    }
    let candidates: Vec<Vec<u8>> = signature
        .split_whitespace()
        .filter_map(|entry| entry.strip_prefix("v1,"))
        .filter_map(|encoded| STANDARD.decode(encoded).ok())
        .collect();
    for (index, secret) in secrets.iter().enumerate() {
        for candidate in &candidates {
            // `verify_slice` compares in constant time.
            if secret
                .mac(id, timestamp, body)
                .verify_slice(candidate)
                .is_ok()
            {
                return Ok((id, index));
            }
        }
    }
    Err(VerifyError::NoMatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    // The example from the Standard Webhooks specification.
    const SPEC_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    const SPEC_ID: &str = "msg_p5jXN8AQM9LWM0D4loKWxJek";
    const SPEC_TS: i64 = 1614265330;
    const SPEC_BODY: &[u8] = br#"{"test": 2432232314}"#;
    const SPEC_SIG: &str = "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=";

    fn headers<'a>(id: &'a str, ts: &'a str, sig: &'a str) -> SignedHeaders<'a> {
        SignedHeaders {
            id: Some(id),
            timestamp: Some(ts),
            signature: Some(sig),
        }
    }

    fn spec_secret() -> WebhookSecret {
        WebhookSecret::parse(SPEC_SECRET).expect("spec secret parses")
    }

    #[test]
    fn signing_matches_the_specification_example() {
        assert_eq!(spec_secret().sign(SPEC_ID, SPEC_TS, SPEC_BODY), SPEC_SIG);
    }

    #[test]
    fn a_valid_signature_among_several_is_accepted() {
        let ts = SPEC_TS.to_string();
        let header = format!("v1,AAAA v1a,xyz {SPEC_SIG}");
        let result = verify(
            &[spec_secret()],
            headers(SPEC_ID, &ts, &header),
            SPEC_BODY,
            SPEC_TS + 10,
            300,
        );
        assert_eq!(result, Ok(SPEC_ID));
    }

    #[test]
    fn the_second_of_two_rotating_secrets_is_accepted() {
        let other = WebhookSecret::from_bytes(vec![7; 32]).expect("valid key");
        let ts = SPEC_TS.to_string();
        let result = verify(
            &[other, spec_secret()],
            headers(SPEC_ID, &ts, SPEC_SIG),
            SPEC_BODY,
            SPEC_TS,
            300,
        );
        assert_eq!(result, Ok(SPEC_ID));
        let which = verify_which(
            &[
                WebhookSecret::from_bytes(vec![7; 32]).expect("valid key"),
                spec_secret(),
            ],
            headers(SPEC_ID, &ts, SPEC_SIG),
            SPEC_BODY,
            SPEC_TS,
            300,
        );
        assert_eq!(which, Ok((SPEC_ID, 1)), "the second secret signed it");
    }

    #[test]
    fn a_changed_body_or_id_fails() {
        let ts = SPEC_TS.to_string();
        let secrets = [spec_secret()];
        let body = verify(
            &secrets,
            headers(SPEC_ID, &ts, SPEC_SIG),
            b"{}",
            SPEC_TS,
            300,
        );
        assert_eq!(body, Err(VerifyError::NoMatch));
        let id = verify(
            &secrets,
            headers("msg_x", &ts, SPEC_SIG),
            SPEC_BODY,
            SPEC_TS,
            300,
        );
        assert_eq!(id, Err(VerifyError::NoMatch));
    }

    #[test]
    fn timestamps_outside_the_tolerance_fail_both_ways() {
        let ts = SPEC_TS.to_string();
        let secrets = [spec_secret()];
        let h = headers(SPEC_ID, &ts, SPEC_SIG);
        assert_eq!(
            verify(&secrets, h, SPEC_BODY, SPEC_TS + 301, 300),
            Err(VerifyError::StaleTimestamp)
        );
        assert_eq!(
            verify(&secrets, h, SPEC_BODY, SPEC_TS - 301, 300),
            Err(VerifyError::StaleTimestamp)
        );
    }

    #[test]
    fn timestamps_at_the_ends_of_the_range_are_stale_not_an_overflow() {
        let secrets = [spec_secret()];
        for (ts, other_end) in [(i64::MIN, i64::MAX), (i64::MAX, i64::MIN)] {
            let ts = ts.to_string();
            for now in [other_end, 0, SPEC_TS] {
                let h = headers(SPEC_ID, &ts, SPEC_SIG);
                assert_eq!(
                    verify(&secrets, h, SPEC_BODY, now, 300),
                    Err(VerifyError::StaleTimestamp),
                    "{ts} at {now}"
                );
            }
        }
    }

    #[test]
    fn missing_headers_are_named() {
        let none = SignedHeaders {
            id: None,
            timestamp: None,
            signature: None,
        };
        assert_eq!(
            verify(&[spec_secret()], none, SPEC_BODY, SPEC_TS, 300),
            Err(VerifyError::MissingHeader("webhook-id"))
        );
    }

    #[test]
    fn secrets_must_have_the_whsec_form() {
        assert_eq!(
            WebhookSecret::parse("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"),
            Err(SecretError::MissingPrefix)
        );
        assert_eq!(
            WebhookSecret::parse("whsec_!!!"),
            Err(SecretError::NotBase64)
        );
        assert_eq!(
            WebhookSecret::parse("whsec_AAAA"),
            Err(SecretError::BadLength)
        );
        assert_eq!(spec_secret().expose(), SPEC_SECRET);
        assert_eq!(format!("{:?}", spec_secret()), "WebhookSecret(***)");
    }
}
