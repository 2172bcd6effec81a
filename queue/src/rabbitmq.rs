//! The queue contract on RabbitMQ, through lapin.
//!
//! Topology, declared idempotently on every (re)connect, for a queue named `Q`:
//!
//! | name | kind | role |
//! | --- | --- | --- |
//! | `Q` | quorum queue, `x-delivery-limit`, dead-letters to `Q.dlx` | the jobs |
//! | `Q.retry.<ms>` | quorum queue with `x-message-ttl = ms`, dead-letters back to `Q` | one per backoff delay: a retry waits here, then returns |
//! | `Q.dlx` | direct exchange | where dead letters go, ours and the broker's |
//! | `Q.dead` | classic durable queue bound to `Q.dlx` | the dead letters an operator lists and replays |
//!
//! Messages are persistent and every publish waits for the broker's confirm, bounded by a
//! timeout (a publish can otherwise hang while the broker shuts down). The attempt count
//! travels in the `x-attempt` header (set on publish and on each retry) plus the broker's
//! `x-delivery-count` (deliveries handed back unacked). A lost connection is re-established
//! with exponential backoff by whichever publish or consumer meets it first; deliveries of
//! the old channel can no longer be acked, and the broker delivers them again.
//!
//! [`RabbitQueue::announce`] also publishes notifications to a durable topic exchange (by
//! default `asepsis.events`) on the same confirmed channel.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicGetOptions, BasicNackOptions, BasicPublishOptions,
    BasicQosOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions, QueueDeleteOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
};
use tokio::sync::Mutex;
use uuid::Uuid;

use super::{
    Consumer, DeadLetter, Delivery, Queue, QueueError, QueueStats, Replay, RetryPolicy, Settle,
    clip_reason, limit_reason,
};

const PERSISTENT: u8 = 2;
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// Most dead letters one listing or replay reads.
const DEAD_LETTER_SCAN_LIMIT: usize = 100_000;

#[derive(Clone)]
pub struct RabbitQueue {
    inner: Arc<Inner>,
}

struct Inner {
    url: String,
    connection_name: String,
    names: Names,
    policy: RetryPolicy,
    confirm_timeout: Duration,
    link: Mutex<Option<Arc<Link>>>,
    /// Held while the dead letters are taken for a listing or a replay, and while they are
    /// counted: a count taken meanwhile would miss those held unacked (this process's own
    /// views never see the dead-letter queue half empty).
    dead_letters: Mutex<()>,
}

struct Names {
    main: String,
    dlx: String,
    dead: String,
    /// (delay, queue name), one per distinct delay.
    retry: Vec<(Duration, String)>,
}

/// One connection and its confirm-mode publishing channel.
struct Link {
    conn: Connection,
    publish: Channel,
}

fn unavailable(e: impl std::fmt::Display) -> QueueError {
    QueueError::Unavailable(e.to_string())
}

fn long_str(s: &str) -> AMQPValue {
    AMQPValue::LongString(s.into())
}

fn header_u32(props: &BasicProperties, key: &str) -> Option<u32> {
    let value = props.headers().as_ref()?.inner().get(key)?;
    let n: i64 = match value {
        AMQPValue::ShortShortInt(v) => (*v).into(),
        AMQPValue::ShortShortUInt(v) => (*v).into(),
        AMQPValue::ShortInt(v) => (*v).into(),
        AMQPValue::ShortUInt(v) => (*v).into(),
        AMQPValue::LongInt(v) => (*v).into(),
        AMQPValue::LongUInt(v) => (*v).into(),
        AMQPValue::LongLongInt(v) => *v,
        _ => return None,
    };
    u32::try_from(n).ok()
}

fn header_str(props: &BasicProperties, key: &str) -> Option<String> {
    match props.headers().as_ref()?.inner().get(key)? {
        AMQPValue::LongString(s) => Some(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        AMQPValue::ShortString(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

/// When a dead letter died: our own header, or the broker's `x-death` time (seconds) for one
/// the broker dead-lettered.
fn dead_at_ms(props: &BasicProperties) -> Option<u64> {
    let headers = props.headers().as_ref()?.inner();
    if let Some(AMQPValue::LongLongInt(ms)) = headers.get("x-dead-at-ms") {
        return u64::try_from(*ms).ok();
    }
    let Some(AMQPValue::FieldArray(deaths)) = headers.get("x-death") else {
        return None;
    };
    match deaths.as_slice().first()? {
        AMQPValue::FieldTable(death) => match death.inner().get("time")? {
            AMQPValue::Timestamp(secs) => secs.checked_mul(1000),
            _ => None,
        },
        _ => None,
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

/// Deliveries so far, this one included.
fn attempt_of(props: &BasicProperties) -> u32 {
    header_u32(props, "x-attempt")
        .unwrap_or(1)
        .saturating_add(header_u32(props, "x-delivery-count").unwrap_or(0))
}

fn message_props(id: &str, attempt: u32, reason: Option<&str>) -> BasicProperties {
    let mut headers = FieldTable::default();
    headers.insert("x-attempt".into(), AMQPValue::LongUInt(attempt));
    if let Some(reason) = reason {
        headers.insert("x-reason".into(), long_str(&clip_reason(reason)));
    }
    BasicProperties::default()
        .with_delivery_mode(PERSISTENT)
        .with_message_id(id.into())
        .with_headers(headers)
}

impl RabbitQueue {
    /// Connect to `url` and declare the topology of the queue `queue`.
    ///
    /// # Errors
    /// [`QueueError::Unavailable`] when the broker cannot be reached or refuses the topology
    /// (for example a queue of that name declared with other arguments).
    pub async fn connect(
        url: &str,
        queue: &str,
        policy: RetryPolicy,
        confirm_timeout: Duration,
    ) -> Result<Self, QueueError> {
        let mut delays = policy.retry_delays.clone();
        delays.sort();
        delays.dedup();
        let names = Names {
            main: queue.to_owned(),
            dlx: format!("{queue}.dlx"),
            dead: format!("{queue}.dead"),
            retry: delays
                .into_iter()
                .map(|d| (d, format!("{queue}.retry.{}ms", d.as_millis())))
                .collect(),
        };
        let short_id = Uuid::new_v4().simple().to_string();
        let this = Self {
            inner: Arc::new(Inner {
                url: url.to_owned(),
                connection_name: format!("asepsis {queue} {}", &short_id[..8]),
                names,
                policy,
                confirm_timeout,
                link: Mutex::new(None),
                dead_letters: Mutex::new(()),
            }),
        };
        this.inner.link().await?;
        Ok(this)
    }

    /// The queue's name (its retry and dead-letter queues are named after it).
    pub fn name(&self) -> &str {
        &self.inner.names.main
    }

    /// The name the broker shows for this queue's connection (`connection_name`).
    pub fn connection_name(&self) -> &str {
        &self.inner.connection_name
    }

    /// Delete every queue and exchange of this topology (tests and decommissioning).
    ///
    /// # Errors
    /// [`QueueError::Unavailable`] when the broker cannot be reached.
    pub async fn delete_topology(&self) -> Result<(), QueueError> {
        let link = self.inner.link().await?;
        let channel = link.conn.create_channel().await.map_err(unavailable)?;
        let names = &self.inner.names;
        let queues = std::iter::once(&names.main)
            .chain(std::iter::once(&names.dead))
            .chain(names.retry.iter().map(|(_, n)| n));
        for queue in queues {
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .map_err(unavailable)?;
        }
        channel
            .exchange_delete(names.dlx.as_str().into(), Default::default())
            .await
            .map_err(unavailable)?;
        let _ = channel.close(200, "done".into()).await;
        Ok(())
    }
}

impl RabbitQueue {
    /// Publish `body` to the durable topic exchange `exchange` (declared if missing) under
    /// `routing_key`, persistent and confirmed.
    ///
    /// # Errors
    /// As [`Queue::publish`].
    pub async fn announce(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
    ) -> Result<(), QueueError> {
        let link = self.inner.link().await?;
        let durable = ExchangeDeclareOptions {
            durable: true,
            ..Default::default()
        };
        link.publish
            .exchange_declare(
                exchange.into(),
                ExchangeKind::Topic,
                durable,
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        let id = Uuid::new_v4().to_string();
        self.inner
            .publish_to(exchange, routing_key, body, message_props(&id, 1, None))
            .await
    }
}

impl Inner {
    /// The live link, connecting (once, with backoff, within the confirm timeout) if needed.
    async fn link(&self) -> Result<Arc<Link>, QueueError> {
        let mut slot = self.link.lock().await;
        if let Some(link) = slot.as_ref()
            && link.conn.status().connected()
            && link.publish.status().connected()
        {
            return Ok(link.clone());
        }
        *slot = None;
        let deadline = tokio::time::Instant::now() + self.confirm_timeout;
        let mut backoff = Duration::from_millis(100);
        loop {
            match self.open_link().await {
                Ok(link) => {
                    let link = Arc::new(link);
                    *slot = Some(link.clone());
                    return Ok(link);
                }
                Err(e) if tokio::time::Instant::now() + backoff < deadline => {
                    tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "broker connection failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Forget `link` if it is still the current one, so the next caller reconnects.
    async fn drop_link(&self, link: &Arc<Link>) {
        let mut slot = self.link.lock().await;
        if slot.as_ref().is_some_and(|l| Arc::ptr_eq(l, link)) {
            *slot = None;
        }
    }

    async fn open_link(&self) -> Result<Link, QueueError> {
        let props = ConnectionProperties::default()
            .with_connection_name(self.connection_name.as_str().into());
        let conn = Connection::connect(&self.url, props)
            .await
            .map_err(unavailable)?;
        let publish = conn.create_channel().await.map_err(unavailable)?;
        self.declare(&publish).await?;
        publish
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(unavailable)?;
        tracing::info!(queue = %self.names.main, "connected to broker");
        Ok(Link { conn, publish })
    }

    async fn declare(&self, ch: &Channel) -> Result<(), QueueError> {
        let n = &self.names;
        let durable = QueueDeclareOptions::durable();
        let quorum = || {
            let mut args = FieldTable::default();
            args.insert("x-queue-type".into(), long_str("quorum"));
            args
        };
        ch.exchange_declare(
            n.dlx.as_str().into(),
            ExchangeKind::Direct,
            ExchangeDeclareOptions {
                durable: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
        ch.queue_declare(n.dead.as_str().into(), durable, FieldTable::default())
            .await
            .map_err(unavailable)?;
        ch.queue_bind(
            n.dead.as_str().into(),
            n.dlx.as_str().into(),
            n.main.as_str().into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .map_err(unavailable)?;
        let mut main = quorum();
        let limit = i64::from(self.policy.max_attempts);
        main.insert("x-delivery-limit".into(), AMQPValue::LongLongInt(limit));
        main.insert("x-dead-letter-exchange".into(), long_str(&n.dlx));
        main.insert("x-dead-letter-routing-key".into(), long_str(&n.main));
        ch.queue_declare(n.main.as_str().into(), durable, main)
            .await
            .map_err(unavailable)?;
        for (delay, name) in &n.retry {
            let mut args = quorum();
            let ttl = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
            args.insert("x-message-ttl".into(), AMQPValue::LongLongInt(ttl));
            args.insert("x-dead-letter-exchange".into(), long_str(""));
            args.insert("x-dead-letter-routing-key".into(), long_str(&n.main));
            ch.queue_declare(name.as_str().into(), durable, args)
                .await
                .map_err(unavailable)?;
        }
        Ok(())
    }

    /// Publish one persistent message and wait (bounded) for the broker's confirm. On a
    /// broken link, reconnect and try again until the confirm timeout has passed.
    async fn publish_to(
        &self,
        exchange: &str,
        routing_key: &str,
        body: &[u8],
        props: BasicProperties,
    ) -> Result<(), QueueError> {
        let deadline = tokio::time::Instant::now() + self.confirm_timeout;
        let mut backoff = Duration::from_millis(50);
        loop {
            let link = self.link().await?;
            let sent = link
                .publish
                .basic_publish(
                    exchange.into(),
                    routing_key.into(),
                    BasicPublishOptions::default(),
                    body,
                    props.clone(),
                )
                .await;
            let outcome = match sent {
                Ok(confirm) => match tokio::time::timeout_at(deadline, confirm).await {
                    Ok(Ok(Confirmation::Ack(_) | Confirmation::NotRequested)) => return Ok(()),
                    Ok(Ok(Confirmation::Nack(_))) => return Err(QueueError::Nacked),
                    Ok(Err(e)) => unavailable(e),
                    Err(_) => {
                        self.drop_link(&link).await;
                        return Err(QueueError::ConfirmTimeout(self.confirm_timeout));
                    }
                },
                Err(e) => unavailable(e),
            };
            self.drop_link(&link).await;
            if tokio::time::Instant::now() + backoff >= deadline {
                return Err(outcome);
            }
            tracing::warn!(error = %outcome, "publish failed; reconnecting");
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    fn retry_queue(&self, delay: Duration) -> &str {
        self.names
            .retry
            .iter()
            .find(|(d, _)| *d >= delay)
            .or(self.names.retry.last())
            .map_or(self.names.main.as_str(), |(_, n)| n.as_str())
    }

    /// Read every dead letter on a fresh channel and return them unacked with the channel:
    /// the caller acks those it moves elsewhere, then closes the channel, and the broker
    /// requeues the rest (in order: the dead-letter queue is a classic queue).
    async fn take_dead(&self) -> Result<(Channel, Vec<lapin::message::Delivery>), QueueError> {
        let link = self.link().await?;
        let channel = link.conn.create_channel().await.map_err(unavailable)?;
        let mut taken = Vec::new();
        while taken.len() < DEAD_LETTER_SCAN_LIMIT {
            let got = channel
                .basic_get(
                    self.names.dead.as_str().into(),
                    BasicGetOptions { no_ack: false },
                )
                .await
                .map_err(unavailable)?;
            let Some(message) = got else { break };
            taken.push(message.delivery);
        }
        Ok((channel, taken))
    }
}

async fn close(channel: Channel) {
    if let Err(e) = channel.close(200, "done".into()).await {
        tracing::debug!(error = %e, "closing a channel");
    }
}

fn dead_letter_of(d: &lapin::message::Delivery) -> DeadLetter {
    let props = &d.properties;
    let reason = header_str(props, "x-reason").unwrap_or_else(|| {
        match header_str(props, "x-first-death-reason").as_deref() {
            Some("delivery_limit") => limit_reason(attempt_of(props), "handed back unacked"),
            Some(other) => format!("dead-lettered by the broker: {other}"),
            None => "unknown".into(),
        }
    });
    DeadLetter {
        id: props
            .message_id()
            .as_ref()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        reason,
        attempts: header_u32(props, "x-attempts").unwrap_or_else(|| attempt_of(props)),
        dead_at_ms: dead_at_ms(props),
        body: d.data.clone(),
    }
}

#[async_trait]
impl Queue for RabbitQueue {
    async fn publish(&self, body: &[u8]) -> Result<String, QueueError> {
        let id = Uuid::new_v4().to_string();
        let inner = &self.inner;
        inner
            .publish_to("", &inner.names.main, body, message_props(&id, 1, None))
            .await?;
        Ok(id)
    }

    async fn consumer(&self, prefetch: u16) -> Result<Box<dyn Consumer>, QueueError> {
        let mut consumer = RabbitConsumer {
            inner: self.inner.clone(),
            prefetch: prefetch.max(1),
            live: None,
        };
        consumer.live = Some(consumer.open().await?);
        Ok(Box::new(consumer))
    }

    async fn stats(&self) -> Result<QueueStats, QueueError> {
        let _held = self.inner.dead_letters.lock().await;
        let link = self.inner.link().await?;
        let channel = link.conn.create_channel().await.map_err(unavailable)?;
        let passive = QueueDeclareOptions {
            passive: true,
            ..Default::default()
        };
        let count = |name: String| {
            let channel = channel.clone();
            async move {
                channel
                    .queue_declare(name.as_str().into(), passive, FieldTable::default())
                    .await
                    .map(|q| u64::from(q.message_count()))
                    .map_err(unavailable)
            }
        };
        let names = &self.inner.names;
        let mut stats = QueueStats {
            ready: count(names.main.clone()).await?,
            in_flight: None,
            retrying: 0,
            dead: count(names.dead.clone()).await?,
        };
        for (_, name) in &names.retry {
            stats.retrying += count(name.clone()).await?;
        }
        let _ = channel.close(200, "stats done".into()).await;
        Ok(stats)
    }

    async fn dead_letters(&self) -> Result<Vec<DeadLetter>, QueueError> {
        let _held = self.inner.dead_letters.lock().await;
        let (channel, taken) = self.inner.take_dead().await?;
        let letters = taken.iter().map(dead_letter_of).collect();
        close(channel).await;
        Ok(letters)
    }

    async fn replay(&self, which: Replay) -> Result<Vec<String>, QueueError> {
        let _held = self.inner.dead_letters.lock().await;
        let (channel, taken) = self.inner.take_dead().await?;
        let mut ids = Vec::new();
        let main = &self.inner.names.main;
        for delivery in taken {
            let id = dead_letter_of(&delivery).id;
            if matches!(&which, Replay::One(wanted) if *wanted != id) {
                continue;
            }
            let moved = async {
                let props = message_props(&id, 1, None);
                self.inner
                    .publish_to("", main, &delivery.data, props)
                    .await?;
                delivery
                    .ack(BasicAckOptions::default())
                    .await
                    .map_err(|e| QueueError::Stale(e.to_string()))
            };
            if let Err(e) = moved.await {
                close(channel).await;
                return Err(e);
            }
            ids.push(id);
        }
        close(channel).await;
        Ok(ids)
    }
}

/// Closes its channel when the consumer and every delivery of it are gone; the broker then
/// hands back whatever was delivered on it and not acked.
struct ChannelGuard(Channel);

impl Drop for ChannelGuard {
    fn drop(&mut self) {
        let channel = self.0.clone();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = channel.close(200, "consumer done".into()).await;
            });
        }
    }
}

struct Live {
    channel: Arc<ChannelGuard>,
    stream: lapin::Consumer,
}

struct RabbitConsumer {
    inner: Arc<Inner>,
    prefetch: u16,
    live: Option<Live>,
}

impl RabbitConsumer {
    async fn open(&self) -> Result<Live, QueueError> {
        let link = self.inner.link().await?;
        let channel = link.conn.create_channel().await.map_err(unavailable)?;
        let guard = Arc::new(ChannelGuard(channel.clone()));
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await
            .map_err(unavailable)?;
        let stream = channel
            .basic_consume(
                self.inner.names.main.as_str().into(),
                "".into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(unavailable)?;
        Ok(Live {
            channel: guard,
            stream,
        })
    }
}

#[async_trait]
impl Consumer for RabbitConsumer {
    async fn next(&mut self) -> Option<Delivery> {
        let mut backoff = Duration::from_millis(100);
        loop {
            let Some(live) = self.live.as_mut() else {
                match self.open().await {
                    Ok(live) => {
                        tracing::info!("consumer attached");
                        self.live = Some(live);
                        backoff = Duration::from_millis(100);
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, backoff_ms = backoff.as_millis() as u64, "consumer cannot attach; retrying");
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(MAX_BACKOFF);
                    }
                }
                continue;
            };
            match live.stream.next().await {
                Some(Ok(d)) => {
                    let attempt = attempt_of(&d.properties);
                    let settle = Box::new(RabbitSettle {
                        inner: self.inner.clone(),
                        _channel: live.channel.clone(),
                        id: dead_letter_of(&d).id,
                        data: d.data.clone(),
                        acker: Some(d.acker.clone()),
                    });
                    let delivery = Delivery {
                        id: settle.id.clone(),
                        body: d.data,
                        attempt,
                        settle,
                    };
                    if attempt > self.inner.policy.max_attempts {
                        let reason = limit_reason(attempt - 1, "handed back unacked");
                        if let Err(e) = delivery.dead_letter(&reason).await {
                            tracing::warn!(error = %e, "could not dead-letter an exhausted delivery");
                        }
                        continue;
                    }
                    return Some(delivery);
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "consumer lost its channel; reattaching");
                    self.live = None;
                }
                None => {
                    tracing::warn!("consumer was cancelled; reattaching");
                    self.live = None;
                }
            }
        }
    }
}

struct RabbitSettle {
    inner: Arc<Inner>,
    _channel: Arc<ChannelGuard>,
    id: String,
    data: Vec<u8>,
    /// `None` once settled.
    acker: Option<lapin::Acker>,
}

impl RabbitSettle {
    async fn ack_now(mut self: Box<Self>) -> Result<(), QueueError> {
        let acker = self
            .acker
            .take()
            .ok_or_else(|| QueueError::Stale("already settled".into()))?;
        acker
            .ack(BasicAckOptions::default())
            .await
            .map(|_| ())
            .map_err(|e| QueueError::Stale(e.to_string()))
    }
}

#[async_trait]
impl Settle for RabbitSettle {
    async fn ack(self: Box<Self>) -> Result<(), QueueError> {
        self.ack_now().await
    }

    async fn retry(self: Box<Self>, attempt: u32, reason: &str) -> Result<(), QueueError> {
        if attempt >= self.inner.policy.max_attempts {
            return self
                .dead_letter(attempt, &limit_reason(attempt, reason))
                .await;
        }
        let delay = self.inner.policy.delay_after(attempt);
        let queue = self.inner.retry_queue(delay).to_owned();
        let props = message_props(&self.id, attempt.saturating_add(1), Some(reason));
        self.inner.publish_to("", &queue, &self.data, props).await?;
        self.ack_now().await
    }

    async fn dead_letter(self: Box<Self>, attempt: u32, reason: &str) -> Result<(), QueueError> {
        let mut props = message_props(&self.id, attempt, Some(reason));
        if let Some(headers) = props.headers().clone() {
            let mut headers = headers;
            headers.insert("x-attempts".into(), AMQPValue::LongUInt(attempt));
            headers.insert("x-dead-at-ms".into(), AMQPValue::LongLongInt(now_ms()));
            props = props.with_headers(headers);
        }
        let names = &self.inner.names;
        self.inner
            .publish_to(&names.dlx, &names.main, &self.data, props)
            .await?;
        self.ack_now().await
    }
}

impl Drop for RabbitSettle {
    fn drop(&mut self) {
        let Some(acker) = self.acker.take() else {
            return;
        };
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let requeue = BasicNackOptions {
                    requeue: true,
                    multiple: false,
                };
                let _ = acker.nack(requeue).await;
            });
        }
    }
}
