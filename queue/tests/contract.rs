//! The queue contract, run against both implementations: the embedded spool and RabbitMQ on
//! the real broker at `ASEPSIS_TEST_AMQP_URL` (never skipped). Each RabbitMQ test declares
//! its own uniquely named queues and deletes them at the end.
//!
//! Tests wait by polling with a deadline, never by sleeping, and assert on outcomes only.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use asepsis_queue::{Consumer, EmbeddedQueue, Queue, RabbitQueue, Replay, RetryPolicy};
use asepsis_worker::runner::{self, Handler, Outcome, RunnerConfig};
use async_trait::async_trait;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

const DEADLINE: Duration = Duration::from_secs(60);
const MAX_ATTEMPTS: u32 = 3;

fn policy() -> RetryPolicy {
    RetryPolicy {
        max_attempts: MAX_ATTEMPTS,
        retry_delays: vec![Duration::from_millis(20), Duration::from_millis(40)],
    }
}

fn amqp_url() -> String {
    std::env::var("ASEPSIS_TEST_AMQP_URL")
        .unwrap_or_else(|_| "amqp://guest:guest@127.0.0.1:5672/%2f".into())
}

/// Fail the test if `fut` does not finish within [`DEADLINE`].
async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, fut)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Poll `check` until it returns `Some`, with a deadline.
async fn eventually<T, F: Future<Output = Option<T>>>(
    what: &str,
    mut check: impl FnMut() -> F,
) -> T {
    within(what, async {
        loop {
            if let Some(v) = check().await {
                return v;
            }
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

struct Fixture {
    queue: Arc<dyn Queue>,
    rabbit: Option<RabbitQueue>,
    _dir: Option<tempfile::TempDir>,
}

impl Fixture {
    async fn embedded() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let queue = EmbeddedQueue::open(dir.path(), policy()).unwrap();
        Self {
            queue: Arc::new(queue),
            rabbit: None,
            _dir: Some(dir),
        }
    }

    async fn rabbit() -> Self {
        let name = format!("asepsis.test.{}", uuid::Uuid::new_v4().simple());
        let queue = RabbitQueue::connect(&amqp_url(), &name, policy(), Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| panic!("RabbitMQ at ASEPSIS_TEST_AMQP_URL must answer: {e}"));
        Self {
            queue: Arc::new(queue.clone()),
            rabbit: Some(queue),
            _dir: None,
        }
    }

    async fn finish(mut self) {
        if let Some(rabbit) = self.rabbit.take() {
            rabbit.delete_topology().await.unwrap();
        }
    }

    async fn consumer(&self) -> Box<dyn Consumer> {
        self.queue.consumer(8).await.unwrap()
    }
}

/// A test that panicked before `finish` still removes its queues.
impl Drop for Fixture {
    fn drop(&mut self) {
        if let Some(rabbit) = self.rabbit.take() {
            // Its connection is driven by this test's runtime, which is blocked here: use a
            // fresh one on a runtime of its own.
            let name = rabbit.name().to_owned();
            let cleanup = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build();
                if let Ok(rt) = rt {
                    rt.block_on(async {
                        let timeout = Duration::from_secs(5);
                        if let Ok(q) =
                            RabbitQueue::connect(&amqp_url(), &name, policy(), timeout).await
                        {
                            let _ = q.delete_topology().await;
                        }
                    });
                }
            });
            let _ = cleanup.join();
        }
    }
}

macro_rules! contract {
    ($($case:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test]
                async fn $case() {
                    let fx = super::Fixture::embedded().await;
                    super::$case(&fx).await;
                    fx.finish().await;
                }
            )*
        }
        mod rabbitmq {
            $(
                #[tokio::test]
                async fn $case() {
                    let fx = super::Fixture::rabbit().await;
                    super::$case(&fx).await;
                    fx.finish().await;
                }
            )*
        }
    };
}

contract!(
    publish_consume_ack,
    retry_redelivers_after_backoff_with_attempt_plus_one,
    delivery_limit_dead_letters_with_reason,
    malformed_message_is_dead_lettered_at_once,
    dropped_delivery_is_redelivered,
    runner_maps_outcomes,
    replay_moves_a_dead_letter_back,
    shutdown_finishes_in_flight_and_hands_back_the_rest,
);

async fn publish_consume_ack(fx: &Fixture) {
    let one = fx.queue.publish(b"one").await.unwrap();
    let two = fx.queue.publish(b"two").await.unwrap();
    let mut consumer = fx.consumer().await;
    let d1 = within("first delivery", consumer.next()).await.unwrap();
    let d2 = within("second delivery", consumer.next()).await.unwrap();
    assert_eq!(
        (d1.id.as_str(), d1.body.as_slice(), d1.attempt),
        (one.as_str(), &b"one"[..], 1)
    );
    assert_eq!(
        (d2.id.as_str(), d2.body.as_slice(), d2.attempt),
        (two.as_str(), &b"two"[..], 1)
    );
    d1.ack().await.unwrap();
    d2.ack().await.unwrap();
    // Acked messages never come back: the next delivery is the next message.
    let three = fx.queue.publish(b"three").await.unwrap();
    let d3 = within("third delivery", consumer.next()).await.unwrap();
    assert_eq!(d3.id, three);
    d3.ack().await.unwrap();
    let stats = fx.queue.stats().await.unwrap();
    assert_eq!((stats.ready, stats.retrying, stats.dead), (0, 0, 0));
}

async fn retry_redelivers_after_backoff_with_attempt_plus_one(fx: &Fixture) {
    let id = fx.queue.publish(b"job").await.unwrap();
    let mut consumer = fx.consumer().await;
    let first = within("delivery", consumer.next()).await.unwrap();
    assert_eq!(first.attempt, 1);
    first.retry("store unavailable").await.unwrap();
    let again = within("redelivery", consumer.next()).await.unwrap();
    assert_eq!((again.id.as_str(), again.attempt), (id.as_str(), 2));
    assert_eq!(again.body, b"job");
    again.ack().await.unwrap();
}

async fn delivery_limit_dead_letters_with_reason(fx: &Fixture) {
    let id = fx.queue.publish(b"doomed").await.unwrap();
    let mut consumer = fx.consumer().await;
    for attempt in 1..=MAX_ATTEMPTS {
        let d = within("delivery", consumer.next()).await.unwrap();
        assert_eq!((d.id.as_str(), d.attempt), (id.as_str(), attempt));
        d.retry("still failing").await.unwrap();
    }
    let dead = fx.queue.dead_letters().await.unwrap();
    assert_eq!(dead.len(), 1, "{dead:?}");
    assert_eq!(
        (dead[0].id.as_str(), dead[0].attempts),
        (id.as_str(), MAX_ATTEMPTS)
    );
    assert!(
        dead[0].reason.contains("delivery limit"),
        "{}",
        dead[0].reason
    );
    assert!(
        dead[0].reason.contains("still failing"),
        "{}",
        dead[0].reason
    );
    eventually("the dead-letter count", || async {
        (fx.queue.stats().await.unwrap().dead == 1).then_some(())
    })
    .await;
}

/// Counts calls and answers by body: `ok`, `reject`, `abort`, `retry-once`, `hold`.
#[derive(Default)]
struct ScriptedHandler {
    done: Mutex<Vec<(String, u32)>>,
    started: Notify,
    gate: Notify,
}

#[async_trait]
impl Handler for ScriptedHandler {
    type Job = String;

    fn decode(&self, body: &[u8]) -> Result<String, String> {
        let text = std::str::from_utf8(body).map_err(|_| "not UTF-8".to_owned())?;
        if text.starts_with('{') {
            return Err("not a test job".into());
        }
        Ok(text.to_owned())
    }

    async fn handle(&self, job: String, attempt: u32) -> Outcome {
        self.started.notify_one();
        let outcome = match job.as_str() {
            "reject" => Outcome::Reject("bad input".into()),
            "abort" => Outcome::Abort("boom".into()),
            "retry-once" if attempt == 1 => Outcome::Retry("flaky".into()),
            "hold" => {
                self.gate.notified().await;
                Outcome::Done
            }
            _ => Outcome::Done,
        };
        if outcome != Outcome::Abort("boom".into()) && !matches!(outcome, Outcome::Retry(_)) {
            self.done.lock().unwrap().push((job, attempt));
        }
        outcome
    }
}

struct Running {
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    fn start(queue: Arc<dyn Queue>, handler: Arc<ScriptedHandler>, concurrency: usize) -> Self {
        let shutdown = CancellationToken::new();
        let config = RunnerConfig {
            concurrency,
            prefetch: 4,
        };
        let stop = shutdown.clone();
        let task = tokio::spawn(async move {
            runner::run(queue, handler, config, stop).await.unwrap();
        });
        Self { shutdown, task }
    }

    async fn stop(self) {
        self.shutdown.cancel();
        within("runner to stop", self.task).await.unwrap();
    }
}

async fn malformed_message_is_dead_lettered_at_once(fx: &Fixture) {
    let handler = Arc::new(ScriptedHandler::default());
    let id = fx.queue.publish(b"{\"not\": \"a job\"}").await.unwrap();
    let running = Running::start(fx.queue.clone(), handler.clone(), 2);
    let dead = eventually("the dead letter", || async {
        let dead = fx.queue.dead_letters().await.unwrap();
        (!dead.is_empty()).then_some(dead)
    })
    .await;
    running.stop().await;
    assert_eq!(dead.len(), 1);
    assert_eq!((dead[0].id.as_str(), dead[0].attempts), (id.as_str(), 1));
    // The operator's views read the body's ids and show when it died.
    assert_eq!(dead[0].body, b"{\"not\": \"a job\"}");
    assert!(dead[0].dead_at_ms.is_some_and(|ms| ms > 1_700_000_000_000));
    assert!(
        dead[0].reason.starts_with("malformed"),
        "{}",
        dead[0].reason
    );
    assert!(
        handler.done.lock().unwrap().is_empty(),
        "the handler never saw it"
    );
}

async fn dropped_delivery_is_redelivered(fx: &Fixture) {
    let id = fx.queue.publish(b"job").await.unwrap();
    {
        let mut consumer = fx.consumer().await;
        let d = within("delivery", consumer.next()).await.unwrap();
        assert_eq!(d.attempt, 1);
        drop(d);
        drop(consumer);
    }
    let mut consumer = fx.consumer().await;
    let again = within("redelivery", consumer.next()).await.unwrap();
    assert_eq!((again.id.as_str(), again.attempt), (id.as_str(), 2));
    again.ack().await.unwrap();
}

async fn runner_maps_outcomes(fx: &Fixture) {
    let handler = Arc::new(ScriptedHandler::default());
    for body in ["ok", "retry-once", "reject", "abort"] {
        fx.queue.publish(body.as_bytes()).await.unwrap();
    }
    let running = Running::start(fx.queue.clone(), handler.clone(), 2);
    let dead = eventually("three handled and one dead", || async {
        let done = handler.done.lock().unwrap().len();
        let dead = fx.queue.dead_letters().await.unwrap();
        (done == 3 && dead.len() == 1).then_some(dead)
    })
    .await;
    let stats = eventually("the queue to drain", || async {
        let stats = fx.queue.stats().await.unwrap();
        let drained = stats.ready == 0 && stats.retrying == 0;
        (drained && stats.in_flight.unwrap_or(0) == 0 && stats.dead == 1).then_some(stats)
    })
    .await;
    running.stop().await;
    let mut done = handler.done.lock().unwrap().clone();
    done.sort();
    assert_eq!(
        done,
        vec![
            ("ok".into(), 1),
            ("reject".into(), 1),
            ("retry-once".into(), 2)
        ]
    );
    assert_eq!(dead[0].reason, "boom");
    assert_eq!(stats.dead, 1);
}

async fn replay_moves_a_dead_letter_back(fx: &Fixture) {
    let id = fx.queue.publish(b"job").await.unwrap();
    let other = fx.queue.publish(b"other").await.unwrap();
    let mut consumer = fx.consumer().await;
    for _ in 0..2 {
        let d = within("delivery", consumer.next()).await.unwrap();
        d.dead_letter("needs a fix").await.unwrap();
    }
    assert_eq!(fx.queue.dead_letters().await.unwrap().len(), 2);
    let replayed = fx.queue.replay(Replay::One(id.clone())).await.unwrap();
    assert_eq!(replayed, vec![id.clone()]);
    let again = within("replayed delivery", consumer.next()).await.unwrap();
    assert_eq!(
        (again.id.as_str(), again.attempt, again.body.as_slice()),
        (id.as_str(), 1, &b"job"[..])
    );
    again.ack().await.unwrap();
    let left = fx.queue.dead_letters().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, other);
    assert_eq!(fx.queue.replay(Replay::All).await.unwrap(), vec![other]);
    assert!(fx.queue.dead_letters().await.unwrap().is_empty());
    let last = within("replayed delivery", consumer.next()).await.unwrap();
    last.ack().await.unwrap();
}

async fn shutdown_finishes_in_flight_and_hands_back_the_rest(fx: &Fixture) {
    let handler = Arc::new(ScriptedHandler::default());
    for body in ["hold", "later-1", "later-2"] {
        fx.queue.publish(body.as_bytes()).await.unwrap();
    }
    let running = Running::start(fx.queue.clone(), handler.clone(), 1);
    within("the first job to start", handler.started.notified()).await;
    running.shutdown.cancel();
    handler.gate.notify_one();
    within("runner to stop", running.task).await.unwrap();
    assert_eq!(*handler.done.lock().unwrap(), vec![("hold".to_owned(), 1)]);
    // The jobs it never started are handed back, and nothing is lost.
    let mut consumer = fx.consumer().await;
    let mut rest = HashSet::new();
    for _ in 0..2 {
        let d = within("a handed-back job", consumer.next()).await.unwrap();
        rest.insert(String::from_utf8(d.body.clone()).unwrap());
        d.ack().await.unwrap();
    }
    assert_eq!(rest, HashSet::from(["later-1".into(), "later-2".into()]));
    assert_eq!(fx.queue.stats().await.unwrap().dead, 0);
}

mod embedded_only {
    use super::*;
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};

    const CHILD_DIR: &str = "ASEPSIS_TEST_CRASH_CHILD_DIR";

    /// Not a test on its own: the child process of `killed_mid_job_is_delivered_after_restart`
    /// (a no-op unless that test starts it).
    #[tokio::test]
    async fn crash_child() {
        let Ok(dir) = std::env::var(CHILD_DIR) else {
            return;
        };
        let queue = EmbeddedQueue::open(std::path::Path::new(&dir), policy()).unwrap();
        let mut consumer = queue.consumer(1).await.unwrap();
        let d = consumer.next().await.unwrap();
        println!("HOLDING {} {}", d.id, d.attempt);
        std::future::pending::<()>().await;
    }

    #[tokio::test]
    async fn killed_mid_job_is_delivered_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        let id = {
            let queue = EmbeddedQueue::open(dir.path(), policy()).unwrap();
            queue.publish(b"job").await.unwrap()
        };
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["embedded_only::crash_child", "--exact", "--nocapture"])
            .env(CHILD_DIR, dir.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let line = tokio::task::spawn_blocking(move || {
            BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
                .find(|l| l.starts_with("HOLDING "))
        });
        let line = within("the child to take the job", line)
            .await
            .unwrap()
            .unwrap();
        assert_eq!(line, format!("HOLDING {id} 1"));
        child.kill().unwrap(); // SIGKILL: no chance to hand anything back
        child.wait().unwrap();

        let admin = EmbeddedQueue::open_admin(dir.path(), policy()).unwrap();
        assert_eq!(admin.stats().await.unwrap().in_flight, Some(1));
        drop(admin);

        let queue = EmbeddedQueue::open(dir.path(), policy()).unwrap();
        let mut consumer = queue.consumer(1).await.unwrap();
        let again = within("redelivery after restart", consumer.next())
            .await
            .unwrap();
        assert_eq!(
            (again.id.as_str(), again.attempt, again.body.as_slice()),
            (id.as_str(), 2, &b"job"[..])
        );
        again.ack().await.unwrap();
        let stats = queue.stats().await.unwrap();
        assert_eq!((stats.ready, stats.in_flight, stats.dead), (0, Some(0), 0));
    }

    #[tokio::test]
    async fn one_process_serves_a_spool() {
        let dir = tempfile::tempdir().unwrap();
        let _first = EmbeddedQueue::open(dir.path(), policy()).unwrap();
        let second = EmbeddedQueue::open(dir.path(), policy());
        assert!(matches!(second, Err(asepsis_queue::QueueError::Locked(_))));
        // Admin access beside the server is fine.
        EmbeddedQueue::open_admin(dir.path(), policy()).unwrap();
    }
}

mod rabbitmq_only {
    use super::*;

    /// Close this queue's connection from the broker side.
    fn close_connection(name: &str) {
        let out = std::process::Command::new("rabbitmqctl")
            .args(["-q", "list_connections", "pid", "client_properties"])
            .output()
            .expect("rabbitmqctl must be installed (scripts/test installs rabbitmq-server)");
        let listing = String::from_utf8_lossy(&out.stdout);
        let pid = listing
            .lines()
            .find(|l| l.contains(name))
            .and_then(|l| l.split_whitespace().next())
            .unwrap_or_else(|| panic!("connection {name:?} not listed by the broker"));
        let status = std::process::Command::new("rabbitmqctl")
            .args([
                "-q",
                "close_connection",
                pid,
                "asepsis test: broker closes connection",
            ])
            .status()
            .unwrap();
        assert!(status.success());
    }

    #[tokio::test]
    async fn consumer_and_publisher_reconnect_after_the_broker_closes_the_connection() {
        let fx = Fixture::rabbit().await;
        let rabbit = fx.rabbit.clone().unwrap();
        let handler = Arc::new(ScriptedHandler::default());
        let mut expected = HashSet::new();
        for i in 0..20 {
            let body = format!("before-{i}");
            fx.queue.publish(body.as_bytes()).await.unwrap();
            expected.insert(body);
        }
        let running = Running::start(fx.queue.clone(), handler.clone(), 2);
        eventually("some jobs done", || async {
            (handler.done.lock().unwrap().len() >= 3).then_some(())
        })
        .await;
        let name = rabbit.connection_name().to_owned();
        tokio::task::spawn_blocking(move || close_connection(&name))
            .await
            .unwrap();
        for i in 0..10 {
            let body = format!("after-{i}");
            fx.queue.publish(body.as_bytes()).await.unwrap();
            expected.insert(body);
        }
        eventually("every job done", || async {
            let done: HashSet<String> = handler
                .done
                .lock()
                .unwrap()
                .iter()
                .map(|(b, _)| b.clone())
                .collect();
            (done == expected).then_some(())
        })
        .await;
        running.stop().await;
        assert!(fx.queue.dead_letters().await.unwrap().is_empty());
        fx.finish().await;
    }
}
