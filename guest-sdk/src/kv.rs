//! Key-value storage that outlives requests: the stores the manifest grants
//! the app (`key_value_stores = ["default"]`), through the standard
//! `wasi:keyvalue` interface.
//!
//! ```toml
//! [apps.site]
//! component = "site.wasm"
//! routes = ["/..."]
//! key_value_stores = ["default"]   # SQLite in .cyclone/data beside the manifest
//! ```
//!
//! ```no_run
//! use cyclone_sdk::kv::{self, Store};
//!
//! # fn example() -> Result<(), kv::Error> {
//! let store = Store::open("default")?;
//! store.set("greeting", "hello")?;
//! assert_eq!(store.get("greeting")?.as_deref(), Some(&b"hello"[..]));
//! let visits = store.increment("visits", 1)?;       // atomic, on every backend
//! store.set_json("user:1", &serde_json::json!({ "name": "Ada" }))?;
//! let swapped = store.compare_and_swap("owner", None, "me")?; // only if absent
//! # let _ = (visits, swapped);
//! # Ok(())
//! # }
//! ```
//!
//! Keys are at most 256 bytes and values at most the store's
//! `max_value_kb` (1024 unless the manifest says otherwise); past them a
//! call fails with [`Error::TooLarge`]. A store that cannot be reached
//! (Redis down) fails calls with [`Error::Unavailable`] within a second;
//! `?` in a handler turns it into a 503. Counters ([`Store::increment`]) are
//! kept as decimal text, so [`Store::get`] of one reads `b"42"`.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::HttpError;
use crate::bindings::wasi::keyvalue::{atomics, batch, store};

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// The app's `key_value_stores` does not list the store.
    AccessDenied,
    /// No store has that name.
    NoSuchStore,
    /// The store cannot be reached now; the call may succeed later.
    Unavailable(String),
    /// A key over 256 bytes, a value over the store's `max_value_kb`, or a
    /// batch over 1,000 keys.
    TooLarge(String),
    /// Anything else: an invalid key, a counter that is not a number, a full
    /// disk, a value that is not the JSON asked for.
    Other(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::AccessDenied => f.write_str("access to the store is denied"),
            Error::NoSuchStore => f.write_str("no such store"),
            Error::Unavailable(why) => write!(f, "the store is unavailable: {why}"),
            Error::TooLarge(why) => write!(f, "too large: {why}"),
            Error::Other(why) => f.write_str(why),
        }
    }
}

impl std::error::Error for Error {}

impl From<store::Error> for Error {
    fn from(e: store::Error) -> Self {
        match e {
            store::Error::AccessDenied => Error::AccessDenied,
            store::Error::NoSuchStore => Error::NoSuchStore,
            // The host sends its extra cases as `other` with a prefix.
            store::Error::Other(text) => {
                if let Some(why) = text.strip_prefix("unavailable: ") {
                    Error::Unavailable(why.to_owned())
                } else if let Some(why) = text.strip_prefix("too-large: ") {
                    Error::TooLarge(why.to_owned())
                } else {
                    Error::Other(text)
                }
            }
        }
    }
}

/// A store error in a handler: 503 (with `Retry-After` left to the client)
/// when the store is unavailable, 413 for a value too large, 500 otherwise,
/// the detail in the host log.
impl From<Error> for HttpError {
    fn from(e: Error) -> Self {
        use http::StatusCode;
        match &e {
            Error::Unavailable(_) => HttpError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "storage is unavailable; try again",
            )
            .with_log(e.to_string()),
            Error::TooLarge(_) => HttpError::new(StatusCode::PAYLOAD_TOO_LARGE, e.to_string()),
            _ => HttpError::internal(format!("key-value store: {e}")),
        }
    }
}

/// A page of keys; pass `next` to [`Store::keys`] for the following one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page {
    /// Keys, in no particular order.
    pub keys: Vec<String>,
    /// The cursor of the next page, `None` on the last.
    pub next: Option<String>,
}

/// An open store.
#[derive(Debug)]
pub struct Store {
    bucket: store::Bucket,
}

impl Store {
    /// Opens the store `name`: one of the app's `key_value_stores`.
    pub fn open(name: &str) -> Result<Self, Error> {
        Ok(Self {
            bucket: store::open(name)?,
        })
    }

    /// The value of `key`, `None` when absent.
    pub fn get(&self, key: &str) -> Result<Option<Vec<u8>>, Error> {
        Ok(self.bucket.get(key)?)
    }

    /// Sets `key` to `value`.
    pub fn set(&self, key: &str, value: impl AsRef<[u8]>) -> Result<(), Error> {
        Ok(self.bucket.set(key, value.as_ref())?)
    }

    /// Deletes `key`; nothing happens when it is absent.
    pub fn delete(&self, key: &str) -> Result<(), Error> {
        Ok(self.bucket.delete(key)?)
    }

    /// Whether `key` is present.
    pub fn exists(&self, key: &str) -> Result<bool, Error> {
        Ok(self.bucket.exists(key)?)
    }

    /// A page of keys: the first with `None`, then each `next` in turn.
    pub fn keys(&self, cursor: Option<&str>) -> Result<Page, Error> {
        let page = self.bucket.list_keys(cursor)?;
        Ok(Page {
            keys: page.keys,
            next: page.cursor,
        })
    }

    /// Every key, page after page.
    pub fn all_keys(&self) -> Result<Vec<String>, Error> {
        let mut keys = Vec::new();
        let mut cursor = None;
        loop {
            let page = self.keys(cursor.as_deref())?;
            keys.extend(page.keys);
            match page.next {
                Some(next) => cursor = Some(next),
                None => return Ok(keys),
            }
        }
    }

    /// Adds `delta` to the counter at `key` (an absent one counts as 0) and
    /// returns the new value, atomically: concurrent increments from any
    /// instance or host are never lost.
    pub fn increment(&self, key: &str, delta: i64) -> Result<i64, Error> {
        Ok(atomics::increment(&self.bucket, key, delta)?)
    }

    /// Sets `key` to `new` if its value is still `expected` (`None`: absent),
    /// atomically; `false` when it was not, and nothing changed.
    pub fn compare_and_swap(
        &self,
        key: &str,
        expected: Option<&[u8]>,
        new: impl AsRef<[u8]>,
    ) -> Result<bool, Error> {
        let cas = atomics::Cas::new(&self.bucket, key)?;
        if cas.current()?.as_deref() != expected {
            return Ok(false);
        }
        match atomics::swap(cas, new.as_ref()) {
            Ok(()) => Ok(true),
            Err(atomics::CasError::CasFailed(_)) => Ok(false),
            Err(atomics::CasError::StoreError(e)) => Err(e.into()),
        }
    }

    /// The value of `key` parsed from JSON.
    pub fn get_json<T: DeserializeOwned>(&self, key: &str) -> Result<Option<T>, Error> {
        self.get(key)?
            .map(|bytes| {
                serde_json::from_slice(&bytes).map_err(|e| {
                    Error::Other(format!(
                        "the value of `{key}` is not the JSON expected: {e}"
                    ))
                })
            })
            .transpose()
    }

    /// Sets `key` to `value` as JSON.
    pub fn set_json<T: Serialize + ?Sized>(&self, key: &str, value: &T) -> Result<(), Error> {
        let bytes = serde_json::to_vec(value)
            .map_err(|e| Error::Other(format!("cannot write `{key}` as JSON: {e}")))?;
        self.set(key, bytes)
    }

    /// The values of `keys`, in order (`None` for an absent one); at most
    /// 1,000 keys.
    pub fn get_many(&self, keys: &[&str]) -> Result<Vec<Option<Vec<u8>>>, Error> {
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        Ok(batch::get_many(&self.bucket, &keys)?
            .into_iter()
            .map(|(_, value)| value)
            .collect())
    }

    /// Sets each key to its value; at most 1,000. Not atomic: on an error
    /// some may be set.
    pub fn set_many(&self, entries: &[(&str, &[u8])]) -> Result<(), Error> {
        let entries: Vec<(String, Vec<u8>)> = entries
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.to_vec()))
            .collect();
        Ok(batch::set_many(&self.bucket, &entries)?)
    }

    /// Deletes `keys`; at most 1,000.
    pub fn delete_many(&self, keys: &[&str]) -> Result<(), Error> {
        let keys: Vec<String> = keys.iter().map(|k| (*k).to_owned()).collect();
        Ok(batch::delete_many(&self.bucket, &keys)?)
    }
}
