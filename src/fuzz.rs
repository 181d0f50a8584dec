//! Time-boxed property tests ("fuzzing") of the code that reads hostile input: response
//! decoding, the duration parser and template rendering. Each target runs for a few seconds
//! of random cases and writes how many it ran to `target/fuzz/<target>.txt`, which
//! `hack/test` prints. Any panic is a failure, shrunk by proptest to a small input.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, TestCaseResult, TestRunner};

/// Runs `check` on cases drawn from `strategy` for about `budget`; returns the case count.
pub fn fuzz_for<S: Strategy>(
    target: &str,
    strategy: S,
    budget: Duration,
    check: impl Fn(S::Value) -> TestCaseResult,
) -> u64
where
    S::Value: std::fmt::Debug,
{
    const BATCH: u32 = 256;
    let executed = AtomicU64::new(0);
    let started = Instant::now();
    while started.elapsed() < budget {
        // A fresh runner per batch: each draws a new random seed, and its case counter
        // starts at zero (one runner stops generating once it reached `cases`).
        let mut runner = TestRunner::new(Config {
            cases: BATCH,
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&strategy, |value| {
            executed.fetch_add(1, Ordering::Relaxed);
            check(value)
        });
        if let Err(e) = result {
            panic!(
                "fuzz target {target} failed after {} cases: {e}",
                executed.load(Ordering::Relaxed)
            );
        }
    }
    let cases = executed.load(Ordering::Relaxed);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/fuzz");
    let _ = std::fs::create_dir_all(&dir);
    let _ = std::fs::write(
        dir.join(format!("{target}.txt")),
        format!(
            "{target}: {cases} cases in {:.1} s, 0 panics\n",
            started.elapsed().as_secs_f64()
        ),
    );
    cases
}

/// A few seconds per target keeps the three targets near 20 s in `make test`.
pub const BUDGET: Duration = Duration::from_secs(6);
