//! Queue throughput in jobs/s: publish with confirm, and consume + ack, for the embedded spool
//! and for RabbitMQ at `ASEPSIS_TEST_AMQP_URL` (its own queue, deleted at the end).
//!
//! `cargo bench --bench queue`; criterion prints `thrpt` in elements (jobs) per second.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use asepsis_common::job::Job;
use asepsis_queue::{EmbeddedQueue, Queue, RabbitQueue, RetryPolicy};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;

/// Publishes in flight at once: the broker's confirms are pipelined, not awaited one by one.
const PUBLISHERS: usize = 64;

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: 5,
        retry_delays: vec![Duration::from_secs(1)],
    }
}

async fn publish_n(queue: &Arc<dyn Queue>, n: u64) {
    let body = Job::new(uuid::Uuid::new_v4()).to_bytes();
    futures::stream::iter(0..n)
        .map(|_| {
            let (queue, body) = (queue.clone(), body.clone());
            async move { queue.publish(&body).await.unwrap() }
        })
        .buffer_unordered(PUBLISHERS)
        .for_each(|_| async {})
        .await;
}

async fn consume_ack_n(queue: &Arc<dyn Queue>, n: u64) {
    let mut consumer = queue.consumer(256).await.unwrap();
    let mut acks = futures::stream::FuturesUnordered::new();
    for _ in 0..n {
        let delivery = consumer.next().await.unwrap();
        acks.push(delivery.ack());
        while acks.len() >= 256 {
            acks.next().await.unwrap().unwrap();
        }
    }
    while let Some(ack) = acks.next().await {
        ack.unwrap();
    }
}

fn bench_backend(
    c: &mut Criterion,
    name: &str,
    queue: Arc<dyn Queue>,
    rt: &tokio::runtime::Runtime,
) {
    let mut group = c.benchmark_group(format!("queue/{name}"));
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    group.measurement_time(Duration::from_secs(5));
    group.warm_up_time(Duration::from_secs(1));
    group.bench_function("publish_confirmed", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let queue = queue.clone();
            async move {
                let started = Instant::now();
                publish_n(&queue, iters).await;
                let took = started.elapsed();
                consume_ack_n(&queue, iters).await; // keep the queue empty between samples
                took
            }
        });
    });
    group.bench_function("consume_ack", |b| {
        b.to_async(rt).iter_custom(|iters| {
            let queue = queue.clone();
            async move {
                publish_n(&queue, iters).await;
                let started = Instant::now();
                consume_ack_n(&queue, iters).await;
                started.elapsed()
            }
        });
    });
    group.finish();
}

fn queues(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let embedded: Arc<dyn Queue> = Arc::new(EmbeddedQueue::open(dir.path(), policy()).unwrap());
    bench_backend(c, "embedded", embedded, &rt);

    let url = std::env::var("ASEPSIS_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into());
    let name = format!("asepsis.bench.{}", uuid::Uuid::new_v4().simple());
    let rabbit = rt
        .block_on(RabbitQueue::connect(
            &url,
            &name,
            policy(),
            Duration::from_secs(10),
        ))
        .expect("RabbitMQ at ASEPSIS_TEST_AMQP_URL");
    bench_backend(c, "rabbitmq", Arc::new(rabbit.clone()), &rt);
    rt.block_on(rabbit.delete_topology()).unwrap();
}

criterion_group!(benches, queues);
criterion_main!(benches);
