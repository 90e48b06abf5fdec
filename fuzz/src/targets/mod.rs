//! The fuzz targets: one module per thing Tether must survive, each with the
//! invariant that makes it worth fuzzing.

pub mod connection;
pub mod frames;
pub mod msgpack;
pub mod outbox;
pub mod server;
pub mod token;

use crate::engine::Target;

/// Every target, in the order a full run visits them.
pub const NAMES: &[&str] =
    &["frames", "msgpack", "outbox", "token", "connection", "server-ws", "server-fallback", "server-api"];

/// The target called `name`, ready to run (the server targets start a server).
pub fn make(name: &str) -> Option<Box<dyn Target>> {
    Some(match name {
        "frames" => Box::new(frames::Frames),
        "msgpack" => Box::new(msgpack::MessagePack),
        "outbox" => Box::new(outbox::Snapshots),
        "token" => Box::new(token::Tokens::default()),
        "connection" => Box::new(connection::Core),
        "server-ws" => Box::new(server::socket::Sockets::start()),
        "server-fallback" => Box::new(server::fallback::Fallback::start()),
        "server-api" => Box::new(server::api::ServerApi::start()),
        _ => return None,
    })
}

/// Reads the first byte as a mode out of `modes`, and hands back the rest.
pub(crate) fn mode(input: &[u8], modes: u8) -> (u8, &[u8]) {
    match input.split_first() {
        Some((first, rest)) => (first % modes, rest),
        None => (0, &[]),
    }
}
