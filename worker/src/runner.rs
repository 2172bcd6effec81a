//! The generic consume/ack loop: it runs a [`Handler`] over a [`Queue`] and knows nothing of
//! what the jobs do.
//!
//! Guarantees: at most `concurrency` handlers run at once; a delivery is acked only after its
//! handler returned (so only after the handler's results are durable); a body that does not
//! decode is dead-lettered at once as `malformed`, never retried; a handler that panics is
//! dead-lettered, and the loop keeps running. On shutdown it takes no new delivery, lets the
//! running handlers finish and settle, and hands back anything it had not started.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Instant;

use asepsis_queue::{Delivery, Queue, QueueError};
use async_trait::async_trait;
use futures::FutureExt;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

/// What a handler decided about one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Done and durable: ack.
    Done,
    /// Transient failure (store or broker down): deliver again after backoff.
    Retry(String),
    /// The input is bad; the handler has recorded that durably: ack.
    Reject(String),
    /// A bug or an impossible state: dead-letter for an operator.
    Abort(String),
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Retry(_) => "retry",
            Outcome::Reject(_) => "rejected",
            Outcome::Abort(_) => "aborted",
        }
    }
}

#[async_trait]
pub trait Handler: Send + Sync + 'static {
    type Job: Send + 'static;

    /// Turn a body into a job, or say (without quoting the body) why it is not one.
    ///
    /// # Errors
    /// A short reason; the message is then dead-lettered as malformed.
    fn decode(&self, body: &[u8]) -> Result<Self::Job, String>;

    async fn handle(&self, job: Self::Job, attempt: u32) -> Outcome;
}

#[derive(Debug, Clone, Copy)]
pub struct RunnerConfig {
    pub concurrency: usize,
    pub prefetch: u16,
}

/// Consume `queue` with `handler` until `shutdown` is cancelled, then drain.
///
/// # Errors
/// [`QueueError`] when no consumer can be started at all.
pub async fn run<H: Handler>(
    queue: Arc<dyn Queue>,
    handler: Arc<H>,
    config: RunnerConfig,
    shutdown: CancellationToken,
) -> Result<(), QueueError> {
    let mut consumer = queue.consumer(config.prefetch).await?;
    let permits = Arc::new(Semaphore::new(config.concurrency.max(1)));
    let tracker = TaskTracker::new();
    tracing::info!(concurrency = config.concurrency, "worker consuming");
    loop {
        let permit = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
        };
        let delivery = tokio::select! {
            biased;
            () = shutdown.cancelled() => break,
            delivery = consumer.next() => match delivery {
                Some(delivery) => delivery,
                None => break,
            },
        };
        let handler = handler.clone();
        tracker.spawn(async move {
            process(handler.as_ref(), delivery).await;
            drop(permit);
        });
    }
    tracing::info!(
        in_flight = tracker.len(),
        "worker stopping; finishing jobs in hand"
    );
    drop(consumer);
    tracker.close();
    tracker.wait().await;
    tracing::info!("worker stopped");
    Ok(())
}

async fn process<H: Handler>(handler: &H, delivery: Delivery) {
    let span = tracing::info_span!("job", job.id = %delivery.id, job.attempt = delivery.attempt);
    async move {
        let started = Instant::now();
        let job = match handler.decode(&delivery.body) {
            Ok(job) => job,
            Err(why) => {
                tracing::warn!(reason = %why, "malformed job; dead-lettering");
                metrics::counter!("asepsis_jobs_total", "outcome" => "malformed").increment(1);
                settle(delivery.dead_letter(&format!("malformed: {why}")).await);
                return;
            }
        };
        let attempt = delivery.attempt;
        let outcome = AssertUnwindSafe(handler.handle(job, attempt))
            .catch_unwind()
            .await
            .unwrap_or_else(|_| Outcome::Abort("handler panicked".into()));
        let duration_ms = started.elapsed().as_millis() as u64;
        metrics::counter!("asepsis_jobs_total", "outcome" => outcome.label()).increment(1);
        metrics::histogram!("asepsis_job_duration_seconds").record(started.elapsed().as_secs_f64());
        match outcome {
            Outcome::Done => {
                tracing::info!(duration_ms, "job done");
                settle(delivery.ack().await);
            }
            Outcome::Reject(reason) => {
                tracing::info!(duration_ms, %reason, "job rejected");
                settle(delivery.ack().await);
            }
            Outcome::Retry(reason) => {
                tracing::warn!(duration_ms, %reason, "job will be retried");
                settle(delivery.retry(&reason).await);
            }
            Outcome::Abort(reason) => {
                tracing::error!(duration_ms, %reason, "job aborted; dead-lettering");
                settle(delivery.dead_letter(&reason).await);
            }
        }
    }
    .instrument(span)
    .await;
}

fn settle(result: Result<(), QueueError>) {
    if let Err(e) = result {
        // The message comes back (a lost channel or lease); the job must be idempotent.
        tracing::warn!(error = %e, "could not settle a delivery; it will be delivered again");
    }
}
