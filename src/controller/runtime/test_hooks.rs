//! Crash points for the kill matrix (`tests/crash.rs`), compiled only with the `test-hooks`
//! feature, which release builds never enable. `FTO_TEST_EXIT_AT=<step>:<name>` makes the
//! process exit at once, without any cleanup, when the object `<name>` reaches `<step>`:
//! after-intent (the journal and the finalizer), after-create, after-secret, after-status,
//! mid-grace, mid-deletion. The annotation `tokens.frontegg-operator.io/test-panic` makes its reconcile
//! panic.

#[cfg(feature = "test-hooks")]
pub use hooks::*;

#[cfg(not(feature = "test-hooks"))]
pub fn exit_at<K>(_step: &str, _obj: &K) {}

#[cfg(not(feature = "test-hooks"))]
pub fn panic_if_requested<K>(_obj: &K) {}

#[cfg(feature = "test-hooks")]
mod hooks {
    use kube::ResourceExt;

    use crate::controller::kinds::TokenResource;

    pub const PANIC_ANNOTATION: &str = "tokens.frontegg-operator.io/test-panic";

    pub fn exit_at<K: TokenResource>(step: &str, obj: &K) {
        let wanted = std::env::var("FTO_TEST_EXIT_AT").unwrap_or_default();
        if wanted == format!("{step}:{}", obj.name_any()) {
            tracing::warn!(step, "test hook: exiting without cleanup");
            std::process::exit(137);
        }
    }

    #[allow(clippy::panic)]
    pub fn panic_if_requested<K: TokenResource>(obj: &K) {
        if obj.annotations().contains_key(PANIC_ANNOTATION) {
            panic!("test hook: a panic was requested by annotation");
        }
    }
}
