//! History in SQLite: the durable default.
//!
//! SQLite (bundled, so no system library or service is needed) in WAL mode with
//! `synchronous = FULL`: a commit returns only after the log is on disk, so an acked
//! message survives SIGKILL and power loss. The sequencer commits many publishes per
//! transaction (group commit), so throughput is not one fsync per message. Reads use
//! their own connection; WAL lets them run beside the writer.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rusqlite::{Connection, OptionalExtension, params};
use serde_json::value::RawValue;
use tether_shared::{Millis, User};

use super::{History, Published, Store, StoreError, StoredMessage};

/// A SQLite database file holding every room's history.
pub struct SqliteStore {
    writer: Mutex<Connection>,
    reader: Mutex<Connection>,
    epoch: String,
    secret: Vec<u8>,
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value BLOB NOT NULL);
CREATE TABLE IF NOT EXISTS messages (
    room TEXT NOT NULL,
    seq INTEGER NOT NULL,
    client_id TEXT NOT NULL,
    user_id TEXT NOT NULL,
    user_name TEXT NOT NULL,
    user_color TEXT NOT NULL,
    body TEXT NOT NULL,
    ts INTEGER NOT NULL,
    PRIMARY KEY (room, seq)
) WITHOUT ROWID;
DROP INDEX IF EXISTS messages_by_sender;
CREATE INDEX IF NOT EXISTS messages_by_time ON messages (ts);
";

fn open(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open(path)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    // Keep the hot pages of every room's tail and of the time index in memory, instead
    // of re-reading them from the OS on each commit (SQLite's default cache is 2 MB).
    connection.pragma_update(None, "cache_size", -65_536)?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(connection)
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir)
                .map_err(|source| StoreError::Folder { path: dir.to_path_buf(), source })?;
        }
        let writer = open(path)?;
        writer.execute_batch(SCHEMA)?;
        let epoch = meta(&writer, "epoch", || crate::identity::random_id("e").into_bytes())?;
        let secret = meta(&writer, "secret", || (0..32).map(|_| fastrand::u8(..)).collect())?;
        let reader = open(path)?;
        Ok(SqliteStore {
            writer: Mutex::new(writer),
            reader: Mutex::new(reader),
            epoch: String::from_utf8_lossy(&epoch).into_owned(),
            secret,
        })
    }
}

/// Reads a meta value, creating it on first use.
fn meta(connection: &Connection, key: &str, create: impl FnOnce() -> Vec<u8>) -> Result<Vec<u8>, StoreError> {
    let found: Option<Vec<u8>> =
        connection.query_row("SELECT value FROM meta WHERE key = ?1", [key], |row| row.get(0)).optional()?;
    match found {
        Some(value) => Ok(value),
        None => {
            let value = create();
            connection.execute("INSERT INTO meta (key, value) VALUES (?1, ?2)", params![key, value])?;
            Ok(value)
        }
    }
}

fn row_to_message(row: &rusqlite::Row<'_>) -> rusqlite::Result<StoredMessage> {
    let body: String = row.get(6)?;
    Ok(StoredMessage {
        room: row.get(0)?,
        seq: row.get::<_, i64>(1)? as u64,
        id: row.get(2)?,
        user: User::new(row.get::<_, String>(3)?, row.get::<_, String>(4)?, row.get::<_, String>(5)?),
        body: RawValue::from_string(body).map(Arc::from).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(6, rusqlite::types::Type::Text, Box::new(e))
        })?,
        ts: Millis(row.get::<_, i64>(7)? as u64),
    })
}

/// Most rows one prune drops for age.
const AGE_PRUNE_ROWS: i64 = 1024;

const COLUMNS: &str = "room, seq, client_id, user_id, user_name, user_color, body, ts";

impl History for SqliteStore {
    fn head(&self, room: &str) -> Result<u64, StoreError> {
        let connection = self.reader.lock().expect("reader lock");
        let head: Option<i64> =
            connection
                .query_row("SELECT MAX(seq) FROM messages WHERE room = ?1", [room], |row| row.get(0))?;
        Ok(head.unwrap_or(0) as u64)
    }

    fn oldest(&self, room: &str) -> Result<u64, StoreError> {
        let connection = self.reader.lock().expect("reader lock");
        let oldest: Option<i64> =
            connection
                .query_row("SELECT MIN(seq) FROM messages WHERE room = ?1", [room], |row| row.get(0))?;
        Ok(oldest.unwrap_or(0) as u64)
    }

    fn read(&self, room: &str, after: u64, upto: u64) -> Result<Vec<StoredMessage>, StoreError> {
        let connection = self.reader.lock().expect("reader lock");
        let mut select = connection.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM messages WHERE room = ?1 AND seq > ?2 AND seq <= ?3 ORDER BY seq"
        ))?;
        let rows = select.query_map(params![room, after as i64, upto as i64], row_to_message)?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn epoch(&self) -> String {
        self.epoch.clone()
    }

    fn secret(&self) -> Vec<u8> {
        self.secret.clone()
    }
}

impl Store for SqliteStore {
    fn append(&self, batch: &[StoredMessage]) -> Result<(), StoreError> {
        let mut connection = self.writer.lock().expect("writer lock");
        let transaction = connection.transaction()?;
        {
            let mut insert = transaction.prepare_cached(&format!(
                "INSERT INTO messages ({COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ))?;
            for m in batch {
                insert.execute(params![
                    m.room,
                    m.seq as i64,
                    m.id,
                    m.user.id,
                    m.user.name,
                    m.user.color,
                    m.body.get(),
                    m.ts.0 as i64
                ])?;
            }
        }
        transaction.commit()?;
        Ok(())
    }

    fn published_since(&self, since: Millis) -> Result<Vec<Published>, StoreError> {
        // The writer's connection: it sees its own latest commits without a snapshot lag.
        let connection = self.writer.lock().expect("writer lock");
        let mut select = connection.prepare(
            "SELECT user_id, client_id, room, seq, ts FROM messages WHERE ts >= ?1 ORDER BY ts, room, seq",
        )?;
        let rows = select.query_map([since.0 as i64], |row| {
            Ok(Published {
                user: row.get(0)?,
                id: row.get(1)?,
                room: row.get(2)?,
                seq: row.get::<_, i64>(3)? as u64,
                ts: Millis(row.get::<_, i64>(4)? as u64),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn prune(&self, room: &str, keep: u64, before: Millis) -> Result<(), StoreError> {
        // Two range deletes on the primary key, so a prune costs the rows it removes and
        // not a scan of the room. The age rule looks only at the oldest rows, a bounded
        // number per call: the sequencer prunes often enough to keep up.
        let connection = self.writer.lock().expect("writer lock");
        let mut by_count = connection.prepare_cached(
            "DELETE FROM messages WHERE room = ?1
               AND seq <= (SELECT MAX(seq) FROM messages WHERE room = ?1) - ?2",
        )?;
        by_count.execute(params![room, keep.max(1) as i64])?;
        let mut oldest =
            connection.prepare_cached("SELECT ts FROM messages WHERE room = ?1 ORDER BY seq LIMIT 1")?;
        let oldest_ts: Option<i64> = oldest.query_row([room], |row| row.get(0)).optional()?;
        if oldest_ts.is_some_and(|ts| ts < before.0 as i64) {
            let mut by_age = connection.prepare_cached(
                "DELETE FROM messages WHERE room = ?1 AND ts < ?2
                   AND seq < (SELECT MAX(seq) FROM messages WHERE room = ?1)
                   AND seq IN (SELECT seq FROM messages WHERE room = ?1 ORDER BY seq LIMIT ?3)",
            )?;
            by_age.execute(params![room, before.0 as i64, AGE_PRUNE_ROWS])?;
        }
        Ok(())
    }

    fn history_bytes(&self) -> Result<u64, StoreError> {
        let connection = self.writer.lock().expect("writer lock");
        let sum = format!("SELECT COALESCE(SUM({ROW_BYTES}), 0) FROM messages");
        let total: i64 = connection.query_row(&sum, [], |row| row.get(0))?;
        Ok(total as u64)
    }

    fn shrink(&self, target: u64) -> Result<u64, StoreError> {
        let mut total = self.history_bytes()?;
        let mut connection = self.writer.lock().expect("writer lock");
        while total > target {
            // The oldest rows by time (the time index), leaving each room's latest. Each
            // room loses a prefix in seq order, up to its newest row among them, so its
            // history stays one contiguous run and `oldest` keeps telling the truth.
            let transaction = connection.transaction()?;
            let mut upto: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
            let mut freeing = 0u64;
            {
                let mut oldest = transaction.prepare_cached(&format!(
                    "SELECT room, seq, {ROW_BYTES} FROM messages AS m
                      WHERE seq < (SELECT MAX(seq) FROM messages WHERE room = m.room)
                      ORDER BY ts LIMIT ?1"
                ))?;
                let mut rows = oldest.query([SHRINK_ROWS])?;
                while let Some(row) = rows.next()? {
                    let (room, seq, bytes): (String, i64, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
                    let seq = upto.get(&room).map_or(seq, |&known| known.max(seq));
                    upto.insert(room, seq);
                    freeing += bytes as u64;
                    if total.saturating_sub(freeing) <= target {
                        break;
                    }
                }
            }
            if upto.is_empty() {
                break;
            }
            {
                let mut delete = transaction.prepare_cached(
                    "DELETE FROM messages WHERE room = ?1 AND seq <= ?2
                       AND seq < (SELECT MAX(seq) FROM messages WHERE room = ?1)",
                )?;
                for (room, seq) in &upto {
                    delete.execute(params![room, seq])?;
                }
            }
            transaction.commit()?;
            total = total.saturating_sub(freeing);
        }
        drop(connection);
        // Counted again: a clock set back can have put rows of later time before others.
        self.history_bytes()
    }
}

/// Most rows one step of [`Store::shrink`] considers.
const SHRINK_ROWS: i64 = 4096;

/// [`StoredMessage::stored_bytes`], as SQL over a row of `messages`.
const ROW_BYTES: &str = "LENGTH(CAST(room AS BLOB)) + LENGTH(CAST(client_id AS BLOB))
    + LENGTH(CAST(user_id AS BLOB)) + LENGTH(CAST(user_name AS BLOB))
    + LENGTH(CAST(user_color AS BLOB)) + LENGTH(CAST(body AS BLOB)) + 32";

#[cfg(test)]
mod tests {
    use super::*;

    fn message(room: &str, seq: u64, ts: u64) -> StoredMessage {
        StoredMessage {
            room: room.into(),
            seq,
            id: format!("m{seq}"),
            user: User::new("u", "U", "#000"),
            body: Arc::from(RawValue::from_string(format!("{{\"n\":{seq}}}")).unwrap()),
            ts: Millis(ts),
        }
    }

    fn temp_db() -> std::path::PathBuf {
        std::env::temp_dir().join(format!("tether-store-{}-{}.db", std::process::id(), fastrand::u64(..)))
    }

    #[test]
    fn history_survives_reopening_with_the_same_epoch_and_secret() {
        let path = temp_db();
        let store = SqliteStore::open(&path).unwrap();
        store.append(&[message("r", 1, 10), message("r", 2, 20), message("other", 1, 30)]).unwrap();
        let (epoch, secret) = (store.epoch(), store.secret());
        drop(store);
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!((store.epoch(), store.secret()), (epoch, secret));
        assert_eq!(store.head("r").unwrap(), 2);
        let read: Vec<u64> = store.read("r", 0, 2).unwrap().iter().map(|m| m.seq).collect();
        assert_eq!(read, [1, 2]);
        assert_eq!(store.read("r", 1, 2).unwrap()[0].body.get(), r#"{"n":2}"#);
        let since: Vec<(String, u64)> =
            store.published_since(Millis(20)).unwrap().into_iter().map(|p| (p.room, p.seq)).collect();
        assert_eq!(since, [("r".to_owned(), 2), ("other".to_owned(), 1)], "oldest first, none before 20");
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn prune_keeps_the_newest_and_the_head() {
        let path = temp_db();
        let store = SqliteStore::open(&path).unwrap();
        let batch: Vec<_> = (1..=10).map(|seq| message("r", seq, seq * 100)).collect();
        store.append(&batch).unwrap();
        store.prune("r", 3, Millis(0)).unwrap();
        assert_eq!((store.oldest("r").unwrap(), store.head("r").unwrap()), (8, 10));
        store.prune("r", 100, Millis(u64::MAX / 2)).unwrap();
        assert_eq!((store.oldest("r").unwrap(), store.head("r").unwrap()), (10, 10), "the head stays");
        std::fs::remove_file(&path).ok();
    }

    #[test]
    fn shrinking_drops_the_oldest_messages_of_all_rooms_and_keeps_each_head() {
        let path = temp_db();
        let store = SqliteStore::open(&path).unwrap();
        // Room a is old, room b is new; both are written in turns of time.
        let a: Vec<_> = (1..=10).map(|seq| message("a", seq, seq)).collect();
        let b: Vec<_> = (1..=10).map(|seq| message("b", seq, 100 + seq)).collect();
        store.append(&a).unwrap();
        store.append(&b).unwrap();
        let bytes =
            |messages: &[StoredMessage]| messages.iter().map(StoredMessage::stored_bytes).sum::<u64>();
        let total = bytes(&a) + bytes(&b);
        assert_eq!(store.history_bytes().unwrap(), total, "SQL counts what Rust counts");
        let left = store.shrink(total - bytes(&a[..8])).unwrap();
        assert_eq!(left, total - bytes(&a[..8]));
        assert_eq!((store.oldest("a").unwrap(), store.head("a").unwrap()), (9, 10), "a's oldest went first");
        assert_eq!(store.oldest("b").unwrap(), 1, "b is untouched");
        assert_eq!(store.shrink(0).unwrap(), bytes(&a[9..]) + bytes(&b[9..]), "only the heads are left");
        assert_eq!((store.oldest("a").unwrap(), store.oldest("b").unwrap()), (10, 10));
        std::fs::remove_file(&path).ok();
    }
}
