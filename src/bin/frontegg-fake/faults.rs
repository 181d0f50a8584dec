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
    /// Only requests with this method are affected (all when empty), e.g. POST: the creates
    /// on a path that is also listed.
    pub method: String,
    /// Requests per second above which the fake answers 429 (0 = unlimited).
    pub qps_limit: u32,
    /// When set, 429s carry this `Retry-After` value verbatim and an `X-Rate-Limit-Reset`
    /// at the end of time (an absurd reset).
    pub rate_limit_retry_after: String,
    /// Handle the next N requests (the token is created), then drop the connection before
    /// the answer arrives.
    pub drop_after_commit_next: u32,
    /// Handle the next N requests (the token is created), then never answer: the client
    /// waits until it gives up, or until it is gone.
    pub hang_after_commit_next: u32,
    /// Handle the next N requests, then answer 200 with a JSON body of `huge_body_bytes`
    /// (default 200 MB), streamed.
    pub huge_body_next: u32,
    pub huge_body_bytes: u64,
    /// Handle the next N requests, then answer 200 with an HTML page.
    pub garbage_next: u32,
    /// Handle the next N requests, then answer 200 with JSON of the wrong types.
    pub wrong_types_next: u32,
    /// Handle the next N requests, then answer 200 and send the body one byte per second.
    pub slow_drip_next: u32,
    /// Lists leave out every existing token.
    pub list_omits_tokens: bool,
    /// `expiresIn` that vendor authentication reports (seconds), e.g. 1e19.
    pub vendor_expires_in: Option<f64>,
    /// The next N API-token exchanges answer an access token padded to 64 KiB.
    pub oversized_jwt_next: u32,
}

/// A 200 answer that breaks the client's expectations, sent after the handler ran.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Corruption {
    DropAfterCommit,
    HangAfterCommit,
    HugeBody,
    Garbage,
    WrongTypes,
    SlowDrip,
}

pub enum Injected {
    None,
    RateLimited { reset_in: Duration },
    ServerError(u16),
    Hang,
    Corrupt(Corruption),
}

/// Consumes one unit of a "next N" budget; true when there was one.
fn take(budget: &mut u32) -> bool {
    let had = *budget > 0;
    *budget = budget.saturating_sub(1);
    had
}

impl Faults {
    /// Decides the fault for one request and consumes "next N" budgets.
    pub fn draw(&mut self, method: &str, path: &str) -> Injected {
        if !self.path_prefix.is_empty() && !path.starts_with(&self.path_prefix) {
            return Injected::None;
        }
        if !self.method.is_empty() && !self.method.eq_ignore_ascii_case(method) {
            return Injected::None;
        }
        let reset_in = Duration::from_secs_f64(if self.rate_limit_reset_secs > 0.0 {
            self.rate_limit_reset_secs
        } else {
            2.0
        });
        let mut rng = rand::rng();
        if take(&mut self.hang_next) {
            return Injected::Hang;
        }
        if take(&mut self.rate_limit_next) {
            return Injected::RateLimited { reset_in };
        }
        if take(&mut self.error_next) {
            return Injected::ServerError(503);
        }
        for (budget, corruption) in [
            (
                &mut self.drop_after_commit_next,
                Corruption::DropAfterCommit,
            ),
            (
                &mut self.hang_after_commit_next,
                Corruption::HangAfterCommit,
            ),
            (&mut self.huge_body_next, Corruption::HugeBody),
            (&mut self.garbage_next, Corruption::Garbage),
            (&mut self.wrong_types_next, Corruption::WrongTypes),
            (&mut self.slow_drip_next, Corruption::SlowDrip),
        ] {
            if take(budget) {
                return Injected::Corrupt(corruption);
            }
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
