//! Reading a room's history and head from Redis, for joins and replays.
//!
//! These reads sit behind the same synchronous [`History`] trait as SQLite's, and are
//! called from the same places (a join's head under the room's lock, a replay on the
//! blocking pool), so they use a blocking connection with short timeouts: while Redis
//! is away a join fails within a second or two with a typed error instead of hanging.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use redis::{Commands, Connection, Value};
use serde_json::value::RawValue;
use tether_shared::{Millis, User};

use super::keys;
use crate::engine::NodeId;
use crate::store::{History, StoreError, StoredMessage};

/// How long a blocking read may take before it counts as a failure.
const TIMEOUT: Duration = Duration::from_secs(2);

/// Room history kept in Redis by the cluster's publish script.
pub struct RedisHistory {
    client: redis::Client,
    connection: Mutex<Option<Connection>>,
    epoch: String,
    secret: Vec<u8>,
}

impl RedisHistory {
    /// Connects, and reads (or on first use, sets) the epoch and the token secret that
    /// every node shares.
    pub fn open(client: redis::Client) -> Result<RedisHistory, StoreError> {
        let history =
            RedisHistory { client, connection: Mutex::new(None), epoch: String::new(), secret: Vec::new() };
        let fresh = format!("{:016x}", fastrand::u64(..));
        let epoch: String = history.with(|c| {
            let _: bool = c.set_nx(keys::EPOCH, &fresh)?;
            c.get(keys::EPOCH)
        })?;
        let fresh_secret: String = (0..4).map(|_| format!("{:016x}", fastrand::u64(..))).collect();
        let secret: String = history.with(|c| {
            let _: bool = c.set_nx(keys::SECRET, &fresh_secret)?;
            c.get(keys::SECRET)
        })?;
        Ok(RedisHistory { epoch, secret: secret.into_bytes(), ..history })
    }

    /// Runs `read` on the shared blocking connection, connecting first if needed. A
    /// failure drops the connection so that the next call starts afresh.
    fn with<T>(&self, read: impl FnOnce(&mut Connection) -> redis::RedisResult<T>) -> Result<T, StoreError> {
        let mut slot = self.connection.lock().expect("redis connection lock");
        if slot.is_none() {
            let connection = self.client.get_connection_with_timeout(TIMEOUT)?;
            connection.set_read_timeout(Some(TIMEOUT))?;
            connection.set_write_timeout(Some(TIMEOUT))?;
            *slot = Some(connection);
        }
        let result = read(slot.as_mut().expect("just connected"));
        if result.is_err() {
            *slot = None;
        }
        Ok(result?)
    }
}

impl RedisHistory {
    /// Who is present in `room` through nodes other than `except` whose heartbeat is
    /// alive: what a room's first local join reads, under the room's lock.
    pub fn present_elsewhere(&self, room: &str, except: &str) -> Result<Vec<(NodeId, User)>, StoreError> {
        let fields: Vec<(String, String)> =
            self.with(|c| redis::cmd("EVAL").arg(PRESENT).arg(1).arg(keys::present(room)).query(c))?;
        Ok(present_users(fields).into_iter().filter(|(node, _)| &**node != except).collect())
    }
}

impl RedisHistory {
    /// Every room a live node has announced presence in, with its users present through
    /// live nodes counted once; rooms nobody is in any more are left out.
    pub fn rooms(&self) -> Result<Vec<(String, usize)>, StoreError> {
        let flat: Vec<(String, usize)> = self.with(|c| redis::cmd("EVAL").arg(ROOMS).arg(0).query(c))?;
        Ok(flat)
    }

    /// The latest dashboard sample (JSON) of every node whose sample has not expired.
    pub fn node_stats(&self) -> Result<Vec<(String, String)>, StoreError> {
        let flat: Vec<(String, String)> =
            self.with(|c| redis::cmd("EVAL").arg(NODE_STATS).arg(0).query(c))?;
        Ok(flat)
    }
}

/// Returns `room, count` pairs (flat) for every room in a live node's room set that has
/// someone present through a live node. An admin's read, walking the keyspace with
/// SCAN; the rooms' hashes are named from the sets, which one Redis allows.
const ROOMS: &str = r#"
local alive, counts, out = {}, {}, {}
local function live(node)
  if alive[node] == nil then alive[node] = redis.call('EXISTS', 'tether:node:' .. node) == 1 end
  return alive[node]
end
local cursor = '0'
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', 'tether:node:*:rooms', 'COUNT', 100)
  cursor = page[1]
  for _, key in ipairs(page[2]) do
    local node = string.match(key, '^tether:node:(.*):rooms$')
    if node and live(node) then
      for _, room in ipairs(redis.call('SMEMBERS', key)) do counts[room] = true end
    end
  end
until cursor == '0'
for room in pairs(counts) do
  local users, count = {}, 0
  for _, field in ipairs(redis.call('HKEYS', 'tether:{' .. room .. '}:present')) do
    local node, user = string.match(field, '^([^/]*)/(.*)$')
    if node and live(node) and not users[user] then
      users[user] = true
      count = count + 1
    end
  end
  if count > 0 then
    table.insert(out, room)
    table.insert(out, count)
  end
end
return out
"#;

/// Returns `node, sample` pairs (flat) for every node's unexpired dashboard sample.
const NODE_STATS: &str = r#"
local out, cursor = {}, '0'
repeat
  local page = redis.call('SCAN', cursor, 'MATCH', 'tether:node:*:stats', 'COUNT', 100)
  cursor = page[1]
  for _, key in ipairs(page[2]) do
    local sample = redis.call('GET', key)
    if sample then
      table.insert(out, string.match(key, '^tether:node:(.*):stats$'))
      table.insert(out, sample)
    end
  end
until cursor == '0'
return out
"#;

/// KEYS: a room's presence hash. Returns its `<node>/<user>` → user pairs (flat), leaving
/// out nodes whose heartbeat is gone: one round trip, however many nodes there are.
pub(super) const PRESENT: &str = r#"
local found, alive = {}, {}
local fields = redis.call('HGETALL', KEYS[1])
for i = 1, #fields, 2 do
  local node = string.match(fields[i], '^([^/]*)/')
  if node then
    if alive[node] == nil then alive[node] = redis.call('EXISTS', 'tether:node:' .. node) == 1 end
    if alive[node] then
      table.insert(found, fields[i])
      table.insert(found, fields[i + 1])
    end
  end
end
return found
"#;

/// The users of a [`PRESENT`] answer, with the node each is present through.
pub(super) fn present_users(fields: Vec<(String, String)>) -> Vec<(NodeId, User)> {
    fields
        .into_iter()
        .filter_map(|(field, user)| {
            let (node, _) = field.split_once('/')?;
            Some((NodeId::from(node), serde_json::from_str::<User>(&user).ok()?))
        })
        .collect()
}

impl History for RedisHistory {
    fn head(&self, room: &str) -> Result<u64, StoreError> {
        self.with(|c| c.get::<_, Option<u64>>(keys::seq(room)).map(Option::unwrap_or_default))
    }

    fn oldest(&self, room: &str) -> Result<u64, StoreError> {
        let first: Value = self.with(|c| {
            redis::cmd("XRANGE").arg(keys::log(room)).arg("-").arg("+").arg("COUNT").arg(1).query(c)
        })?;
        Ok(entries(room, first)?.first().map_or(0, |message| message.seq))
    }

    fn read(&self, room: &str, after: u64, upto: u64) -> Result<Vec<StoredMessage>, StoreError> {
        if upto <= after {
            return Ok(Vec::new());
        }
        let found: Value = self.with(|c| {
            redis::cmd("XRANGE")
                .arg(keys::log(room))
                .arg(format!("{}-0", after + 1))
                .arg(format!("{upto}-0"))
                .query(c)
        })?;
        entries(room, found)
    }

    fn epoch(&self) -> String {
        self.epoch.clone()
    }

    fn secret(&self) -> Vec<u8> {
        self.secret.clone()
    }
}

/// Decodes an `XRANGE` reply of the history stream.
pub(super) fn entries(room: &str, reply: Value) -> Result<Vec<StoredMessage>, StoreError> {
    let Value::Array(items) = reply else {
        return Err(StoreError::Corrupt("XRANGE did not answer an array".into()));
    };
    items.into_iter().map(|item| entry(room, item)).collect()
}

fn entry(room: &str, item: Value) -> Result<StoredMessage, StoreError> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("history entry of {room}: {what}"));
    let Value::Array(mut parts) = item else { return Err(corrupt("not an [id, fields] pair")) };
    let (Some(fields), Some(id)) = (parts.pop(), parts.pop()) else {
        return Err(corrupt("not an [id, fields] pair"));
    };
    let entry_id: String = redis::from_redis_value(id).map_err(|_| corrupt("id is not text"))?;
    let seq = entry_id
        .split_once('-')
        .and_then(|(seq, _)| seq.parse().ok())
        .ok_or_else(|| corrupt("id is not <seq>-0"))?;
    let fields: Vec<(String, String)> =
        redis::from_redis_value(fields).map_err(|_| corrupt("fields are not text"))?;
    let field = |name: &str| fields.iter().find(|(key, _)| key == name).map(|(_, value)| value.as_str());
    let (Some(id), Some(user), Some(body), Some(ts)) = (field("i"), field("u"), field("b"), field("t"))
    else {
        return Err(corrupt("a field is missing"));
    };
    Ok(StoredMessage {
        room: room.to_owned(),
        seq,
        id: id.to_owned(),
        user: serde_json::from_str::<User>(user).map_err(|_| corrupt("the sender is not a user"))?,
        body: RawValue::from_string(body.to_owned())
            .map(Arc::from)
            .map_err(|_| corrupt("the body is not JSON"))?,
        ts: Millis(ts.parse().map_err(|_| corrupt("the time is not a number"))?),
    })
}
