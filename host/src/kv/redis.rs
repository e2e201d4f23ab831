//! A Redis store: a hash on a Redis server, shared by every host naming it.
//!
//! The store `NAME` is the hash `cyclone:kv:NAME`, so stores and pub/sub
//! can share one server without seeing each other's keys. Connections are
//! kept by the `redis` crate's connection manager, which reconnects after
//! the server comes back; every call is bounded by [`REDIS_CALL_TIMEOUT`]
//! and fails with `unavailable` past it, so a server that is down or
//! unreachable never holds a request longer than that.

use std::sync::{LazyLock, OnceLock};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use super::{Backend, Error, Op, PAGE_KEYS, REDIS_CALL_TIMEOUT, Reply};

/// A Redis store.
pub struct Redis {
    hash: String,
    connection: ConnectionManager,
}

impl std::fmt::Debug for Redis {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redis").field("hash", &self.hash).finish()
    }
}

/// The runtime that owns every Redis connection of the process: a thread of
/// its own, so connections outlive no worker and need no worker to be idle.
pub fn runtime() -> &'static tokio::runtime::Handle {
    static RUNTIME: OnceLock<tokio::runtime::Handle> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a Tokio runtime for Redis connections");
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("cyclone-redis".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))
            .expect("a thread for Redis connections");
        handle
    })
}

/// A connection manager for `url`, connecting in the background: a server
/// that is down at start-up is not an error, its calls fail until it answers.
pub fn connect(
    url: &str,
    configure: impl FnOnce(ConnectionManagerConfig) -> ConnectionManagerConfig,
) -> Result<ConnectionManager, String> {
    let client = redis::Client::open(url).map_err(|e| format!("not a Redis URL: {e}"))?;
    let config = configure(
        ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_millis(500)))
            .set_response_timeout(Some(REDIS_CALL_TIMEOUT))
            .set_number_of_retries(2)
            .set_min_delay(Duration::from_millis(50))
            .set_max_delay(Duration::from_millis(250)),
    );
    let _entered = runtime().enter();
    ConnectionManager::new_lazy_with_config(client, config)
        .map_err(|e| format!("cannot use the Redis server: {e}"))
}

impl Redis {
    /// The store `name` on the server at `url`.
    pub fn open(name: &str, url: &str) -> Result<Self, String> {
        let connection = connect(url, |config| config)?;
        warn_if_down(name, connection.clone());
        Ok(Self {
            hash: format!("cyclone:kv:{name}"),
            connection,
        })
    }
}

/// Checks the server in the background and logs a warning when it does not answer.
fn warn_if_down(name: &str, mut connection: ConnectionManager) {
    let name = name.to_owned();
    runtime().spawn(async move {
        let ping = redis::cmd("PING");
        let ping = ping.query_async::<String>(&mut connection);
        match tokio::time::timeout(Duration::from_secs(2), ping).await {
            Ok(Ok(_)) => tracing::info!("key_value.{name}: connected to Redis"),
            Ok(Err(e)) => tracing::warn!(
                "key_value.{name}: Redis is not reachable ({e}); calls fail until it is"
            ),
            Err(_) => tracing::warn!(
                "key_value.{name}: Redis did not answer within 2 s; calls fail until it does"
            ),
        }
    });
}

/// Sets the field to the new value if it still has the expected one
/// (`ARGV[2]` is `1` when a value is expected, `0` for an absent field);
/// answers `{1}` on success, `{0, current}` otherwise.
static COMPARE_AND_SWAP: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r"
        local current = redis.call('HGET', KEYS[1], ARGV[1])
        local matches
        if ARGV[2] == '1' then matches = (current == ARGV[3]) else matches = (current == false) end
        if matches then
            redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
            return {1}
        end
        if current == false then return {0} end
        return {0, current}
        ",
    )
});

/// Whether a Redis error means the server could not be reached or did not answer.
pub fn unreachable(e: &redis::RedisError) -> bool {
    e.is_io_error() || e.is_unrecoverable_error() || e.is_timeout()
}

fn error(e: redis::RedisError) -> Error {
    if unreachable(&e) {
        Error::Unavailable(format!("Redis: {e}"))
    } else if e.to_string().contains("not an integer") {
        Error::Other(format!("the value is not an integer: {e}"))
    } else {
        Error::Other(format!("Redis: {e}"))
    }
}

impl Redis {
    async fn call(&self, op: Op) -> Result<Reply, redis::RedisError> {
        let mut c = self.connection.clone();
        let hash = self.hash.as_str();
        Ok(match op {
            Op::Get(key) => Reply::Value(
                redis::cmd("HGET")
                    .arg(hash)
                    .arg(key)
                    .query_async(&mut c)
                    .await?,
            ),
            Op::Set(key, value) => {
                redis::cmd("HSET")
                    .arg(hash)
                    .arg(key)
                    .arg(value)
                    .query_async::<()>(&mut c)
                    .await?;
                Reply::Done
            }
            Op::Delete(key) => {
                redis::cmd("HDEL")
                    .arg(hash)
                    .arg(key)
                    .query_async::<()>(&mut c)
                    .await?;
                Reply::Done
            }
            Op::Exists(key) => Reply::Exists(
                redis::cmd("HEXISTS")
                    .arg(hash)
                    .arg(key)
                    .query_async(&mut c)
                    .await?,
            ),
            Op::ListKeys(cursor) => {
                // The cursor is Redis's own HSCAN cursor; a page may hold a
                // few keys more or fewer than asked for, never none while
                // more follow unless Redis says so.
                let start: u64 = cursor.as_deref().and_then(|c| c.parse().ok()).unwrap_or(0);
                let (next, entries): (u64, Vec<(String, redis::Value)>) = redis::cmd("HSCAN")
                    .arg(hash)
                    .arg(start)
                    .arg("COUNT")
                    .arg(PAGE_KEYS)
                    .query_async(&mut c)
                    .await?;
                let keys = entries.into_iter().map(|(key, _)| key).collect();
                Reply::Keys(keys, (next != 0).then(|| next.to_string()))
            }
            Op::Increment(key, delta) => Reply::Count(
                redis::cmd("HINCRBY")
                    .arg(hash)
                    .arg(key)
                    .arg(delta)
                    .query_async(&mut c)
                    .await?,
            ),
            Op::CompareAndSwap { key, expected, new } => {
                let mut script = COMPARE_AND_SWAP.key(hash);
                script.arg(key).arg(u8::from(expected.is_some()));
                script.arg(expected.unwrap_or_default()).arg(new);
                let answer: Vec<redis::Value> = script.invoke_async(&mut c).await?;
                match answer.as_slice() {
                    [redis::Value::Int(1)] => Reply::Swapped(Ok(())),
                    [_] => Reply::Swapped(Err(None)),
                    [_, current] => {
                        Reply::Swapped(Err(Some(redis::from_redis_value_ref(current)?)))
                    }
                    _ => Reply::Swapped(Err(None)),
                }
            }
            Op::GetMany(keys) => {
                if keys.is_empty() {
                    return Ok(Reply::Values(Vec::new()));
                }
                let values: Vec<Option<Vec<u8>>> = redis::cmd("HMGET")
                    .arg(hash)
                    .arg(&keys)
                    .query_async(&mut c)
                    .await?;
                Reply::Values(keys.into_iter().zip(values).collect())
            }
            Op::SetMany(entries) => {
                if !entries.is_empty() {
                    redis::cmd("HSET")
                        .arg(hash)
                        .arg(entries)
                        .query_async::<()>(&mut c)
                        .await?;
                }
                Reply::Done
            }
            Op::DeleteMany(keys) => {
                if !keys.is_empty() {
                    redis::cmd("HDEL")
                        .arg(hash)
                        .arg(keys)
                        .query_async::<()>(&mut c)
                        .await?;
                }
                Reply::Done
            }
        })
    }
}

#[async_trait::async_trait]
impl Backend for Redis {
    async fn run(&self, op: Op) -> Result<Reply, Error> {
        match tokio::time::timeout(REDIS_CALL_TIMEOUT, self.call(op)).await {
            Ok(reply) => reply.map_err(error),
            Err(_) => Err(Error::Unavailable(format!(
                "Redis did not answer within {} ms",
                REDIS_CALL_TIMEOUT.as_millis()
            ))),
        }
    }
}
