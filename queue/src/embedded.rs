//! The embedded spool: the queue contract on one machine, with no server.
//!
//! Messages live in one SQLite database (`spool.sqlite3` under the given directory, WAL mode,
//! `synchronous = FULL`): a publish returns only after its row is committed to disk. A row is
//! `ready` (deliverable once `due_ms` has passed: a retry sets it in the future), `in_flight`
//! (handed to a consumer; `attempts` already counts that delivery) or `dead` (with a reason;
//! its `due_ms` is then when it died).
//!
//! One process *serves* the spool at a time ([`EmbeddedQueue::open`] takes `spool.lock`), and
//! when it starts it hands every `in_flight` row back: those were held by a process that died
//! mid-job, so nothing is lost across a crash. Admin tools ([`EmbeddedQueue::open_admin`])
//! may read counts and replay dead letters beside a running server; a serving process polls
//! at least every [`IDLE_POLL`] so it sees their changes.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use uuid::Uuid;

use super::{
    Consumer, DeadLetter, Delivery, Queue, QueueError, QueueStats, Replay, RetryPolicy, Settle,
    clip_reason, limit_reason,
};

/// Longest a waiting consumer goes without looking at the spool.
pub const IDLE_POLL: Duration = Duration::from_millis(500);

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS messages (
    seq      INTEGER PRIMARY KEY AUTOINCREMENT,
    id       TEXT    NOT NULL UNIQUE,
    body     BLOB    NOT NULL,
    state    TEXT    NOT NULL CHECK (state IN ('ready', 'in_flight', 'dead')),
    due_ms   INTEGER NOT NULL,
    attempts INTEGER NOT NULL,
    reason   TEXT
);
CREATE INDEX IF NOT EXISTS messages_due ON messages (state, due_ms, seq);
";

#[derive(Clone)]
pub struct EmbeddedQueue {
    inner: Arc<Inner>,
}

struct Inner {
    db: Mutex<Connection>,
    policy: RetryPolicy,
    wake: Notify,
    _lock: Option<File>,
}

fn storage(e: impl std::fmt::Display) -> QueueError {
    QueueError::Storage(e.to_string())
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl EmbeddedQueue {
    /// Open the spool in `dir` (created if missing) to serve it: take its lock, and hand back
    /// every delivery a dead process left in flight.
    ///
    /// # Errors
    /// [`QueueError::Locked`] when another process serves it; [`QueueError::Storage`] when the
    /// database cannot be opened.
    pub fn open(dir: &Path, policy: RetryPolicy) -> Result<Self, QueueError> {
        std::fs::create_dir_all(dir).map_err(storage)?;
        let lock_path = dir.join("spool.lock");
        let lock = File::create(&lock_path).map_err(storage)?;
        lock.try_lock()
            .map_err(|_| QueueError::Locked(dir.display().to_string()))?;
        let queue = Self::connect(dir, policy, Some(lock))?;
        queue.with_db(|db, policy| {
            let tx = db.transaction()?;
            tx.execute(
                "UPDATE messages SET state = 'dead', reason = ?1, due_ms = ?3
                 WHERE state = 'in_flight' AND attempts >= ?2",
                params![
                    limit_reason(policy.max_attempts, "process stopped mid-job"),
                    policy.max_attempts,
                    now_ms()
                ],
            )?;
            tx.execute(
                "UPDATE messages SET state = 'ready', due_ms = ?1 WHERE state = 'in_flight'",
                params![now_ms()],
            )?;
            tx.commit()
        })?;
        Ok(queue)
    }

    /// Open the spool in `dir` for counts, dead letters and replay beside a serving process.
    ///
    /// # Errors
    /// [`QueueError::Storage`] when the database cannot be opened.
    pub fn open_admin(dir: &Path, policy: RetryPolicy) -> Result<Self, QueueError> {
        if !dir.join("spool.sqlite3").is_file() {
            return Err(QueueError::Storage(format!(
                "no spool in {} (start `asepsis up` first, or pass --data)",
                dir.display()
            )));
        }
        Self::connect(dir, policy, None)
    }

    fn connect(dir: &Path, policy: RetryPolicy, lock: Option<File>) -> Result<Self, QueueError> {
        let path: PathBuf = dir.join("spool.sqlite3");
        let db = Connection::open(&path).map_err(storage)?;
        db.busy_timeout(Duration::from_secs(10)).map_err(storage)?;
        db.pragma_update(None, "journal_mode", "WAL")
            .map_err(storage)?;
        db.pragma_update(None, "synchronous", "FULL")
            .map_err(storage)?;
        db.execute_batch(SCHEMA).map_err(storage)?;
        Ok(Self {
            inner: Arc::new(Inner {
                db: Mutex::new(db),
                policy,
                wake: Notify::new(),
                _lock: lock,
            }),
        })
    }

    fn with_db<T>(
        &self,
        f: impl FnOnce(&mut Connection, &RetryPolicy) -> rusqlite::Result<T>,
    ) -> Result<T, QueueError> {
        self.inner.with_db(f)
    }

    /// Run `f` on the database off the async threads.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut Connection, &RetryPolicy) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, QueueError> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || inner.with_db(f))
            .await
            .map_err(storage)?
    }
}

impl Inner {
    fn with_db<T>(
        &self,
        f: impl FnOnce(&mut Connection, &RetryPolicy) -> rusqlite::Result<T>,
    ) -> Result<T, QueueError> {
        let mut db = self
            .db
            .lock()
            .map_err(|_| QueueError::Storage("spool lock poisoned".into()))?;
        f(&mut db, &self.policy).map_err(storage)
    }

    /// Put an in-flight message back: ready again after `delay`, or dead once it has used
    /// its attempts.
    fn release(
        &self,
        seq: i64,
        attempt: u32,
        delay: Duration,
        why: &str,
    ) -> Result<(), QueueError> {
        let max = self.policy.max_attempts;
        let why = clip_reason(why);
        self.with_db(|db, _| {
            if attempt >= max {
                db.execute(
                    "UPDATE messages SET state = 'dead', reason = ?2, due_ms = ?3
                     WHERE seq = ?1 AND state = 'in_flight'",
                    params![seq, limit_reason(attempt, &why), now_ms()],
                )
            } else {
                db.execute(
                    "UPDATE messages SET state = 'ready', due_ms = ?2, reason = ?3
                     WHERE seq = ?1 AND state = 'in_flight'",
                    params![seq, now_ms().saturating_add(ms(delay)), why],
                )
            }
        })?;
        self.wake.notify_waiters();
        Ok(())
    }
}

#[async_trait]
impl Queue for EmbeddedQueue {
    async fn publish(&self, body: &[u8]) -> Result<String, QueueError> {
        let id = Uuid::new_v4().to_string();
        let body = body.to_vec();
        let row_id = id.clone();
        self.blocking(move |db, _| {
            db.execute(
                "INSERT INTO messages (id, body, state, due_ms, attempts)
                 VALUES (?1, ?2, 'ready', ?3, 0)",
                params![row_id, body, now_ms()],
            )
        })
        .await?;
        self.inner.wake.notify_waiters();
        Ok(id)
    }

    async fn consumer(&self, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError> {
        Ok(Box::new(EmbeddedConsumer {
            queue: self.clone(),
            permits: Arc::new(Semaphore::new(usize::from(prefetch.max(1)))),
        }))
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        self.blocking(|db, _| {
            let mut stats = QueueStats {
                in_flight: Some(0),
                ..QueueStats::default()
            };
            let mut query = db.prepare(
                "SELECT state, due_ms > ?1, COUNT(*) FROM messages GROUP BY state, due_ms > ?1",
            )?;
            let rows = query.query_map(params![now_ms()], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, bool>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })?;
            for row in rows {
                let (state, later, n) = row?;
                let n = u64::try_from(n).unwrap_or(0);
                match (state.as_str(), later) {
                    ("ready", false) => stats.ready += n,
                    ("ready", true) => stats.retrying += n,
                    ("in_flight", _) => {
                        stats.in_flight = Some(stats.in_flight.unwrap_or(0) + n);
                    }
                    _ => stats.dead += n,
                }
            }
            Ok(stats)
        })
        .await
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, QueueError> {
        self.blocking(|db, _| {
            let mut query = db.prepare(
                "SELECT id, COALESCE(reason, ''), attempts, due_ms, body FROM messages
                 WHERE state = 'dead' ORDER BY seq",
            )?;
            let rows = query.query_map([], |r| {
                Ok(DeadLetter {
                    id: r.get(0)?,
                    reason: r.get(1)?,
                    attempts: r.get(2)?,
                    dead_at_ms: r
                        .get::<_, i64>(3)
                        .ok()
                        .and_then(|ms| u64::try_from(ms).ok()),
                    body: r.get(4)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    async fn replay(&self, which: Replay) -> Result<Vec<String>, QueueError> {
        let ids = self
            .blocking(move |db, _| {
                // `?2` is NULL for all dead letters, or the one id to replay.
                let id = match which {
                    Replay::All => None,
                    Replay::One(id) => Some(id),
                };
                let mut query = db.prepare(
                    "UPDATE messages SET state = 'ready', due_ms = ?1, attempts = 0, reason = NULL
                     WHERE state = 'dead' AND (?2 IS NULL OR id = ?2) RETURNING id",
                )?;
                let rows = query.query_map(params![now_ms(), id], |r| r.get(0))?;
                rows.collect()
            })
            .await?;
        self.inner.wake.notify_waiters();
        Ok(ids)
    }
}

struct EmbeddedConsumer {
    queue: EmbeddedQueue,
    permits: Arc<Semaphore>,
}

/// A message taken for delivery.
struct Taken {
    seq: i64,
    id: String,
    body: Vec<u8>,
    attempt: u32,
}

enum Poll {
    Got(Taken),
    /// Nothing ready; the earliest retry falls due at this time, if any is waiting.
    Empty(Option<i64>),
}

impl EmbeddedConsumer {
    async fn take(&self) -> Result<Poll, QueueError> {
        self.queue
            .blocking(|db, _| {
                let tx = db.transaction()?;
                let now = now_ms();
                let row = tx
                    .query_row(
                        "SELECT seq, id, body, attempts FROM messages
                         WHERE state = 'ready' AND due_ms <= ?1 ORDER BY due_ms, seq LIMIT 1",
                        params![now],
                        |r| {
                            Ok(Taken {
                                seq: r.get(0)?,
                                id: r.get(1)?,
                                body: r.get(2)?,
                                attempt: r.get::<_, u32>(3)?.saturating_add(1),
                            })
                        },
                    )
                    .optional()?;
                let poll = match row {
                    Some(taken) => {
                        tx.execute(
                            "UPDATE messages SET state = 'in_flight', attempts = ?2 WHERE seq = ?1",
                            params![taken.seq, taken.attempt],
                        )?;
                        Poll::Got(taken)
                    }
                    None => Poll::Empty(tx.query_row(
                        "SELECT MIN(due_ms) FROM messages WHERE state = 'ready'",
                        [],
                        |r| r.get(0),
                    )?),
                };
                tx.commit()?;
                Ok(poll)
            })
            .await
    }
}

#[async_trait]
impl Consumer for EmbeddedConsumer {
    async fn next(&mut self) -> Option<Delivery> {
        let permit = self.permits.clone().acquire_owned().await.ok()?;
        let mut failures = 0u32;
        loop {
            let woken = self.queue.inner.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            let wait = match self.take().await {
                Ok(Poll::Got(t)) => {
                    return Some(Delivery {
                        id: t.id,
                        body: t.body,
                        attempt: t.attempt,
                        settle: Box::new(EmbeddedSettle {
                            inner: Some(self.queue.inner.clone()),
                            seq: t.seq,
                            attempt: t.attempt,
                            _permit: permit,
                        }),
                    });
                }
                Ok(Poll::Empty(due)) => {
                    failures = 0;
                    let until_due = due.map(|due| due.saturating_sub(now_ms()).max(0));
                    until_due
                        .map(|d| Duration::from_millis(u64::try_from(d).unwrap_or(0)))
                        .map_or(IDLE_POLL, |d| d.min(IDLE_POLL))
                }
                Err(e) => {
                    failures = failures.saturating_add(1);
                    tracing::warn!(error = %e, failures, "spool read failed; retrying");
                    IDLE_POLL
                }
            };
            let _ = tokio::time::timeout(wait, woken).await;
        }
    }
}

struct EmbeddedSettle {
    /// `None` once settled.
    inner: Option<Arc<Inner>>,
    seq: i64,
    attempt: u32,
    _permit: OwnedSemaphorePermit,
}

impl EmbeddedSettle {
    async fn run(
        mut self: Box<Self>,
        f: impl FnOnce(&Inner, i64) -> Result<(), QueueError> + Send + 'static,
    ) -> Result<(), QueueError> {
        let inner = self
            .inner
            .take()
            .ok_or_else(|| QueueError::Stale("already settled".into()))?;
        let seq = self.seq;
        tokio::task::spawn_blocking(move || f(&inner, seq))
            .await
            .map_err(storage)?
    }
}

#[async_trait]
impl Settle for EmbeddedSettle {
    async fn ack(self: Box<Self>) -> Result<(), QueueError> {
        self.run(|inner, seq| {
            inner.with_db(|db, _| {
                db.execute(
                    "DELETE FROM messages WHERE seq = ?1 AND state = 'in_flight'",
                    params![seq],
                )
            })?;
            Ok(())
        })
        .await
    }

    async fn retry(self: Box<Self>, attempt: u32, reason: &str) -> Result<(), QueueError> {
        let reason = reason.to_owned();
        self.run(move |inner, seq| {
            let delay = inner.policy.delay_after(attempt);
            inner.release(seq, attempt, delay, &reason)
        })
        .await
    }

    async fn dead_letter(self: Box<Self>, _attempt: u32, reason: &str) -> Result<(), QueueError> {
        let reason = clip_reason(reason);
        self.run(move |inner, seq| {
            inner.with_db(|db, _| {
                db.execute(
                    "UPDATE messages SET state = 'dead', reason = ?2, due_ms = ?3
                     WHERE seq = ?1 AND state = 'in_flight'",
                    params![seq, reason, now_ms()],
                )
            })?;
            Ok(())
        })
        .await
    }
}

impl Drop for EmbeddedSettle {
    fn drop(&mut self) {
        let Some(inner) = self.inner.take() else {
            return;
        };
        let (seq, attempt) = (self.seq, self.attempt);
        let release = move || {
            if let Err(e) =
                inner.release(seq, attempt, Duration::ZERO, "released without a decision")
            {
                tracing::warn!(error = %e, "could not hand back an unsettled delivery; it returns at restart");
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(rt) => drop(rt.spawn_blocking(release)),
            Err(_) => release(),
        }
    }
}
