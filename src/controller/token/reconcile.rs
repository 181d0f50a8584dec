//! The entry of a token resource's reconcile: the apply pass (`pass.rs`) or, once deleted,
//! the cleanup (`cleanup.rs`), each reported by `report.rs`; a panic guard around both; the
//! reconcile metrics; and the error policy that picks the requeue after a failure.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use jiff::Timestamp;
use kube::runtime::controller::Action;

use super::report::{Outcome, Phase, report};
use super::{cleanup, pass};
use crate::controller::kinds::{TokenResource, object_key};
use crate::controller::runtime::context::Context;
use crate::controller::runtime::error::Error;
use crate::controller::runtime::jitter::jitter;
use crate::controller::steps::journal;
use crate::identity::IdentityError;
use crate::metrics::{Metrics, ReconcileLabels};

#[tracing::instrument(skip_all, fields(object = %object_key(&*obj)))]
pub async fn reconcile<K: TokenResource>(obj: Arc<K>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    // A panic is an operator bug. Caught here, it fails this one object (Ready=False,
    // InternalError) and the process goes on serving everyone else.
    let result = match AssertUnwindSafe(drive(&*obj, &ctx)).catch_unwind().await {
        Ok(result) => result,
        Err(_) => panicked(&*obj, &ctx).await,
    };
    let outcome = match &result {
        Ok(_) => "success".to_string(),
        Err(e) => e.reason().to_string(),
    };
    let labels = ReconcileLabels {
        kind: K::KIND.into(),
        result: outcome,
    };
    ctx.metrics.reconciles.get_or_create(&labels).inc();
    ctx.metrics
        .reconcile_duration
        .get_or_create(&Metrics::kind(K::KIND))
        .observe(started.elapsed().as_secs_f64());
    result
}

/// The apply pass while the resource lives; the cleanup once it is deleted. Not kube's
/// finalizer helper: it adds the finalizer in a write of its own, and the journal write that
/// precedes every create adds it for free (`steps/journal.rs`).
async fn drive<K: TokenResource>(obj: &K, ctx: &Context) -> Result<Action, Error> {
    if obj.meta().deletion_timestamp.is_none() {
        let mut written = None;
        let result = pass::apply(obj, ctx, &mut written).await;
        return report(obj, ctx, Phase::Apply, result, written).await;
    }
    if !journal::has_finalizer(obj) {
        // Never issued anything, or already cleaned up.
        return Ok(Action::await_change());
    }
    let result = cleanup::cleanup(obj, ctx).await.map(|notes| Outcome {
        status: obj.token_status().cloned().unwrap_or_default(),
        notes,
        requeue: Duration::ZERO,
    });
    let action = report(obj, ctx, Phase::Cleanup, result, None).await?;
    journal::remove_finalizer(obj, ctx).await?;
    Ok(action)
}

async fn panicked<K: TokenResource>(obj: &K, ctx: &Context) -> Result<Action, Error> {
    ctx.metrics
        .reconcile_panics
        .get_or_create(&Metrics::kind(K::KIND))
        .inc();
    tracing::error!("reconcile panicked; reported as InternalError");
    let phase = if obj.meta().deletion_timestamp.is_some() {
        Phase::Cleanup
    } else {
        Phase::Apply
    };
    let err = Error::Internal("the reconcile panicked".into());
    report(obj, ctx, phase, Err(err), None)
        .await
        .and_then(|_| Err(Error::Internal("the reconcile panicked".into())))
}

pub fn error_policy<K: TokenResource>(obj: Arc<K>, err: &Error, ctx: Arc<Context>) -> Action {
    match err {
        Error::Identity(IdentityError::RateLimited { reset }) => {
            let wait = Duration::try_from(reset.duration_since(Timestamp::now()))
                .unwrap_or(Duration::ZERO);
            Action::requeue(wait.saturating_add(Duration::from_millis(100)))
        }
        Error::ReissueThrottled { wait } => {
            Action::requeue(wait.saturating_add(Duration::from_millis(100)))
        }
        // Our own client-side limits: the environment is healthy, only busy. Come back soon,
        // spread out, without growing the per-resource backoff.
        Error::Identity(IdentityError::Throttled(_)) => {
            Action::requeue(Duration::from_secs(1).mul_f64(jitter(1.0, 3.0)))
        }
        _ => Action::requeue(ctx.next_backoff(&object_key(&*obj))),
    }
}
