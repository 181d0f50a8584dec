//! The background listers: one task per environment lists its registered groups
//! (`listings.rs`) oldest first, each through the environment's budget at background
//! priority. They wait for their turns here, never in a reconcile worker, and one
//! environment's slow host or spent budget never delays another's.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use jiff::Timestamp;
use tokio::task::JoinHandle;

use super::context::Context;
use super::listings::{Due, GroupKey};
use crate::identity::{IdentityError, RemoteToken};

/// What is done with every background listing besides storing it: leak detection.
pub type OnListed = fn(Arc<Context>, GroupKey, Arc<Vec<RemoteToken>>) -> BoxFuture<'static, ()>;

/// How often the set of environments with registered groups is read again.
const SCAN: Duration = Duration::from_secs(1);

/// A listing that failed is tried again after this long (or the period, if shorter), behind
/// the groups already due.
const RETRY_FAILED: Duration = Duration::from_secs(30);

/// How long a lister waits when its environment is paused after failures (its breaker
/// admits a probe within seconds; the health check probes it too).
const ENVIRONMENT_PAUSED: Duration = Duration::from_secs(5);

/// Runs the listers until `shutdown` resolves.
pub async fn run<S>(ctx: Arc<Context>, on_listed: OnListed, shutdown: S)
where
    S: std::future::Future<Output = ()> + Send,
{
    let mut listers: HashMap<String, JoinHandle<()>> = HashMap::new();
    let supervise = async {
        loop {
            listers.retain(|_, task| !task.is_finished());
            for env in ctx.drift.environments() {
                listers
                    .entry(env.clone())
                    .or_insert_with(|| tokio::spawn(lister(ctx.clone(), env, on_listed)));
            }
            tokio::time::sleep(SCAN).await;
        }
    };
    tokio::select! {
        () = supervise => {}
        () = shutdown => {}
    }
    // They stop with the controllers: a leader that stops lists nothing more.
    for task in listers.values() {
        task.abort();
    }
}

/// Lists one environment's groups in turn; ends when it has none left (a new registration
/// starts it again).
async fn lister(ctx: Arc<Context>, environment: String, on_listed: OnListed) {
    tracing::debug!(%environment, "background lister started");
    let period = ctx.config.resync;
    let mut idle = Duration::ZERO;
    loop {
        match ctx.drift.next_due(&environment, Timestamp::now(), period) {
            Ok(due) => {
                idle = Duration::ZERO;
                list(&ctx, due, on_listed).await;
            }
            Err(_)
                if ctx
                    .drift
                    .pace(&environment, Timestamp::now(), period)
                    .groups
                    == 0 =>
            {
                // Nothing registered for a scan or two: the environment's tokens are gone.
                idle = idle.saturating_add(SCAN);
                if idle > SCAN.saturating_mul(2) {
                    tracing::debug!(%environment, "background lister stopped: no groups");
                    return;
                }
                tokio::time::sleep(SCAN).await;
            }
            Err(wait) => tokio::time::sleep(wait.min(SCAN)).await,
        }
    }
}

async fn list(ctx: &Arc<Context>, due: Due, on_listed: OnListed) {
    let period = ctx.config.resync;
    // Stamped before the call: a token created while the list is in flight must not be
    // judged missing by it.
    let fetched_at = Timestamp::now();
    match (due.lister)().await {
        Ok(tokens) => {
            tracing::debug!(group = ?due.key, listed = tokens.len(), "background listing");
            let listing = ctx.drift.store(&due.key, tokens, fetched_at, period).await;
            on_listed(ctx.clone(), due.key, listing.tokens).await;
        }
        // No background turn within the wait: the budget is busy with foreground work. The
        // group stays first in line.
        Err(IdentityError::Throttled(_)) => {
            tracing::debug!(group = ?due.key, "no background turn within the wait");
        }
        // The environment, not the group: Frontegg's 429 gate is closed, or the environment
        // is paused after failures. Every other group would fail the same way at once, so
        // the lister waits, and the group keeps its place.
        Err(IdentityError::RateLimited { reset }) => {
            let wait = Duration::try_from(reset.duration_since(Timestamp::now()))
                .unwrap_or(Duration::ZERO);
            tokio::time::sleep(
                wait.clamp(Duration::from_secs(1), period.max(Duration::from_secs(1))),
            )
            .await;
        }
        Err(IdentityError::Unavailable(_)) => tokio::time::sleep(ENVIRONMENT_PAUSED).await,
        Err(e) => {
            tracing::debug!(error = %e, group = ?due.key, "background listing failed");
            let retry = RETRY_FAILED.min(period).max(Duration::from_secs(1));
            ctx.drift.postpone(&due.key, Timestamp::now(), retry);
        }
    }
}
