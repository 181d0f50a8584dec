//! One environment's request budget (a token bucket of `qps` and `burst`), handed out by
//! priority instead of in arrival order.
//!
//! Kubernetes' API Priority and Fairness is the model: what someone waits for (a revocation,
//! an issuance) never queues behind bulk background traffic (drift listings). Background work
//! gets what foreground work leaves, and only while a reserve of the bucket stays for
//! foreground bursts; a floor keeps it from starving completely when foreground work uses the
//! whole budget, so drift checks slow down instead of stopping.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
// Tokio's clock, so tests can pause it.
use tokio::time::Instant;

/// Who waits for a request, most urgent first. The order of the variants is the order of
/// service.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Priority {
    /// Revocations that are due, and deletions: a credential that should be dead is alive.
    Urgent,
    /// Issuance, rotation, renewal, repair, JWT refreshes, authentication: a user or a
    /// workload waits for it.
    Interactive,
    /// Drift listings and leak detection: nobody waits; it paces itself to what is left.
    Background,
}

impl Priority {
    pub const ALL: [Priority; 3] = [
        Priority::Urgent,
        Priority::Interactive,
        Priority::Background,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Urgent => "urgent",
            Priority::Interactive => "interactive",
            Priority::Background => "background",
        }
    }

    fn index(self) -> usize {
        match self {
            Priority::Urgent => 0,
            Priority::Interactive => 1,
            Priority::Background => 2,
        }
    }
}

/// The share of the budget background work keeps when foreground work would take it all.
const BACKGROUND_FLOOR: f64 = 0.1;

/// A waiter's place: its priority, then its arrival.
type Place = (Priority, u64);

pub struct Budget {
    qps: f64,
    burst: f64,
    /// Tokens background work must leave in the bucket for foreground bursts.
    reserve: f64,
    /// Background work may pass foreground waiters once this long after its last grant.
    floor_interval: Duration,
    state: Mutex<State>,
    changed: Notify,
}

struct State {
    tokens: f64,
    refilled: Instant,
    waiting: BTreeSet<Place>,
    next_ticket: u64,
    last_background: Option<Instant>,
    granted: [u64; 3],
}

/// Why a turn was not given.
#[derive(Debug, PartialEq, Eq)]
pub struct NoTurn;

impl Budget {
    pub fn new(qps: u32, burst: u32) -> Self {
        let qps = f64::from(qps.max(1));
        let burst = f64::from(burst.max(1));
        Budget {
            qps,
            burst,
            reserve: (burst / 2.0).floor(),
            floor_interval: Duration::from_secs_f64(1.0 / (qps * BACKGROUND_FLOOR)),
            state: Mutex::new(State {
                tokens: burst,
                refilled: Instant::now(),
                waiting: BTreeSet::new(),
                next_ticket: 0,
                last_background: None,
                granted: [0; 3],
            }),
            changed: Notify::new(),
        }
    }

    /// Requests per second the budget allows.
    pub fn qps(&self) -> f64 {
        self.qps
    }

    /// Turns given so far, per priority (in `Priority::ALL` order).
    pub fn granted(&self) -> [u64; 3] {
        self.state.lock().map(|s| s.granted).unwrap_or_default()
    }

    /// Waits at most `max_wait` for a turn at `priority`; returns how long it waited.
    pub async fn acquire(
        &self,
        priority: Priority,
        max_wait: Duration,
    ) -> Result<Duration, NoTurn> {
        let started = Instant::now();
        let deadline = started.checked_add(max_wait).unwrap_or(started);
        let place = self.enqueue(priority)?;
        let _leave = Leave {
            budget: self,
            place,
        };
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            // Registered before the check, so a grant between the check and the wait wakes it.
            notified.as_mut().enable();
            let retry_in = match self.try_grant(place, Instant::now()) {
                Ok(()) => return Ok(started.elapsed()),
                Err(retry_in) => retry_in,
            };
            let now = Instant::now();
            if now >= deadline {
                return Err(NoTurn);
            }
            let nap = retry_in.min(deadline.saturating_duration_since(now));
            tokio::select! {
                () = &mut notified => {}
                () = tokio::time::sleep(nap) => {}
            }
        }
    }

    fn enqueue(&self, priority: Priority) -> Result<Place, NoTurn> {
        let mut state = self.state.lock().map_err(|_| NoTurn)?;
        let place = (priority, state.next_ticket);
        state.next_ticket = state.next_ticket.wrapping_add(1);
        state.waiting.insert(place);
        Ok(place)
    }

    /// Takes a token for `place` if its turn has come; otherwise says when to look again.
    fn try_grant(&self, place: Place, now: Instant) -> Result<(), Duration> {
        let Ok(mut state) = self.state.lock() else {
            return Err(Duration::from_secs(1));
        };
        self.refill(&mut state, now);
        let Some(needed) = self.needed(&state, place, now) else {
            // Not this one's turn: it is woken when the one ahead is served, and looks again
            // after a refill period in any case.
            return Err(Duration::from_secs_f64((1.0 / self.qps).min(1.0)));
        };
        if state.tokens < needed {
            let short = needed - state.tokens;
            return Err(Duration::from_secs_f64(
                (short / self.qps).clamp(0.001, 1.0),
            ));
        }
        state.tokens -= 1.0;
        state.waiting.remove(&place);
        if place.0 == Priority::Background {
            state.last_background = Some(now);
        }
        if let Some(n) = state.granted.get_mut(place.0.index()) {
            *n = n.saturating_add(1);
        }
        drop(state);
        self.changed.notify_waiters();
        Ok(())
    }

    /// How many tokens the bucket must hold for `place` to be served now; `None` while
    /// another waiter goes first.
    ///
    /// - Foreground waiters are served in priority order, then in arrival order.
    /// - Background waiters are served in arrival order, when no foreground waiter is in line
    ///   and the bucket keeps its reserve after the grant, or when the floor is due: then the
    ///   first background waiter gets the next token, whoever else waits.
    fn needed(&self, state: &State, place: Place, now: Instant) -> Option<f64> {
        let floor_due = state
            .last_background
            .is_none_or(|t| now.saturating_duration_since(t) >= self.floor_interval);
        let first_background = state.waiting.iter().find(|p| p.0 == Priority::Background);
        let first = state.waiting.first();
        if place.0 == Priority::Background {
            if first_background != Some(&place) {
                return None;
            }
            return match (floor_due, first == Some(&place)) {
                (true, _) => Some(1.0),
                (false, true) => Some(1.0 + self.reserve),
                (false, false) => None,
            };
        }
        if first != Some(&place) {
            return None;
        }
        // A background waiter whose floor is due takes the next token.
        Some(if floor_due && first_background.is_some() {
            2.0
        } else {
            1.0
        })
    }

    fn refill(&self, state: &mut State, now: Instant) {
        let elapsed = now.saturating_duration_since(state.refilled).as_secs_f64();
        state.tokens = (state.tokens + elapsed * self.qps).min(self.burst);
        state.refilled = now;
    }

    fn leave(&self, place: Place) {
        if let Ok(mut state) = self.state.lock()
            && state.waiting.remove(&place)
        {
            drop(state);
            self.changed.notify_waiters();
        }
    }
}

/// Takes a waiter out of line however its wait ends (a grant, the deadline, a cancelled
/// future), so a caller that gave up never blocks the ones behind it.
struct Leave<'a> {
    budget: &'a Budget,
    place: Place,
}

impl Drop for Leave<'_> {
    fn drop(&mut self) {
        self.budget.leave(self.place);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const LONG: Duration = Duration::from_secs(3600);

    /// Spawns a waiter that records the order it was served in.
    fn waiter(
        budget: &Arc<Budget>,
        priority: Priority,
        name: &'static str,
        served: &Arc<Mutex<Vec<&'static str>>>,
    ) -> tokio::task::JoinHandle<()> {
        let (budget, served) = (budget.clone(), served.clone());
        tokio::spawn(async move {
            budget.acquire(priority, LONG).await.unwrap();
            served.lock().unwrap().push(name);
        })
    }

    async fn drain(budget: &Budget) {
        while budget
            .acquire(Priority::Urgent, Duration::ZERO)
            .await
            .is_ok()
        {}
    }

    #[tokio::test(start_paused = true)]
    async fn urgent_then_interactive_then_background_whatever_the_arrival_order() {
        let budget = Arc::new(Budget::new(10, 20));
        drain(&budget).await;
        let served = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (p, name) in [
            (Priority::Background, "b1"),
            (Priority::Interactive, "i1"),
            (Priority::Background, "b2"),
            (Priority::Urgent, "u1"),
            (Priority::Interactive, "i2"),
        ] {
            tasks.push(waiter(&budget, p, name, &served));
            tokio::task::yield_now().await;
        }
        for t in tasks {
            t.await.unwrap();
        }
        // The floor was due (no background turn yet): b1 gets one turn ahead; after that
        // foreground goes first.
        assert_eq!(*served.lock().unwrap(), ["b1", "u1", "i1", "i2", "b2"]);
    }

    #[tokio::test(start_paused = true)]
    async fn background_leaves_the_reserve_for_foreground_bursts() {
        let budget = Budget::new(10, 20);
        // A full bucket of 20 with a reserve of 10: background takes 10 at once (the first
        // one the floor's), then waits for the refill.
        let mut taken = 0;
        while budget
            .acquire(Priority::Background, Duration::ZERO)
            .await
            .is_ok()
        {
            taken += 1;
        }
        assert_eq!(taken, 10);
        // The reserve is still there for a burst of foreground work.
        for _ in 0..9 {
            assert!(
                budget
                    .acquire(Priority::Interactive, Duration::ZERO)
                    .await
                    .is_ok()
            );
        }
    }

    #[tokio::test(start_paused = true)]
    async fn saturating_foreground_leaves_background_its_floor_and_the_rate_holds() {
        let budget = Arc::new(Budget::new(10, 20));
        drain(&budget).await;
        let stop = tokio::time::Instant::now() + Duration::from_secs(60);
        let mut tasks = Vec::new();
        for p in [
            Priority::Interactive,
            Priority::Interactive,
            Priority::Background,
        ] {
            let budget = budget.clone();
            tasks.push(tokio::spawn(async move {
                while tokio::time::Instant::now() < stop {
                    budget.acquire(p, LONG).await.unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        let [urgent, interactive, background] = budget.granted();
        // 20 drained + 60 s at 10/s.
        let total = urgent + interactive + background;
        assert!((615..=625).contains(&total), "{total} turns in 60 s");
        // 10 % of 600 for background, the rest foreground.
        assert!(
            (55..=65).contains(&background),
            "background got {background}"
        );
        assert!(interactive >= 530, "interactive got {interactive}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiter_that_gives_up_does_not_block_the_ones_behind_it() {
        let budget = Arc::new(Budget::new(1, 1));
        drain(&budget).await;
        assert_eq!(
            budget
                .acquire(Priority::Urgent, Duration::from_millis(100))
                .await,
            Err(NoTurn)
        );
        let waited = budget.acquire(Priority::Interactive, LONG).await.unwrap();
        assert!(waited <= Duration::from_secs(1), "waited {waited:?}");
        assert!(budget.state.lock().unwrap().waiting.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn an_idle_budget_gives_background_the_whole_rate() {
        let budget = Budget::new(10, 20);
        drain(&budget).await;
        let started = tokio::time::Instant::now();
        for _ in 0..100 {
            budget.acquire(Priority::Background, LONG).await.unwrap();
        }
        let took = started.elapsed();
        // 100 turns at 10/s, once the reserve refilled (1 s).
        assert!(took <= Duration::from_secs(12), "took {took:?}");
    }
}
