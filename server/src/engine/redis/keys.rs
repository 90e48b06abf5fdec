//! Where Tether keeps its state in Redis, in one place.
//!
//! Every key of a room carries the room's name as a hash tag (`{room}`), so a Redis
//! Cluster deployment would keep all of one room's keys in one slot, which is what lets
//! the publish script touch them atomically. Room names cannot contain braces (see
//! `valid_room_name`), so the tag is always the whole name.
//!
//! | key | type | holds |
//! |---|---|---|
//! | `tether:{room}:seq` | string | the room's latest seq (`INCR`) |
//! | `tether:{room}:log` | stream | history, entry id `<seq>-0`, fields `i` id, `u` sender, `b` body, `t` ms |
//! | `tether:{room}:seen:<n>:<user><id>` | string | `seq:ts` of a stored publish, for the dedupe window (`n` is the user id's length) |
//! | `tether:{room}:present` | hash | `<node>/<user id>` → the user, for every user present through a node |
//! | `tether:{room}` | pub/sub channel | messages, presence diffs and ephemeral frames of the room |
//! | `tether:node:<node>` | string with TTL | a node's heartbeat |
//! | `tether:node:<node>:rooms` | set | rooms the node has announced presence in, for cleaning up after it |
//! | `tether:node:<node>:stats` | string with TTL | the node's latest dashboard sample (JSON), for the API's `stats` |
//! | `tether:control` | pub/sub channel | commands for every node: `d\n<close code>\n<user id>` disconnects a user |
//! | `tether:epoch`, `tether:secret` | string | the history's identity and the token secret, set once |

/// The room's seq counter.
pub fn seq(room: &str) -> String {
    format!("tether:{{{room}}}:seq")
}

/// The room's history stream.
pub fn log(room: &str) -> String {
    format!("tether:{{{room}}}:log")
}

/// The dedupe marker of `user`'s message `id` in `room`. The user id's length comes
/// first so that no two (user, id) pairs share a key.
pub fn seen(room: &str, user: &str, id: &str) -> String {
    format!("tether:{{{room}}}:seen:{}:{user}{id}", user.len())
}

/// Who is present in the room, through which node.
pub fn present(room: &str) -> String {
    format!("tether:{{{room}}}:present")
}

/// The room's pub/sub channel.
pub fn channel(room: &str) -> String {
    format!("tether:{{{room}}}")
}

/// The room named by a channel, if it is one of ours.
pub fn room_of_channel(channel: &str) -> Option<&str> {
    channel.strip_prefix("tether:{")?.strip_suffix('}')
}

/// A node's heartbeat.
pub fn node(node: &str) -> String {
    format!("tether:node:{node}")
}

/// The rooms a node has announced presence in.
pub fn node_rooms(node: &str) -> String {
    format!("tether:node:{node}:rooms")
}

/// A node's latest dashboard sample.
pub fn node_stats(node: &str) -> String {
    format!("tether:node:{node}:stats")
}

/// The channel every node listens to for commands (the API's `disconnect`).
pub const CONTROL: &str = "tether:control";

/// The history's identity.
pub const EPOCH: &str = "tether:epoch";
/// The secret dev-mode and resume tokens are signed with.
pub const SECRET: &str = "tether:secret";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_of_a_room_share_its_hash_tag() {
        assert_eq!(seq("general"), "tether:{general}:seq");
        assert_eq!(room_of_channel(&channel("org:42.chat")), Some("org:42.chat"));
        assert_eq!(room_of_channel("other"), None);
        assert_ne!(seen("r", "a:b", "c"), seen("r", "a", ":bc"));
    }
}
