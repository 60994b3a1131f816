//! Passwords: argon2id with the `argon2` crate's defaults, which are OWASP's recommendation
//! (19 MiB of memory, 2 passes, 1 lane), kept as PHC strings (`$argon2id$v=19$…`) that carry
//! their own salt and parameters.
//!
//! Hashing is CPU- and memory-heavy, so it runs on the blocking pool, at most
//! [`MAX_HASHING`] at once (a burst of sign-ins cannot take all memory). Checking an account
//! that does not exist still hashes, against a dummy hash, so the time taken does not tell
//! whether a username exists.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use tokio::sync::Semaphore;

/// The shortest password accepted for an account, in characters.
pub const MIN_CHARS: usize = 12;
/// The longest password accepted, in bytes (a longer one is refused before hashing).
pub const MAX_BYTES: usize = 1024;
/// Hashes computed at once.
pub const MAX_HASHING: usize = 4;

static HASHING: Semaphore = Semaphore::const_new(MAX_HASHING);

/// What went wrong hashing a password.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The password does not meet the length rules; the message says which.
    #[error("{0}")]
    Rejected(String),
    #[error("cannot hash the password: {0}")]
    Hashing(String),
}

/// Whether `password` may be set as an account's password: [`MIN_CHARS`] characters at
/// least, [`MAX_BYTES`] bytes at most.
pub fn check_new(password: &str) -> Result<(), PasswordError> {
    let chars = password.chars().count();
    if chars < MIN_CHARS {
        return Err(PasswordError::Rejected(format!(
            "the password is {chars} characters long: use at least {MIN_CHARS}"
        )));
    }
    if password.len() > MAX_BYTES {
        return Err(PasswordError::Rejected(format!(
            "the password is {} bytes long: use at most {MAX_BYTES}",
            password.len()
        )));
    }
    Ok(())
}

/// The PHC string of a new password (checked with [`check_new`] first).
pub async fn hash(password: String) -> Result<String, PasswordError> {
    check_new(&password)?;
    let permit = HASHING
        .acquire()
        .await
        .map_err(|e| PasswordError::Hashing(e.to_string()))?;
    // The permit goes with the hashing: a request given up on (its time limit) does not free
    // it while its hash still runs.
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        hash_now(&password)
    })
    .await
    .map_err(|e| PasswordError::Hashing(format!("the hashing task failed: {e}")))?
}

fn hash_now(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::encode_b64(&rand::random::<[u8; 16]>())
        .map_err(|e| PasswordError::Hashing(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hashing(e.to_string()))
}

/// A hash of a random password, checked against when the account does not exist.
static DUMMY: LazyLock<Option<String>> = LazyLock::new(|| {
    let random = base64_of(&rand::random::<[u8; 24]>());
    hash_now(&random).ok()
});

fn base64_of(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
}

/// Whether `password` matches `stored` (a PHC string); with `None` (no such account) it
/// checks against a dummy hash and answers false, taking as long. The comparison is the
/// `argon2` crate's, in constant time. A stored hash that does not parse never matches (and
/// is logged, without the hash).
pub async fn verify(password: String, stored: Option<String>) -> bool {
    if password.len() > MAX_BYTES {
        return false;
    }
    let Ok(permit) = HASHING.acquire().await else {
        return false;
    };
    // Held by the check itself, as in [`hash`].
    let checked = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        let exists = stored.is_some();
        let Some(phc) = stored.or_else(|| DUMMY.clone()) else {
            return false;
        };
        let parsed = match PasswordHash::new(&phc) {
            Ok(parsed) => parsed,
            Err(e) => {
                tracing::error!(error = %e, "a stored password hash does not parse");
                return false;
            }
        };
        let matches = Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok();
        matches && exists
    })
    .await;
    checked.unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hashed_password_verifies_and_another_does_not() {
        let phc = hash("correct horse battery".into()).await.expect("hashes");
        assert!(phc.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{phc}");
        assert!(!phc.contains("correct horse"));
        assert!(verify("correct horse battery".into(), Some(phc.clone())).await);
        assert!(!verify("correct horse battery!".into(), Some(phc.clone())).await);
        // Two hashes of one password differ (their salts do).
        assert_ne!(
            phc,
            hash("correct horse battery".into()).await.expect("hashes")
        );
    }

    #[tokio::test]
    async fn an_unknown_account_or_a_broken_hash_never_verifies() {
        assert!(!verify("whatever it is".into(), None).await);
        assert!(!verify("whatever it is".into(), Some("not a hash".into())).await);
        assert!(!verify("x".repeat(MAX_BYTES + 1), None).await);
    }

    #[test]
    fn passwords_too_short_or_too_long_are_refused_with_the_rule() {
        let short = check_new("short").expect_err("too short");
        assert!(short.to_string().contains("at least 12"), "{short}");
        let long = check_new(&"x".repeat(MAX_BYTES + 1)).expect_err("too long");
        assert!(long.to_string().contains("at most 1024"), "{long}");
        assert!(check_new("twelve chars").is_ok());
        // Characters, not bytes: twelve Swedish letters are enough.
        assert!(check_new("åäöåäöåäöåäö").is_ok());
    }
}
