//! Each environment's share of a kind's reconcile workers. A pass that talks to Frontegg
//! holds its worker until the environment answers; an environment whose host is slow,
//! failing or out of budget would otherwise take every worker of the kind, and the tokens of
//! healthy environments would wait in the queue behind it. A pass beyond its environment's
//! share is requeued at once instead (it never waits for a worker here).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Passes in flight, per (kind, environment).
#[derive(Default)]
pub struct WorkerShares {
    in_use: Arc<Mutex<HashMap<(&'static str, String), usize>>>,
}

/// A worker held by an environment; given back when dropped.
pub struct Share {
    in_use: Arc<Mutex<HashMap<(&'static str, String), usize>>>,
    key: (&'static str, String),
}

impl std::fmt::Debug for Share {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("Share").field(&self.key).finish()
    }
}

impl WorkerShares {
    /// Takes one of `kind`'s `workers` for `environment`, or `None` when the environment
    /// holds its share already.
    ///
    /// The share is what one worker less than the kind has, split among the environments
    /// holding workers now, and at least one: as long as there are fewer busy environments
    /// than workers, one worker is always free for an environment that has none.
    pub fn try_take(&self, kind: &'static str, environment: &str, workers: u16) -> Option<Share> {
        let mut in_use = self.in_use.lock().ok()?;
        let key = (kind, environment.to_string());
        let others = in_use
            .iter()
            .filter(|((k, e), n)| *k == kind && e != environment && **n > 0)
            .count();
        let share = usize::from(workers.saturating_sub(1))
            .checked_div(others.saturating_add(1))
            .unwrap_or(0)
            .max(1);
        let held = in_use.entry(key.clone()).or_default();
        if *held >= share {
            return None;
        }
        *held = held.saturating_add(1);
        Some(Share {
            in_use: self.in_use.clone(),
            key,
        })
    }
}

impl Drop for Share {
    fn drop(&mut self) {
        if let Ok(mut in_use) = self.in_use.lock() {
            let now_free = in_use.get_mut(&self.key).is_some_and(|n| {
                *n = n.saturating_sub(1);
                *n == 0
            });
            if now_free {
                in_use.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_busy_environment_always_leaves_a_worker_for_the_others() {
        let shares = WorkerShares::default();
        // Alone, a slow environment takes three of four workers, not the fourth.
        let slow: Vec<Share> = (0..3)
            .map(|_| shares.try_take("K", "slow", 4).unwrap())
            .collect();
        assert!(shares.try_take("K", "slow", 4).is_none());
        // The healthy environment gets the last one at once.
        let healthy = shares.try_take("K", "healthy", 4).unwrap();
        // Now two are busy: each may hold one (three split in two); the slow one holds more
        // already, so it gets none until it gives some back.
        drop(slow);
        let slow = shares.try_take("K", "slow", 4).unwrap();
        assert!(shares.try_take("K", "slow", 4).is_none());
        // Other kinds have workers of their own.
        assert!(shares.try_take("Other", "slow", 4).is_some());
        drop((healthy, slow));
        assert!(shares.in_use.lock().unwrap().is_empty());
        // A kind with one worker still serves every environment, one pass at a time.
        let one = shares.try_take("K", "a", 1).unwrap();
        assert!(shares.try_take("K", "a", 1).is_none());
        drop(one);
        assert!(shares.try_take("K", "a", 1).is_some());
    }
}
