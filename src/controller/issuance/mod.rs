//! The steps that change a remote token, one file per planned step: `issue` (probe, throttle,
//! journal, create, verify, deliver, record, as named steps of one `Issuance`), `recover`,
//! `import`, `patch`, `refresh` (the Secret or its JWT), `revoke`, and `restart` (the workloads
//! that read the credential only at start). `execute` dispatches a `Plan` to its step.
//!
//! May use: `steps`, `secret`, `environment`, `runtime`, `kinds`. Never `token`.

pub mod execute;
pub mod import;
pub mod issue;
pub mod patch;
pub mod recover;
pub mod refresh;
pub mod restart;
pub mod revoke;
pub mod step;
