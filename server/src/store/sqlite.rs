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

use super::{Store, StoreError, StoredMessage};

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
CREATE INDEX IF NOT EXISTS messages_by_sender ON messages (user_id, client_id);
";

fn open(path: &Path) -> Result<Connection, StoreError> {
    let connection = Connection::open(path)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "FULL")?;
    connection.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(connection)
}

impl SqliteStore {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| StoreError(format!("{}: {e}", dir.display())))?;
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
        user: User { id: row.get(3)?, name: row.get(4)?, color: row.get(5)? },
        body: RawValue::from_string(body).map(Arc::from).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(6, rusqlite::types::Type::Text, Box::new(e))
        })?,
        ts: Millis(row.get::<_, i64>(7)? as u64),
    })
}

const COLUMNS: &str = "room, seq, client_id, user_id, user_name, user_color, body, ts";

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

    fn find(&self, user: &str, id: &str, since: Millis) -> Result<Option<StoredMessage>, StoreError> {
        // The writer's connection: it sees its own latest commits without a snapshot lag.
        let connection = self.writer.lock().expect("writer lock");
        let mut select = connection.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM messages WHERE user_id = ?1 AND client_id = ?2 AND ts >= ?3 LIMIT 1"
        ))?;
        Ok(select.query_row(params![user, id, since.0 as i64], row_to_message).optional()?)
    }

    fn prune(&self, room: &str, keep: u64, before: Millis) -> Result<(), StoreError> {
        let connection = self.writer.lock().expect("writer lock");
        connection.execute(
            "DELETE FROM messages WHERE room = ?1 AND seq < (SELECT MAX(seq) FROM messages WHERE room = ?1)
               AND (seq <= (SELECT MAX(seq) FROM messages WHERE room = ?1) - ?2 OR ts < ?3)",
            params![room, keep as i64, before.0 as i64],
        )?;
        Ok(())
    }

    fn durable(&self) -> bool {
        true
    }

    fn epoch(&self) -> String {
        self.epoch.clone()
    }

    fn secret(&self) -> Vec<u8> {
        self.secret.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(room: &str, seq: u64, ts: u64) -> StoredMessage {
        StoredMessage {
            room: room.into(),
            seq,
            id: format!("m{seq}"),
            user: User { id: "u".into(), name: "U".into(), color: "#000".into() },
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
        assert_eq!(store.find("u", "m2", Millis(0)).unwrap().map(|m| m.seq), Some(2));
        assert!(store.find("u", "m2", Millis(21)).unwrap().is_none(), "outside the window");
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
}
