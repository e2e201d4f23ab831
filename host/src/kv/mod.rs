//! Key-value stores: what guests' `wasi:keyvalue` calls reach.
//!
//! A [`Store`] is opened once per `[key_value.NAME]` table when the host
//! starts and shared by every app granted it. It checks keys and values
//! against the limits, then hands an [`Op`] to its [`Backend`]:
//! [`sqlite::Sqlite`] (a file on this machine, served by a thread of its
//! own so no call blocks an event loop) or [`redis::Redis`] (a server
//! shared by every host that names it; each call gives up after
//! [`REDIS_CALL_TIMEOUT`]).
//!
//! Values of [`Store::increment`] are kept as decimal text, as Redis keeps
//! them, so `get` of a counter reads `b"42"` on either backend.

pub mod redis;
pub mod sqlite;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use crate::config::{StoreBackend, StoreConfig};

/// The longest key, in bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Keys one `list-keys` page holds at most.
pub const PAGE_KEYS: usize = 1000;
/// Keys one batch call may name at most.
pub const MAX_BATCH: usize = 1000;
/// How long a Redis call may take before it fails with `unavailable`:
/// short enough that a request answers within a second when Redis is gone.
pub const REDIS_CALL_TIMEOUT: Duration = Duration::from_millis(800);

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// The app is not granted the store.
    #[error("access denied")]
    AccessDenied,
    /// No store has that name.
    #[error("no such store")]
    NoSuchStore,
    /// A key or value is over its limit.
    #[error("too-large: {0}")]
    TooLarge(String),
    /// The store cannot be reached now; the call may succeed later.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Anything else: a bad key, a value that is not a counter, a full disk.
    #[error("{0}")]
    Other(String),
}

/// One call on a store, as its backend sees it (keys and values checked).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// The value of a key.
    Get(String),
    /// Sets a key.
    Set(String, Vec<u8>),
    /// Deletes a key; nothing when it is absent.
    Delete(String),
    /// Whether a key is present.
    Exists(String),
    /// A page of keys after the cursor.
    ListKeys(Option<String>),
    /// Adds to a counter (absent: 0) and returns the sum.
    Increment(String, i64),
    /// Sets `key` to `new` if its value is `expected` (`None`: absent).
    CompareAndSwap {
        /// The key.
        key: String,
        /// The value it must have.
        expected: Option<Vec<u8>>,
        /// The value to set.
        new: Vec<u8>,
    },
    /// The values of several keys.
    GetMany(Vec<String>),
    /// Sets several keys.
    SetMany(Vec<(String, Vec<u8>)>),
    /// Deletes several keys.
    DeleteMany(Vec<String>),
}

/// What a backend answers to an [`Op`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `Get`.
    Value(Option<Vec<u8>>),
    /// `Set`, `Delete`, `SetMany`, `DeleteMany`.
    Done,
    /// `Exists`.
    Exists(bool),
    /// `ListKeys`: a page and the cursor of the next, if any.
    Keys(Vec<String>, Option<String>),
    /// `Increment`.
    Count(i64),
    /// `CompareAndSwap`: swapped, or the value found instead.
    Swapped(Result<(), Option<Vec<u8>>>),
    /// `GetMany`.
    Values(Vec<(String, Option<Vec<u8>>)>),
}

/// Where a store keeps its data.
#[async_trait::async_trait]
pub trait Backend: Send + Sync + std::fmt::Debug {
    /// Runs one call.
    async fn run(&self, op: Op) -> Result<Reply, Error>;
}

/// A store, shared by the apps granted it.
#[derive(Debug)]
pub struct Store {
    name: Arc<str>,
    backend: Box<dyn Backend>,
    max_value: usize,
}

/// An open store, as a guest holds it (`wasi:keyvalue/store.bucket`).
pub struct Bucket(pub Arc<Store>);

/// A compare-and-swap in progress (`wasi:keyvalue/atomics.cas`): the value
/// `key` had when it was read.
pub struct Cas {
    /// The store.
    pub store: Arc<Store>,
    /// The key.
    pub key: String,
    /// Its value when the operation began.
    pub current: Option<Vec<u8>>,
}

fn unexpected(reply: Reply) -> Error {
    Error::Other(format!("the store answered {reply:?} out of turn"))
}

impl Store {
    /// A store named `name` on `backend`, with values up to `max_value` bytes.
    pub fn new(name: &str, backend: Box<dyn Backend>, max_value: usize) -> Self {
        Self {
            name: name.into(),
            backend,
            max_value,
        }
    }

    /// The store's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn key(&self, key: &str) -> Result<(), Error> {
        if key.is_empty() {
            return Err(Error::Other("invalid key: keys are not empty".into()));
        }
        if key.len() > MAX_KEY_BYTES {
            return Err(Error::TooLarge(format!(
                "a key is at most {MAX_KEY_BYTES} bytes; this one is {}",
                key.len()
            )));
        }
        Ok(())
    }

    fn batch(&self, len: usize) -> Result<(), Error> {
        if len > MAX_BATCH {
            return Err(Error::TooLarge(format!(
                "a batch names at most {MAX_BATCH} keys; this one names {len}"
            )));
        }
        Ok(())
    }

    fn value(&self, value: &[u8]) -> Result<(), Error> {
        if value.len() > self.max_value {
            return Err(Error::TooLarge(format!(
                "a value in store `{}` is at most {} bytes; this one is {}",
                self.name,
                self.max_value,
                value.len()
            )));
        }
        Ok(())
    }

    /// The value of `key`.
    pub async fn get(&self, key: String) -> Result<Option<Vec<u8>>, Error> {
        self.key(&key)?;
        match self.backend.run(Op::Get(key)).await? {
            Reply::Value(value) => Ok(value),
            other => Err(unexpected(other)),
        }
    }

    /// Sets `key` to `value`.
    pub async fn set(&self, key: String, value: Vec<u8>) -> Result<(), Error> {
        self.key(&key)?;
        self.value(&value)?;
        self.done(Op::Set(key, value)).await
    }

    /// Deletes `key`.
    pub async fn delete(&self, key: String) -> Result<(), Error> {
        self.key(&key)?;
        self.done(Op::Delete(key)).await
    }

    /// Whether `key` is present.
    pub async fn exists(&self, key: String) -> Result<bool, Error> {
        self.key(&key)?;
        match self.backend.run(Op::Exists(key)).await? {
            Reply::Exists(present) => Ok(present),
            other => Err(unexpected(other)),
        }
    }

    /// A page of keys (at most [`PAGE_KEYS`]) and the cursor of the next.
    pub async fn list_keys(
        &self,
        cursor: Option<String>,
    ) -> Result<(Vec<String>, Option<String>), Error> {
        match self.backend.run(Op::ListKeys(cursor)).await? {
            Reply::Keys(keys, next) => Ok((keys, next)),
            other => Err(unexpected(other)),
        }
    }

    /// Adds `delta` to the counter at `key` and returns the new value.
    pub async fn increment(&self, key: String, delta: i64) -> Result<i64, Error> {
        self.key(&key)?;
        match self.backend.run(Op::Increment(key, delta)).await? {
            Reply::Count(n) => Ok(n),
            other => Err(unexpected(other)),
        }
    }

    /// Sets `key` to `new` if its value is still `expected`; otherwise
    /// answers the value it has.
    pub async fn compare_and_swap(
        &self,
        key: String,
        expected: Option<Vec<u8>>,
        new: Vec<u8>,
    ) -> Result<Result<(), Option<Vec<u8>>>, Error> {
        self.key(&key)?;
        self.value(&new)?;
        match self
            .backend
            .run(Op::CompareAndSwap { key, expected, new })
            .await?
        {
            Reply::Swapped(outcome) => Ok(outcome),
            other => Err(unexpected(other)),
        }
    }

    /// The values of `keys`, in order.
    pub async fn get_many(
        &self,
        keys: Vec<String>,
    ) -> Result<Vec<(String, Option<Vec<u8>>)>, Error> {
        self.batch(keys.len())?;
        for key in &keys {
            self.key(key)?;
        }
        match self.backend.run(Op::GetMany(keys)).await? {
            Reply::Values(values) => Ok(values),
            other => Err(unexpected(other)),
        }
    }

    /// Sets each key to its value.
    pub async fn set_many(&self, entries: Vec<(String, Vec<u8>)>) -> Result<(), Error> {
        self.batch(entries.len())?;
        for (key, value) in &entries {
            self.key(key)?;
            self.value(value)?;
        }
        self.done(Op::SetMany(entries)).await
    }

    /// Deletes `keys`.
    pub async fn delete_many(&self, keys: Vec<String>) -> Result<(), Error> {
        self.batch(keys.len())?;
        for key in &keys {
            self.key(key)?;
        }
        self.done(Op::DeleteMany(keys)).await
    }

    async fn done(&self, op: Op) -> Result<(), Error> {
        match self.backend.run(op).await? {
            Reply::Done => Ok(()),
            other => Err(unexpected(other)),
        }
    }
}

/// Why a store could not be opened at start-up.
#[derive(Debug, thiserror::Error)]
#[error("key_value.{name}: {message}")]
pub struct OpenError {
    /// The store.
    pub name: String,
    /// What went wrong.
    pub message: String,
}

/// Opens every store of the manifest. SQLite files (and their folders) are
/// created as needed; a Redis server that cannot be reached yet is a
/// warning, and calls fail with `unavailable` until it answers. Must run
/// inside a Tokio runtime (Redis connections are managed by a task).
pub fn open_all(
    stores: &BTreeMap<String, StoreConfig>,
) -> Result<BTreeMap<String, Arc<Store>>, OpenError> {
    let mut open = BTreeMap::new();
    for (name, config) in stores {
        let fail = |message: String| OpenError {
            name: name.clone(),
            message,
        };
        let backend: Box<dyn Backend> = match config.backend {
            StoreBackend::Sqlite => {
                let path = config
                    .path
                    .as_deref()
                    .ok_or_else(|| fail("no path".into()))?;
                Box::new(sqlite::Sqlite::open(name, path).map_err(fail)?)
            }
            StoreBackend::Redis => {
                let url = config.redis_url().ok_or_else(|| fail("no url".into()))?;
                Box::new(redis::Redis::open(name, url).map_err(fail)?)
            }
        };
        open.insert(
            name.clone(),
            Arc::new(Store::new(name, backend, config.max_value_bytes())),
        );
    }
    Ok(open)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A backend that answers every call with `Done` and records it.
    #[derive(Debug, Default)]
    struct Recorder(Arc<Mutex<Vec<Op>>>);

    #[async_trait::async_trait]
    impl Backend for Recorder {
        async fn run(&self, op: Op) -> Result<Reply, Error> {
            self.0.lock().unwrap().push(op);
            Ok(Reply::Done)
        }
    }

    #[tokio::test]
    async fn keys_and_values_past_their_limits_never_reach_the_backend() {
        let ops = Arc::new(Mutex::new(Vec::new()));
        let store = Store::new("s", Box::new(Recorder(ops.clone())), 4);
        let long = "k".repeat(MAX_KEY_BYTES + 1);
        assert!(matches!(
            store.set(long.clone(), vec![]).await,
            Err(Error::TooLarge(_))
        ));
        assert!(matches!(
            store.set("k".into(), vec![0; 5]).await,
            Err(Error::TooLarge(_))
        ));
        assert!(matches!(
            store.get(String::new()).await,
            Err(Error::Other(_))
        ));
        assert!(matches!(
            store
                .set_many(vec![("a".into(), vec![]), (long, vec![])])
                .await,
            Err(Error::TooLarge(_))
        ));
        assert!(ops.lock().unwrap().is_empty());
        store
            .set("k".repeat(MAX_KEY_BYTES), vec![0; 4])
            .await
            .unwrap();
        assert_eq!(ops.lock().unwrap().len(), 1);
    }
}
