//! `hello` → `welcome`: establishing who a connection is.

use std::sync::Arc;

use tether_shared::{Limits, PROTOCOL_VERSION, ServerFrame, User, close};

use crate::auth::{self, Claims, TokenError};
use crate::close::Close;
use crate::config::Config;
use crate::identity;
use crate::limits;

/// How long a resume token stays valid.
const RESUME_TTL_SECS: u64 = 24 * 3600;

/// A connection's established identity.
pub struct Identity {
    /// Who; shared by every room the connection is in.
    pub user: Arc<User>,
    /// Room patterns they may join.
    pub rooms: Vec<String>,
    /// When the identity's credential expires (seconds since the epoch); resume tokens
    /// never outlive it.
    pub expires: u64,
}

/// Checks a `hello`. With an auth secret, a valid token is required. In dev mode a token
/// is optional, a valid resume token keeps the previous identity, and otherwise the
/// display name is taken at its word.
pub fn authenticate(
    config: &Config,
    signing_secret: &[u8],
    v: u32,
    token: Option<&str>,
    name: Option<&str>,
    resume_token: Option<&str>,
) -> Result<Identity, Close> {
    if v != PROTOCOL_VERSION {
        return Err(Close::new(close::BAD_HELLO, "unsupported protocol version"));
    }
    let now = auth::unix_now();
    let from_claims = |claims: Claims| Identity {
        user: Arc::new({
            let color = identity::color_for(&claims.sub);
            User::new(claims.sub, claims.name, color)
        }),
        rooms: claims.rooms,
        expires: claims.exp,
    };
    if let Some(token) = token {
        return match auth::verify(signing_secret, token, now) {
            Ok(claims) => Ok(from_claims(claims)),
            Err(TokenError::Expired) => Err(Close::new(close::TOKEN_EXPIRED, "token expired")),
            Err(TokenError::Forged | TokenError::Malformed) => {
                Err(Close::new(close::UNAUTHORIZED, "invalid token"))
            }
        };
    }
    if config.auth_secret.is_some() {
        return Err(Close::new(close::UNAUTHORIZED, "a token is required"));
    }
    if let Some(Ok(claims)) = resume_token.map(|t| auth::verify(signing_secret, t, now)) {
        let mut identity = from_claims(claims);
        if let Some(name) = name.map(str::trim).filter(|n| !n.is_empty()) {
            Arc::make_mut(&mut identity.user).name = name.chars().take(32).collect();
        }
        return Ok(identity);
    }
    Ok(Identity {
        user: Arc::new(identity::dev_user(name)),
        rooms: vec!["*".into()],
        expires: now + RESUME_TTL_SECS,
    })
}

/// The identity of a user the app's connect handler admitted; `None` for an id that
/// breaks the rules a token's subject keeps (1-64 characters).
pub fn admitted(admitted: crate::channels::Admitted) -> Option<Identity> {
    if admitted.id.is_empty() || admitted.id.chars().count() > 64 {
        return None;
    }
    let color = identity::color_for(&admitted.id);
    let name: String = admitted.name.chars().take(32).collect();
    Some(Identity {
        user: Arc::new(User::new(admitted.id, name, color)),
        rooms: admitted.rooms,
        expires: auth::unix_now() + RESUME_TTL_SECS,
    })
}

/// The `welcome` for an established identity.
pub fn welcome(config: &Config, signing_secret: &[u8], identity: &Identity) -> ServerFrame {
    let resume = Claims {
        sub: identity.user.id.clone(),
        name: identity.user.name.clone(),
        rooms: identity.rooms.clone(),
        exp: identity.expires.min(auth::unix_now() + RESUME_TTL_SECS),
    };
    ServerFrame::Welcome {
        v: PROTOCOL_VERSION,
        session: identity::random_id("c"),
        resume_token: auth::sign(signing_secret, &resume),
        // Half the idle timeout, so one lost ping never gets a live client dropped.
        heartbeat_ms: (config.idle_timeout.as_millis() / 2) as u64,
        limits: Limits {
            max_body_bytes: config.max_body_bytes,
            publish_per_sec: config.publish_rate,
            publish_burst: config.publish_burst,
            max_rooms: config.max_rooms,
            max_message_bytes: config.max_message_bytes,
            frames_per_sec: limits::frame_rate(config).0,
            max_strikes: limits::MAX_STRIKES,
            max_members: config.max_members,
            send_queue: config.send_queue,
            connections_per_address: config.max_connections_per_ip,
            dedupe_window_ms: config.dedupe_window.as_millis() as u64,
            state_per_sec: config.state_rate,
            max_state_bytes: limits::MAX_STATE_BYTES,
        },
        user: User::clone(&identity.user),
    }
}
