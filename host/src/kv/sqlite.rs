//! An SQLite store: one file in WAL mode, one thread of its own.
//!
//! SQLite calls block, so no event loop makes them: each store has a thread
//! that owns the connection, and guests' calls reach it through a bounded
//! queue and come back through a oneshot channel, the guest suspended
//! meanwhile. The thread takes every call waiting (up to 256) into one
//! transaction and answers them after it commits, so a call the guest saw
//! succeed is in the file: a killed process loses none of them (the write-
//! ahead log is synced at checkpoints, `synchronous = NORMAL`; only a power
//! cut can lose the last commits).

use std::path::Path;

use rusqlite::{Connection, ErrorCode, OptionalExtension, params};
use tokio::sync::{mpsc, oneshot};

use super::{Backend, Error, Op, PAGE_KEYS, Reply};

/// Calls that may wait for the store's thread; past it callers wait to queue.
const QUEUE: usize = 1024;
/// Calls run in one transaction at most.
const BATCH: usize = 256;

/// An SQLite store.
#[derive(Debug)]
pub struct Sqlite {
    jobs: mpsc::Sender<Job>,
}

struct Job {
    op: Op,
    reply: oneshot::Sender<Result<Reply, Error>>,
}

impl Sqlite {
    /// Opens (creating if needed) the database at `path` and starts its thread.
    pub fn open(name: &str, path: &Path) -> Result<Self, String> {
        let at = |e: &dyn std::fmt::Display| format!("{}: {e}", path.display());
        if let Some(folder) = path.parent() {
            std::fs::create_dir_all(folder).map_err(|e| at(&e))?;
        }
        let conn = Connection::open(path).map_err(|e| at(&e))?;
        let mode: String = conn
            .query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))
            .map_err(|e| at(&e))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(at(&format!("cannot use WAL mode (got {mode})")));
        }
        conn.execute_batch(
            "PRAGMA synchronous = NORMAL;
             PRAGMA busy_timeout = 5000;
             CREATE TABLE IF NOT EXISTS kv (
                 key TEXT PRIMARY KEY NOT NULL,
                 value BLOB NOT NULL
             ) WITHOUT ROWID;",
        )
        .map_err(|e| at(&e))?;
        let (jobs, queue) = mpsc::channel(QUEUE);
        std::thread::Builder::new()
            .name(format!("cyclone-kv-{name}"))
            .spawn(move || serve(conn, queue))
            .map_err(|e| at(&e))?;
        Ok(Self { jobs })
    }
}

#[async_trait::async_trait]
impl Backend for Sqlite {
    async fn run(&self, op: Op) -> Result<Reply, Error> {
        let stopped = || Error::Unavailable("the store's thread has stopped".into());
        let (reply, answer) = oneshot::channel();
        self.jobs
            .send(Job { op, reply })
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }
}

/// The store's thread: runs waiting calls in batches until the store is dropped.
fn serve(conn: Connection, mut queue: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(BATCH);
    while let Some(job) = queue.blocking_recv() {
        batch.push(job);
        while batch.len() < BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // A caller that has gone (its request ended) needs no answer, and
        // what it asked was never acknowledged: skip it.
        batch.retain(|job| !job.reply.is_closed());
        run_batch(&conn, &mut batch);
    }
}

/// Runs `batch` in one transaction and answers each call once it committed.
fn run_batch(conn: &Connection, batch: &mut Vec<Job>) {
    if batch.is_empty() {
        return;
    }
    if let Err(e) = conn.execute_batch("BEGIN IMMEDIATE") {
        let error = error(&e);
        for job in batch.drain(..) {
            let _ = job.reply.send(Err(error.clone()));
        }
        return;
    }
    let results: Vec<_> = batch.iter().map(|job| apply(conn, &job.op)).collect();
    match conn.execute_batch("COMMIT") {
        Ok(()) => {
            for (job, result) in batch.drain(..).zip(results) {
                let _ = job.reply.send(result);
            }
        }
        Err(e) => {
            // Nothing of the batch is in the file: every call fails.
            let _ = conn.execute_batch("ROLLBACK");
            let error = error(&e);
            for job in batch.drain(..) {
                let _ = job.reply.send(Err(error.clone()));
            }
        }
    }
}

fn apply(conn: &Connection, op: &Op) -> Result<Reply, Error> {
    Ok(match op {
        Op::Get(key) => Reply::Value(get(conn, key)?),
        Op::Set(key, value) => {
            set(conn, key, value)?;
            Reply::Done
        }
        Op::Delete(key) => {
            delete(conn, key)?;
            Reply::Done
        }
        Op::Exists(key) => Reply::Exists(
            conn.prepare_cached("SELECT 1 FROM kv WHERE key = ?1")
                .and_then(|mut s| s.exists(params![key]))
                .map_err(|e| error(&e))?,
        ),
        Op::ListKeys(cursor) => {
            let limit = i64::try_from(PAGE_KEYS + 1).unwrap_or(i64::MAX);
            let mut keys = conn
                .prepare_cached("SELECT key FROM kv WHERE key > ?1 ORDER BY key LIMIT ?2")
                .and_then(|mut s| {
                    s.query_map(params![cursor.as_deref().unwrap_or(""), limit], |row| {
                        row.get::<_, String>(0)
                    })?
                    .collect::<Result<Vec<_>, _>>()
                })
                .map_err(|e| error(&e))?;
            let next = if keys.len() > PAGE_KEYS {
                keys.truncate(PAGE_KEYS);
                keys.last().cloned()
            } else {
                None
            };
            Reply::Keys(keys, next)
        }
        Op::Increment(key, delta) => {
            let current = match get(conn, key)? {
                None => 0,
                Some(value) => counter(key, &value)?,
            };
            let sum = current.checked_add(*delta).ok_or_else(|| {
                Error::Other(format!("incrementing `{key}` by {delta} overflows 64 bits"))
            })?;
            set(conn, key, sum.to_string().as_bytes())?;
            Reply::Count(sum)
        }
        Op::CompareAndSwap { key, expected, new } => {
            let current = get(conn, key)?;
            if current == *expected {
                set(conn, key, new)?;
                Reply::Swapped(Ok(()))
            } else {
                Reply::Swapped(Err(current))
            }
        }
        Op::GetMany(keys) => Reply::Values(
            keys.iter()
                .map(|key| Ok((key.clone(), get(conn, key)?)))
                .collect::<Result<_, Error>>()?,
        ),
        Op::SetMany(entries) => {
            for (key, value) in entries {
                set(conn, key, value)?;
            }
            Reply::Done
        }
        Op::DeleteMany(keys) => {
            for key in keys {
                delete(conn, key)?;
            }
            Reply::Done
        }
    })
}

fn get(conn: &Connection, key: &str) -> Result<Option<Vec<u8>>, Error> {
    conn.prepare_cached("SELECT value FROM kv WHERE key = ?1")
        .and_then(|mut s| s.query_row(params![key], |row| row.get(0)).optional())
        .map_err(|e| error(&e))
}

fn set(conn: &Connection, key: &str, value: &[u8]) -> Result<(), Error> {
    conn.prepare_cached(
        "INSERT INTO kv (key, value) VALUES (?1, ?2)
         ON CONFLICT (key) DO UPDATE SET value = excluded.value",
    )
    .and_then(|mut s| s.execute(params![key, value]))
    .map(drop)
    .map_err(|e| error(&e))
}

fn delete(conn: &Connection, key: &str) -> Result<(), Error> {
    conn.prepare_cached("DELETE FROM kv WHERE key = ?1")
        .and_then(|mut s| s.execute(params![key]))
        .map(drop)
        .map_err(|e| error(&e))
}

/// A counter's value: decimal text.
pub(super) fn counter(key: &str, value: &[u8]) -> Result<i64, Error> {
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| text.parse().ok())
        .ok_or_else(|| Error::Other(format!("the value of `{key}` is not an integer")))
}

fn error(e: &rusqlite::Error) -> Error {
    match e.sqlite_error_code() {
        Some(ErrorCode::DiskFull) => Error::Other(format!("full: {e}")),
        Some(ErrorCode::ReadOnly) => Error::Other(format!("read-only: {e}")),
        Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) => {
            Error::Unavailable(format!("busy: {e}"))
        }
        _ => Error::Other(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> (tempfile::TempDir, Sqlite) {
        let dir = tempfile::tempdir().unwrap();
        let store = Sqlite::open("t", &dir.path().join("a/b/t.sqlite")).unwrap();
        (dir, store)
    }

    #[tokio::test]
    async fn sets_gets_counts_and_swaps() {
        let (_dir, s) = store();
        let run = |op| s.run(op);
        assert_eq!(run(Op::Get("k".into())).await, Ok(Reply::Value(None)));
        run(Op::Set("k".into(), b"v".to_vec())).await.unwrap();
        assert_eq!(
            run(Op::Get("k".into())).await,
            Ok(Reply::Value(Some(b"v".to_vec())))
        );
        assert_eq!(run(Op::Exists("k".into())).await, Ok(Reply::Exists(true)));
        assert_eq!(run(Op::Increment("n".into(), 5)).await, Ok(Reply::Count(5)));
        assert_eq!(
            run(Op::Increment("n".into(), -7)).await,
            Ok(Reply::Count(-2))
        );
        assert!(matches!(
            run(Op::Increment("k".into(), 1)).await,
            Err(Error::Other(_))
        ));
        assert_eq!(
            run(Op::CompareAndSwap {
                key: "k".into(),
                expected: None,
                new: b"x".to_vec()
            })
            .await,
            Ok(Reply::Swapped(Err(Some(b"v".to_vec()))))
        );
        assert_eq!(
            run(Op::CompareAndSwap {
                key: "k".into(),
                expected: Some(b"v".to_vec()),
                new: b"x".to_vec()
            })
            .await,
            Ok(Reply::Swapped(Ok(())))
        );
        run(Op::Delete("k".into())).await.unwrap();
        assert_eq!(run(Op::Exists("k".into())).await, Ok(Reply::Exists(false)));
    }

    #[tokio::test]
    async fn lists_keys_in_pages() {
        let (_dir, s) = store();
        let entries = (0..PAGE_KEYS + 5)
            .map(|i| (format!("key{i:05}"), vec![]))
            .collect();
        s.run(Op::SetMany(entries)).await.unwrap();
        let Ok(Reply::Keys(first, Some(cursor))) = s.run(Op::ListKeys(None)).await else {
            panic!("expected a full page and a cursor");
        };
        assert_eq!(first.len(), PAGE_KEYS);
        let Ok(Reply::Keys(rest, None)) = s.run(Op::ListKeys(Some(cursor))).await else {
            panic!("expected the last page");
        };
        assert_eq!(rest.len(), 5);
        assert_eq!(rest[4], format!("key{:05}", PAGE_KEYS + 4));
    }
}
