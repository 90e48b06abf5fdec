//! Signed tokens: who a user is and which rooms they may join.
//!
//! A token is `base64url(claims JSON) "." base64url(HMAC-SHA256(secret, first part))`.
//! The integrator's backend signs tokens with the secret given to `--auth-secret`; the
//! server only verifies. Without a secret (dev mode) the server signs its own, with a
//! secret kept in the store, and hands them out at `/api/token`.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// What a token says.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// Stable user id.
    pub sub: String,
    /// Display name.
    pub name: String,
    /// Room patterns the user may join: `general`, `team-*`, `*-support`, or `*` for all.
    #[serde(default)]
    pub rooms: Vec<String>,
    /// Expiry, in seconds since the Unix epoch.
    pub exp: u64,
}

/// Why a token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not two base64url parts around a dot, or the claims are not the expected JSON.
    #[error("the token is malformed")]
    Malformed,
    /// The signature does not match: forged, or signed with another secret.
    #[error("the token's signature is invalid")]
    Forged,
    /// Past its expiry.
    #[error("the token has expired")]
    Expired,
}

fn mac(secret: &[u8]) -> Hmac<Sha256> {
    <Hmac<Sha256> as KeyInit>::new_from_slice(secret).expect("HMAC accepts keys of any length")
}

/// An unguessable identifier: a MAC over `seed` (something unique, such as a counter
/// and the time) keyed with `secret`, so knowing earlier ones tells nothing of the next.
pub fn unguessable(secret: &[u8], seed: &[u8]) -> String {
    let mut mac = mac(secret);
    mac.update(seed);
    URL_SAFE_NO_PAD.encode(&mac.finalize().into_bytes()[..18])
}

/// Signs `claims` with `secret`.
pub fn sign(secret: &[u8], claims: &Claims) -> String {
    let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).expect("claims serialise"));
    let mut mac = mac(secret);
    mac.update(payload.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{payload}.{signature}")
}

/// Checks the signature and expiry of `token` at `now` (seconds since the epoch).
pub fn verify(secret: &[u8], token: &str, now: u64) -> Result<Claims, TokenError> {
    let (payload, signature) = token.split_once('.').ok_or(TokenError::Malformed)?;
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|_| TokenError::Malformed)?;
    let mut mac = mac(secret);
    mac.update(payload.as_bytes());
    mac.verify_slice(&signature).map_err(|_| TokenError::Forged)?;
    let json = URL_SAFE_NO_PAD.decode(payload).map_err(|_| TokenError::Malformed)?;
    let claims: Claims = serde_json::from_slice(&json).map_err(|_| TokenError::Malformed)?;
    if claims.exp <= now {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// Whether any of `patterns` admits `room`. A `*` at the start or end matches any run of
/// characters there; `*` alone matches every room.
pub fn room_allowed(patterns: &[String], room: &str) -> bool {
    patterns.iter().any(|pattern| match (pattern.strip_prefix('*'), pattern.strip_suffix('*')) {
        _ if pattern == "*" => true,
        (_, Some(prefix)) if !prefix.starts_with('*') => room.starts_with(prefix),
        (Some(suffix), _) => room.ends_with(suffix),
        _ => pattern == room,
    })
}

/// Seconds since the Unix epoch.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claims(exp: u64) -> Claims {
        Claims { sub: "u_ada".into(), name: "Ada".into(), rooms: vec!["team-*".into()], exp }
    }

    #[test]
    fn signed_tokens_verify_and_round_trip() {
        let token = sign(b"secret", &claims(2_000));
        assert_eq!(verify(b"secret", &token, 1_000), Ok(claims(2_000)));
    }

    #[test]
    fn forged_expired_and_malformed_tokens_are_told_apart() {
        let token = sign(b"secret", &claims(2_000));
        assert_eq!(verify(b"other", &token, 1_000), Err(TokenError::Forged));
        assert_eq!(verify(b"secret", &token, 2_000), Err(TokenError::Expired));
        assert_eq!(verify(b"secret", "no-dot", 0), Err(TokenError::Malformed));
        assert_eq!(verify(b"secret", "a.!!!", 0), Err(TokenError::Malformed));
        // A valid signature over claims that were tampered with is still forged.
        let (_, signature) = token.split_once('.').unwrap();
        let evil =
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(&Claims { exp: u64::MAX, ..claims(0) }).unwrap());
        assert_eq!(verify(b"secret", &format!("{evil}.{signature}"), 1_000), Err(TokenError::Forged));
    }

    #[test]
    fn room_patterns() {
        let patterns = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(room_allowed(&patterns(&["*"]), "anything"));
        assert!(room_allowed(&patterns(&["team-*"]), "team-7"));
        assert!(!room_allowed(&patterns(&["team-*"]), "general"));
        assert!(room_allowed(&patterns(&["*-support"]), "eu-support"));
        assert!(room_allowed(&patterns(&["general", "random"]), "random"));
        assert!(!room_allowed(&patterns(&[]), "general"));
    }
}
