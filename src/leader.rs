//! Leader election with a coordination.k8s.io Lease (kube-lease-manager). Only the leader
//! reconciles; a standby reports ready and waits. A leader that loses its lease stops its
//! controllers and the process exits, so a former leader never writes.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use futures::future::{BoxFuture, FutureExt, Shared};
use kube_lease_manager::LeaseManagerBuilder;

pub struct LeaseConfig {
    pub name: String,
    pub namespace: String,
    pub identity: String,
    pub duration_seconds: u64,
    pub grace_seconds: u64,
}

pub enum Outcome {
    /// Shut down on request; the lease was released for a standby to take at once.
    ShutDown,
    /// The lease was lost while leading.
    LostLeadership,
}

/// Waits for the lease, then runs `lead(stop)` until `shutdown` fires or leadership is lost.
pub async fn run<F, Fut>(
    client: kube::Client,
    lease: LeaseConfig,
    ready: Arc<AtomicBool>,
    shutdown: Shared<BoxFuture<'static, ()>>,
    lead: F,
) -> anyhow::Result<Outcome>
where
    F: FnOnce(Shared<BoxFuture<'static, ()>>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let manager = LeaseManagerBuilder::new(client, &lease.name)
        .with_namespace(&lease.namespace)
        .with_identity(&lease.identity)
        .with_duration(lease.duration_seconds)
        .with_grace(lease.grace_seconds)
        .build()
        .await
        .map_err(|e| anyhow::anyhow!("leader election: {e}"))?;
    let (mut leader, task) = manager.watch().await;
    // A healthy standby is ready: it can take over at any moment.
    ready.store(true, Ordering::SeqCst);
    tracing::info!(identity = %lease.identity, lease = %lease.name, "waiting for leadership");
    while !*leader.borrow_and_update() {
        tokio::select! {
            changed = leader.changed() => {
                if changed.is_err() {
                    anyhow::bail!("leader election stopped unexpectedly");
                }
            }
            () = shutdown.clone() => {
                drop(leader);
                let _ = task.await;
                return Ok(Outcome::ShutDown);
            }
        }
    }
    tracing::info!(identity = %lease.identity, "acquired leadership; starting controllers");
    ready.store(false, Ordering::SeqCst);

    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    let watch_lease = async move {
        loop {
            if leader.changed().await.is_err() || !*leader.borrow_and_update() {
                let _ = lost_tx.send(());
                return;
            }
        }
    };
    let lost = lost_rx.map(|_| ()).shared();
    let stop: Shared<BoxFuture<'static, ()>> = {
        let (shutdown, lost) = (shutdown.clone(), lost.clone());
        async move {
            tokio::select! {
                () = shutdown => {}
                () = lost => {}
            }
        }
        .boxed()
        .shared()
    };
    let lease_watch = tokio::spawn(watch_lease);
    lead(stop).await;
    if lost.peek().is_some() {
        tracing::error!(identity = %lease.identity, "lost leadership; exiting so that only the new leader writes");
        return Ok(Outcome::LostLeadership);
    }
    // Shut down on request: closing the channel releases the lease.
    lease_watch.abort();
    let _ = lease_watch.await;
    let _ = task.await;
    Ok(Outcome::ShutDown)
}
