//! Delivering notifications ([`Notification`]) to the website and other listeners: published,
//! held, rejected, withdrawn. They carry ids and the event's name only.
//!
//! On RabbitMQ they go to the topic exchange `asepsis.events` with routing key
//! `asset.<event>` (so `asset.published` or `asset.#`); embedded, to an in-process broadcast
//! channel. A notification follows the durable event it announces: delivery is at least once
//! (a redelivered job announces again), so listeners dedupe by `event_hash`.

pub use asepsis_common::notify::Notification;
use async_trait::async_trait;

use crate::{QueueError, RabbitQueue};

#[async_trait]
pub trait Notifier: Send + Sync {
    /// # Errors
    /// [`QueueError`] when the notification could not be handed over.
    async fn notify(&self, note: &Notification) -> Result<(), QueueError>;
}

/// In-process notifications (`asepsis up`): subscribers get every notification sent after
/// they subscribed; with none, notifications are dropped.
pub struct InProcess(tokio::sync::broadcast::Sender<Notification>);

impl InProcess {
    pub fn new() -> Self {
        Self(tokio::sync::broadcast::channel(1024).0)
    }

    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Notification> {
        self.0.subscribe()
    }
}

impl Default for InProcess {
    fn default() -> Self {
        Self::new()
    }
}

#[async_trait]
impl Notifier for InProcess {
    async fn notify(&self, note: &Notification) -> Result<(), QueueError> {
        // No subscriber is not an error.
        let _ = self.0.send(note.clone());
        Ok(())
    }
}

/// Notifications on a RabbitMQ topic exchange.
pub struct Exchange {
    pub queue: RabbitQueue,
    pub exchange: String,
}

#[async_trait]
impl Notifier for Exchange {
    async fn notify(&self, note: &Notification) -> Result<(), QueueError> {
        let body = serde_json::to_vec(note).map_err(|e| QueueError::Storage(e.to_string()))?;
        self.queue
            .announce(&self.exchange, &note.routing_key(), &body)
            .await
    }
}
