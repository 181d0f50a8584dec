//! Which token resources hold a live remote token, by the environment that issued it: what
//! in-use protection counts (`environment/protection.rs` implements the view for each kind's
//! cache). Only the shape lives here, so that the caches can hold the views without knowing
//! the token kinds.

use std::collections::HashMap;
use std::sync::Mutex;

use futures::future::BoxFuture;

use crate::api::EnvironmentKind;

/// An environment object: a FronteggEnvironment has a namespace, a ClusterFronteggEnvironment
/// none.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnvironmentId {
    pub kind: EnvironmentKind,
    pub namespace: Option<String>,
    pub name: String,
}

impl std::fmt::Display for EnvironmentId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{:?} {ns}/{}", self.kind, self.name),
            None => write!(f, "{:?} {}", self.kind, self.name),
        }
    }
}

/// A token resource that holds a remote token (current, superseded, or being issued).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct Holder {
    pub kind: &'static str,
    pub namespace: String,
    pub name: String,
}

impl std::fmt::Display for Holder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
    }
}

/// The holders of one token kind in one watch scope.
pub trait TokenHolders: Send + Sync {
    /// From the watch cache: cheap, and possibly behind.
    fn cached(&self, envs: &[EnvironmentId]) -> Vec<Holder>;
    /// From a fresh list: what a release is decided on.
    fn live<'a>(
        &'a self,
        client: &'a kube::Client,
        envs: &'a [EnvironmentId],
    ) -> BoxFuture<'a, Result<Vec<Holder>, kube::Error>>;
    /// The UIDs of every cached resource: a token marked with another is leaked.
    fn uids(&self, out: &mut std::collections::HashSet<String>);
    /// The same from a fresh list: what a leaked token is revoked on.
    fn live_uids<'a>(
        &'a self,
        client: &'a kube::Client,
    ) -> BoxFuture<'a, Result<Vec<String>, kube::Error>>;
    /// The namespace it watches; `None`: the cluster.
    fn namespace(&self) -> Option<&str>;
}

/// How many holders each waiting Secret's last Event named, so that the Event is sent when
/// the number changes rather than at every look.
#[derive(Default)]
pub struct Reported(Mutex<HashMap<String, usize>>);

impl Reported {
    /// Whether `count` differs from what was last reported for `uid` (and records it).
    pub fn changed(&self, uid: &str, count: usize) -> bool {
        let Ok(mut seen) = self.0.lock() else {
            return true;
        };
        if count == 0 {
            return seen.remove(uid).is_some();
        }
        seen.insert(uid.to_string(), count) != Some(count)
    }
}
