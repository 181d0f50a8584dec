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

type Stop = Shared<BoxFuture<'static, ()>>;
type Leader = tokio::sync::watch::Receiver<bool>;

/// Waits for the lease, then runs `lead(stop)` until `shutdown` fires or leadership is lost.
pub async fn run<F, Fut>(
    client: kube::Client,
    lease: LeaseConfig,
    ready: Arc<AtomicBool>,
    shutdown: Stop,
    lead: F,
) -> anyhow::Result<Outcome>
where
    F: FnOnce(Stop) -> Fut,
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
    if !wait_for_leadership(&mut leader, &shutdown).await? {
        drop(leader);
        let _ = task.await;
        return Ok(Outcome::ShutDown);
    }
    tracing::info!(identity = %lease.identity, "acquired leadership; starting controllers");
    ready.store(false, Ordering::SeqCst);
    let (stop, lost, lease_watch) = watch_lease(leader, shutdown);
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

/// True once this instance leads; false when `shutdown` fired first.
async fn wait_for_leadership(leader: &mut Leader, shutdown: &Stop) -> anyhow::Result<bool> {
    while !*leader.borrow_and_update() {
        tokio::select! {
            changed = leader.changed() => {
                if changed.is_err() {
                    anyhow::bail!("leader election stopped unexpectedly");
                }
            }
            () = shutdown.clone() => return Ok(false),
        }
    }
    Ok(true)
}

/// Watches the lease while leading: `stop` fires on shutdown or on a lost lease, `lost` only
/// on a lost lease. The task ends when the lease is lost or aborted.
fn watch_lease(mut leader: Leader, shutdown: Stop) -> (Stop, Stop, tokio::task::JoinHandle<()>) {
    let (lost_tx, lost_rx) = tokio::sync::oneshot::channel::<()>();
    let watch = async move {
        loop {
            if leader.changed().await.is_err() || !*leader.borrow_and_update() {
                let _ = lost_tx.send(());
                return;
            }
        }
    };
    let lost: Stop = lost_rx.map(|_| ()).boxed().shared();
    let stop: Stop = {
        let lost = lost.clone();
        async move {
            tokio::select! {
                () = shutdown => {}
                () = lost => {}
            }
        }
        .boxed()
        .shared()
    };
    (stop, lost, tokio::spawn(watch))
}
