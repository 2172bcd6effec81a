//! The worker's take-down job: every `takedown.interval_secs`, the one worker that wins the
//! period's lease runs the rights desk's scheduled take-down work (restores that are due,
//! notices nobody countered in time, repeat infringers' keys). What is done, and in which
//! order, is the desk's; this module only keeps time.

use std::time::Duration;

use asepsis_rights::Desk;
use asepsis_store::now_ms;
use time::OffsetDateTime;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

/// Run until `shutdown`. A failed run is logged and the next period carries on.
pub async fn schedule(desk: Desk, interval_secs: u64, instance: Uuid, shutdown: CancellationToken) {
    let interval = interval_secs.max(1);
    let mut ticks = tokio::time::interval(Duration::from_secs(interval));
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = ticks.tick() => {}
        }
        let period = now_ms() / 1000 / interval;
        match desk.storage.claim_lease("takedown", period, instance).await {
            Ok(true) => match desk.run_takedowns(OffsetDateTime::now_utc()).await {
                Ok(run) if run.restored + run.upheld + run.finished > 0 => tracing::info!(
                    restored = run.restored,
                    restored_held = run.restored_held,
                    upheld = run.upheld,
                    keys_disabled = run.keys_disabled.len(),
                    finished = run.finished,
                    "take-down run"
                ),
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "take-down run failed; the next one carries on")
                }
            },
            Ok(false) => {}
            Err(e) => tracing::warn!(error = %e, "take-down lease unavailable"),
        }
    }
}
