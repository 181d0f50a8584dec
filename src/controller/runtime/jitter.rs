//! Random spread for requeues and first turns that would otherwise line up.

/// A random factor in `[low, high)`, to spread requeues that would otherwise line up.
pub fn jitter(low: f64, high: f64) -> f64 {
    rand::random_range(low..high)
}
