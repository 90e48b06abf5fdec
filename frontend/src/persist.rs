//! Unsent messages and the session across reloads, in `localStorage`, per server URL.
//!
//! The outbox is saved as the core's versioned snapshot after it changes, and restored
//! when the link is made; the resume token is saved at every welcome, so a reload keeps
//! the same identity and the server's dedupe recognises a message re-sent after it.
//! Whatever goes wrong is a [`StorageWarning`] the UI can show, never a crash.

use std::fmt;

use tether_shared::{Outbox, OutboxConfig};

/// The `localStorage` key for a URL's outbox.
pub fn storage_key(url: &str) -> String {
    format!("tether.outbox.{url}")
}

/// The `localStorage` key for a URL's resume token.
fn session_key(url: &str) -> String {
    format!("tether.session.{url}")
}

fn local_storage() -> Option<web_sys::Storage> {
    web_sys::window()?.local_storage().ok()?
}

/// Something about saved messages a person should know.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StorageWarning {
    /// The saved queue could not be read back (damaged, or from an unknown version).
    Unreadable(String),
    /// This many saved messages no longer fit the queue's bounds and were let go.
    Overflowed(usize),
    /// The queue could not be saved: storage is full or unavailable.
    SaveFailed,
}

impl fmt::Display for StorageWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StorageWarning::Unreadable(error) => write!(f, "Unsent messages could not be restored: {error}"),
            StorageWarning::Overflowed(count) => write!(f, "{count} unsent messages no longer fit the queue"),
            StorageWarning::SaveFailed => {
                f.write_str("Could not save unsent messages: browser storage is full or unavailable")
            }
        }
    }
}

/// The outbox saved for `url`, or an empty one, and what the person should know.
pub fn restore(url: &str, config: &OutboxConfig) -> (Outbox, Option<StorageWarning>) {
    let Some(saved) = local_storage().and_then(|storage| storage.get_item(&storage_key(url)).ok().flatten())
    else {
        return (Outbox::new(config.clone()), None);
    };
    let (outbox, dropped, error) = Outbox::restore_or_empty(config.clone(), &saved);
    let warning = match error {
        Some(error) => Some(StorageWarning::Unreadable(error.to_string())),
        None if !dropped.is_empty() => Some(StorageWarning::Overflowed(dropped.len())),
        None => None,
    };
    (outbox, warning)
}

/// Saves `outbox` for `url` (an empty one removes the entry).
pub fn save(url: &str, outbox: &Outbox) -> Result<(), StorageWarning> {
    let storage = local_storage().ok_or(StorageWarning::SaveFailed)?;
    let key = storage_key(url);
    let saved = if outbox.is_empty() {
        storage.remove_item(&key)
    } else {
        storage.set_item(&key, &outbox.snapshot())
    };
    saved.map_err(|_| StorageWarning::SaveFailed)
}

/// The resume token saved for `url`.
pub fn resume_token(url: &str) -> Option<String> {
    local_storage()?.get_item(&session_key(url)).ok().flatten()
}

/// Saves the resume token for `url`.
pub fn save_resume_token(url: &str, token: &str) {
    if let Some(storage) = local_storage() {
        let _ = storage.set_item(&session_key(url), token);
    }
}
