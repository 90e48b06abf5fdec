//! `token`: the server's signed tokens (`server/src/auth.rs`: `verify`, `sign`,
//! `room_allowed`), compiled into this crate from the server's own file, since the
//! server does not export `verify`.
//!
//! Why it matters: `verify` reads attacker-controlled text in every `hello`, every
//! `refresh` and every resume token, and its answer decides who a connection is. It
//! must never panic, and a token that verifies must have been signed: any change to a
//! valid token (a byte, a character of its base64, its padding, a dot) must be refused
//! as forged or malformed, never accepted as the same or another user. Signing and
//! verifying must round-trip every claim a backend can write, and expiry must be told
//! apart from forgery, because clients react differently (4403 fetches a new token,
//! 4401 gives up).

use arbitrary::Unstructured;

use crate::engine::{Outcome, Target};
use crate::generate;

#[allow(dead_code, clippy::all)]
#[path = "../../../server/src/auth.rs"]
pub(crate) mod auth;

use auth::{Claims, TokenError};

/// The target, with a time that stands for "now" in every check.
pub struct Tokens {
    now: u64,
}

impl Default for Tokens {
    fn default() -> Self {
        Tokens { now: 1_764_650_000 }
    }
}

impl Target for Tokens {
    fn name(&self) -> &'static str {
        "token"
    }

    fn seeds(&mut self) -> Vec<Vec<u8>> {
        vec![vec![0; 32], vec![1; 32], [&[2u8][..], b"eyJzdWIiOiJ1In0.AAAA"].concat()]
    }

    fn run(&mut self, input: &[u8]) -> Result<Outcome, String> {
        let (mode, rest) = super::mode(input, 3);
        let mut u = Unstructured::new(rest);
        let mut outcome = Outcome::default();
        let secret = secret(&mut u).unwrap_or_default();
        match mode {
            0 | 1 => {
                let claims = claims(&mut u, self.now).unwrap_or_else(|_| Claims {
                    sub: String::new(),
                    name: String::new(),
                    rooms: Vec::new(),
                    exp: 0,
                });
                let token = auth::sign(&secret, &claims);
                let expected =
                    if claims.exp > self.now { Ok(claims.clone()) } else { Err(TokenError::Expired) };
                let verified = auth::verify(&secret, &token, self.now);
                if verified != expected {
                    return Err(format!(
                        "a signed token verifies as {verified:?}, not {expected:?}\n  token: {token}"
                    ));
                }
                outcome.label(if claims.exp > self.now { "signed: verifies" } else { "signed: expired" });
                if mode == 1 {
                    self.mutated(&mut u, &secret, &token, &mut outcome)?;
                } else if let Ok(other) = self::secret(&mut u)
                    && !same_key(&other, &secret)
                {
                    match auth::verify(&other, &token, self.now) {
                        Err(TokenError::Forged) => outcome.label("other secret: forged"),
                        other => return Err(format!("a token verified with another secret gave {other:?}")),
                    }
                }
                rooms(&mut u, &claims.rooms, &mut outcome);
            }
            _ => {
                let token = String::from_utf8_lossy(u.take_rest()).into_owned();
                match auth::verify(&secret, &token, self.now) {
                    Ok(claims) => {
                        return Err(format!(
                            "a token nobody signed verified: {claims:?}\n  token: {token:?}"
                        ));
                    }
                    Err(TokenError::Expired) => {
                        return Err(format!("a token nobody signed verified, expired\n  token: {token:?}"));
                    }
                    Err(error) => outcome.label(format!("raw: {error:?}")),
                }
            }
        }
        Ok(outcome)
    }
}

impl Tokens {
    /// Edits a valid token: anything but the same text must be refused.
    fn mutated(
        &self,
        u: &mut Unstructured,
        secret: &[u8],
        token: &str,
        outcome: &mut Outcome,
    ) -> Result<(), String> {
        let mut bytes = token.as_bytes().to_vec();
        for _ in 0..u.int_in_range(1..=3).unwrap_or(1) {
            let at = u.int_in_range(0..=bytes.len()).unwrap_or(0);
            let byte = *u.choose(b"AQgw_-.=+/ \n\0Z9").unwrap_or(&b'A');
            match u.int_in_range(0..=3).unwrap_or(0) {
                0 if at < bytes.len() => bytes[at] = byte,
                1 => bytes.insert(at, byte),
                2 if at < bytes.len() => drop(bytes.remove(at)),
                _ => bytes.truncate(at),
            }
        }
        let changed = String::from_utf8_lossy(&bytes).into_owned();
        let verified = auth::verify(secret, &changed, self.now);
        if changed == token {
            outcome.label("mutated back to itself");
            return Ok(());
        }
        match verified {
            Err(TokenError::Forged) => outcome.label("mutated: forged"),
            Err(TokenError::Malformed) => outcome.label("mutated: malformed"),
            other => {
                return Err(format!(
                    "a changed token was accepted ({other:?})\n  signed:  {token}\n  changed: {changed}"
                ));
            }
        }
        Ok(())
    }
}

/// Whether two secrets are the same HMAC key: keys up to the block size (64 bytes) are
/// padded with zeros, so `""` and `"\0"` sign alike; longer ones are hashed first.
fn same_key(a: &[u8], b: &[u8]) -> bool {
    if a.len() <= 64 && b.len() <= 64 {
        let pad = |key: &[u8]| {
            let mut block = [0u8; 64];
            block[..key.len()].copy_from_slice(key);
            block
        };
        pad(a) == pad(b)
    } else {
        a == b
    }
}

fn secret(u: &mut Unstructured) -> arbitrary::Result<Vec<u8>> {
    Ok(match u.int_in_range(0..=3)? {
        0 => b"secret".to_vec(),
        1 => Vec::new(),
        2 => vec![0x5a; u.int_in_range(60..=200)?],
        _ => u.arbitrary()?,
    })
}

fn claims(u: &mut Unstructured, now: u64) -> arbitrary::Result<Claims> {
    Ok(Claims {
        sub: generate::string(u)?,
        name: generate::string(u)?,
        rooms: (0..u.int_in_range(0..=3)?).map(|_| pattern(u)).collect::<arbitrary::Result<_>>()?,
        exp: match u.int_in_range(0..=4)? {
            0 => now + 3_600,
            1 => now,
            2 => u64::MAX,
            3 => 0,
            _ => generate::number(u)?,
        },
    })
}

fn pattern(u: &mut Unstructured) -> arbitrary::Result<String> {
    Ok(match u.int_in_range(0..=4)? {
        0 => "*".into(),
        1 => format!("{}*", generate::string(u)?),
        2 => format!("*{}", generate::string(u)?),
        3 => (*u.choose(&["**", "*-*", "", "team-*", "*-support", "general"])?).into(),
        _ => generate::string(u)?,
    })
}

/// `room_allowed` never panics; `*` admits every room, and a pattern without a star
/// only itself.
fn rooms(u: &mut Unstructured, patterns: &[String], outcome: &mut Outcome) {
    let Ok(room) = generate::room(u) else { return };
    let allowed = auth::room_allowed(patterns, &room);
    outcome.detail(if allowed { "room allowed" } else { "room refused" });
    assert!(auth::room_allowed(&["*".into()], &room), "`*` refused {room:?}");
    assert!(
        auth::room_allowed(std::slice::from_ref(&room), &room) || room.contains('*'),
        "{room:?} refused itself"
    );
    for pattern in patterns.iter().filter(|p| !p.contains('*')) {
        assert_eq!(
            auth::room_allowed(std::slice::from_ref(pattern), &room),
            *pattern == room,
            "{pattern:?} vs {room:?}"
        );
    }
}
