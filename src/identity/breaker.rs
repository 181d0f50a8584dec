//! The circuit breaker of one environment's client.

use std::sync::Mutex as SyncMutex;
use std::time::{Duration, Instant};

use super::error::IdentityError;

/// Pauses an environment that is failing, so its tokens fail fast instead of each waiting out
/// a dead or hostile host. Closed: requests pass. Open: requests fail at once until
/// `open_until`; then the first request through is the probe, and the others keep failing
/// until it answers (or its own deadline passes).
#[derive(Default)]
pub struct Breaker {
    state: SyncMutex<BreakerState>,
}

#[derive(Default)]
struct BreakerState {
    open_until: Option<Instant>,
    cooldown: Duration,
}

impl Breaker {
    pub fn admit(&self, probe_window: Duration) -> Result<(), IdentityError> {
        let Ok(mut state) = self.state.lock() else {
            return Err(unavailable());
        };
        let Some(until) = state.open_until else {
            return Ok(());
        };
        let now = Instant::now();
        if now < until {
            return Err(unavailable());
        }
        // Half-open: this caller probes; everyone else waits for its answer.
        state.open_until = now.checked_add(probe_window);
        Ok(())
    }

    pub fn is_open(&self) -> bool {
        self.state.lock().map_or(true, |s| s.open_until.is_some())
    }

    pub fn succeeded(&self) {
        if let Ok(mut state) = self.state.lock() {
            *state = BreakerState::default();
        }
    }

    pub fn failed(&self, min: Duration, max: Duration) {
        if let Ok(mut state) = self.state.lock() {
            state.cooldown = if state.open_until.is_some() {
                state.cooldown.saturating_mul(2).clamp(min, max)
            } else {
                min
            };
            state.open_until = Instant::now().checked_add(state.cooldown);
        }
    }
}

pub fn unavailable() -> IdentityError {
    IdentityError::Unavailable(
        "recent requests failed; calls are paused until Frontegg answers again".into(),
    )
}
