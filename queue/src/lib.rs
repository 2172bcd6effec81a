//! asepsis-queue: the job queue, one contract and two implementations, and the notifications
//! that go out beside it.
//!
//! [`Queue`] is what ingest publishes to and the worker runner consumes from. The contract,
//! which the shared test suite checks against both implementations:
//!
//! - **at least once**: a message is delivered until it is acked, retried into a later
//!   delivery, or dead-lettered; a delivery dropped without a decision (a crash, a dropped
//!   consumer) is delivered again with `attempt + 1`;
//! - **publish is durable** when it returns `Ok`: the broker confirmed it, or the spool
//!   committed it to disk;
//! - **retries back off**: [`Delivery::retry`] delivers again after the configured delay for
//!   that attempt, and once a message has been delivered `max_attempts` times it goes to the
//!   dead letters instead, with its reason and attempt count;
//! - **dead letters carry ids, reasons and counts**, never bodies, and can be replayed.
//!
//! Bodies are opaque bytes here: this module knows nothing of jobs or media, and must never
//! log a body.

mod embedded;
pub mod notify;
mod rabbitmq;

use std::time::Duration;

use async_trait::async_trait;

pub use embedded::EmbeddedQueue;
pub use rabbitmq::RabbitQueue;

/// Retry and delivery-limit settings shared by both implementations.
#[derive(Debug, Clone)]
pub struct RetryPolicy {
    /// Deliveries of one message before it is dead-lettered.
    pub max_attempts: u32,
    /// Delay before delivery `n + 1` after a retry of delivery `n` is `retry_delays[n - 1]`;
    /// the last entry repeats.
    pub retry_delays: Vec<Duration>,
}

impl RetryPolicy {
    /// The backoff after the given (1-based) attempt.
    pub fn delay_after(&self, attempt: u32) -> Duration {
        let index = (attempt.max(1) - 1) as usize;
        self.retry_delays
            .get(index)
            .or(self.retry_delays.last())
            .copied()
            .unwrap_or(Duration::ZERO)
    }
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum QueueError {
    /// The broker or spool cannot be reached now; try again later.
    #[error("queue unavailable: {0}")]
    Unavailable(String),
    /// The broker did not confirm a publish in time; the message may or may not be stored.
    #[error("publish not confirmed within {0:?}")]
    ConfirmTimeout(Duration),
    /// The broker refused to store a message.
    #[error("broker refused the message")]
    Nacked,
    /// The delivery's channel or lease is gone (its message will be delivered again).
    #[error("delivery is no longer valid: {0}")]
    Stale(String),
    /// The spool's storage failed.
    #[error("spool storage: {0}")]
    Storage(String),
    /// Another process already serves this spool.
    #[error("spool {0} is in use by another process")]
    Locked(String),
}

/// Counts an operator reads; `None` where the backend cannot tell.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct QueueStats {
    pub ready: u64,
    pub in_flight: Option<u64>,
    pub retrying: u64,
    pub dead: u64,
}

/// A dead-lettered message: its id, reason and attempts, and when it died where the backend
/// recorded it. The body is there for the caller that knows its schema (the operator's views
/// read a job's asset id from it); it is never serialised, and must never be logged.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DeadLetter {
    pub id: String,
    pub reason: String,
    pub attempts: u32,
    /// When it was dead-lettered (ms since the Unix epoch).
    pub dead_at_ms: Option<u64>,
    #[serde(skip)]
    pub body: Vec<u8>,
}

/// Which dead letters to move back to the queue.
#[derive(Debug, Clone)]
pub enum Replay {
    One(String),
    All,
}

#[async_trait]
pub trait Queue: Send + Sync {
    /// Store a message durably and return its id.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`], [`QueueError::ConfirmTimeout`] or [`QueueError::Nacked`]
    /// when durability cannot be promised.
    async fn publish(&self, body: &[u8]) -> Result<String, QueueError>;

    /// Start receiving deliveries, at most `prefetch` of them unsettled at once.
    ///
    /// # Errors
    /// [`QueueError`] when the backend cannot be reached.
    async fn consumer(&self, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError>;

    /// # Errors
    /// [`QueueError`] when the backend cannot be reached.
    async fn stats(&self) -> Result<QueueStats, QueueError>;

    /// # Errors
    /// [`QueueError`] when the backend cannot be reached.
    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, QueueError>;

    /// Move dead letters back to the queue as fresh messages (attempt 1); returns their ids.
    ///
    /// # Errors
    /// [`QueueError`] when the backend cannot be reached.
    async fn replay(&self, which: Replay) -> Result<Vec<String>, QueueError>;
}

#[async_trait]
pub trait Consumer: Send {
    /// The next delivery. Waits while there is none; an implementation that loses its
    /// connection reconnects by itself, so this returns `None` only when the queue is gone.
    async fn next(&mut self) -> Option<Delivery>;
}

/// One delivery of one message. Settle it with exactly one of [`ack`](Delivery::ack),
/// [`retry`](Delivery::retry) or [`dead_letter`](Delivery::dead_letter); dropping it unsettled
/// hands the message back for another delivery.
pub struct Delivery {
    pub id: String,
    pub body: Vec<u8>,
    /// 1 on the first delivery, +1 on every later one (retry, crash, drop).
    pub attempt: u32,
    settle: Box<dyn Settle>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery")
            .field("id", &self.id)
            .field("attempt", &self.attempt)
            .field("body_bytes", &self.body.len())
            .finish()
    }
}

/// What one implementation does to settle a delivery. Dropping an unsettled one must hand
/// the message back.
#[async_trait]
trait Settle: Send {
    async fn ack(self: Box<Self>) -> Result<(), QueueError>;
    async fn retry(self: Box<Self>, attempt: u32, reason: &str) -> Result<(), QueueError>;
    async fn dead_letter(self: Box<Self>, attempt: u32, reason: &str) -> Result<(), QueueError>;
}

impl Delivery {
    /// The work is done and durable: forget the message.
    ///
    /// # Errors
    /// [`QueueError::Stale`] when the delivery can no longer be acked (it will come again).
    pub async fn ack(self) -> Result<(), QueueError> {
        self.settle.ack().await
    }

    /// Deliver again after the backoff for this attempt, or dead-letter once the delivery
    /// limit is reached.
    ///
    /// # Errors
    /// As [`Delivery::ack`].
    pub async fn retry(self, reason: &str) -> Result<(), QueueError> {
        self.settle.retry(self.attempt, reason).await
    }

    /// Never deliver again; keep it, with `reason`, for an operator.
    ///
    /// # Errors
    /// As [`Delivery::ack`].
    pub async fn dead_letter(self, reason: &str) -> Result<(), QueueError> {
        self.settle.dead_letter(self.attempt, reason).await
    }
}

/// The reason recorded when the delivery limit ends a message's retries.
pub(crate) fn limit_reason(attempts: u32, last: &str) -> String {
    format!("delivery limit reached after {attempts} attempts; last: {last}")
}

/// Keep a reason short and on one line: it is shown to operators and stored in headers.
pub(crate) fn clip_reason(reason: &str) -> String {
    let one_line: String = reason
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(500)
        .collect();
    one_line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_uses_last_delay_past_the_list() {
        let p = RetryPolicy {
            max_attempts: 9,
            retry_delays: vec![Duration::from_millis(10), Duration::from_millis(20)],
        };
        assert_eq!(p.delay_after(1), Duration::from_millis(10));
        assert_eq!(p.delay_after(2), Duration::from_millis(20));
        assert_eq!(p.delay_after(7), Duration::from_millis(20));
        assert_eq!(p.delay_after(0), Duration::from_millis(10));
    }

    #[test]
    fn reasons_are_clipped_to_one_line() {
        assert_eq!(clip_reason("a\nb"), "a b");
        assert_eq!(clip_reason(&"x".repeat(900)).len(), 500);
    }
}
