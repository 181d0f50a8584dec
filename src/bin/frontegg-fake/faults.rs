//! Fault injection: what the next requests suffer before they reach the handlers.

use std::time::Duration;

use rand::Rng;
use serde::{Deserialize, Serialize};

/// Faults, settable at start (flags) and at runtime (`PUT /_admin/faults`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Faults {
    /// Answer the next N requests with 429.
    pub rate_limit_next: u32,
    /// Answer this fraction of requests with 429.
    pub rate_limit_rate: f64,
    /// Seconds from now that a 429's `X-Rate-Limit-Reset` names.
    pub rate_limit_reset_secs: f64,
    /// Answer the next N requests with 503.
    pub error_next: u32,
    /// Answer this fraction of requests with 500.
    pub error_rate: f64,
    /// Added to every request.
    pub latency_ms: u64,
    /// Never answer the next N requests (the client must time out).
    pub hang_next: u32,
    /// Only requests whose path starts with this are affected (all when empty).
    pub path_prefix: String,
    /// Requests per second above which the fake answers 429 (0 = unlimited).
    pub qps_limit: u32,
}

pub enum Injected {
    None,
    RateLimited { reset_in: Duration },
    ServerError(u16),
    Hang,
}

impl Faults {
    /// Decides the fault for one request and consumes "next N" budgets.
    pub fn draw(&mut self, path: &str) -> Injected {
        if !self.path_prefix.is_empty() && !path.starts_with(&self.path_prefix) {
            return Injected::None;
        }
        let reset_in = Duration::from_secs_f64(if self.rate_limit_reset_secs > 0.0 {
            self.rate_limit_reset_secs
        } else {
            2.0
        });
        let mut rng = rand::rng();
        if self.hang_next > 0 {
            self.hang_next -= 1;
            return Injected::Hang;
        }
        if self.rate_limit_next > 0 {
            self.rate_limit_next -= 1;
            return Injected::RateLimited { reset_in };
        }
        if self.error_next > 0 {
            self.error_next -= 1;
            return Injected::ServerError(503);
        }
        if self.rate_limit_rate > 0.0 && rng.random_bool(self.rate_limit_rate.min(1.0)) {
            return Injected::RateLimited { reset_in };
        }
        if self.error_rate > 0.0 && rng.random_bool(self.error_rate.min(1.0)) {
            return Injected::ServerError(500);
        }
        Injected::None
    }
}
