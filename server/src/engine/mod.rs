//! Where messages are numbered, stored and shared between nodes: the engine. One node
//! runs the local engine (`local/`: a sequencer thread over SQLite or memory); a cluster
//! runs the Redis engine (`redis/`: numbering in Redis functions, history in streams,
//! fan-out between nodes over pub/sub). `docs/design/engine-seam.md` is where this
//! module is heading: one trait both engines implement, and a hub that knows only it.

pub(crate) mod local;
pub(crate) mod redis;
