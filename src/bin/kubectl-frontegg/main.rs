//! `kubectl frontegg`: the companion CLI for the people who run and use the operator. A
//! kubectl plugin (`kubectl-frontegg` on the PATH), with the caller's kubeconfig and RBAC; it
//! never needs the operator's credentials and never prints a secret.
//!
//! Exit codes: 0 all is well; 1 a resource is not Ready (status), did not rotate (rotate
//! --wait), or an environment cannot serve (check); 2 the command itself failed (bad
//! arguments, the cluster unreachable, a resource not found).

#![cfg_attr(
    not(test),
    deny(
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::unchecked_time_subtraction,
        clippy::too_many_lines
    )
)]

mod check;
mod inspect;
mod kinds;
mod migrate;
mod rotate;
mod status;

use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use serde::Serialize;

#[derive(Parser)]
#[command(
    name = "kubectl-frontegg",
    version,
    about = "Companion CLI of the Frontegg token operator"
)]
struct Cli {
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Text)]
    output: Format,
    /// Namespace (default: the kubeconfig context's).
    #[arg(short, long, global = true)]
    namespace: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    Text,
    Json,
    Yaml,
}

#[derive(Subcommand)]
enum Command {
    /// Token resources: a table, or the story of one (KIND/NAME). Exits 1 if any is not Ready.
    Status {
        /// KIND/NAME, e.g. userapitoken/ci-bot.
        resource: Option<String>,
        /// Every namespace.
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Label selector.
        #[arg(short = 'l', long)]
        selector: Option<String>,
    },
    /// Rotate now: sets the rotate annotation to a value unique to this call.
    Rotate {
        /// KIND/NAME; or use --selector.
        resource: Option<String>,
        #[arg(short = 'l', long)]
        selector: Option<String>,
        #[arg(short = 'A', long)]
        all_namespaces: bool,
        /// Follow each resource until its Secret holds the new token.
        #[arg(long)]
        wait: bool,
        #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
        timeout: Duration,
    },
    /// What a token Secret holds, with nothing secret printed.
    Inspect {
        #[command(subcommand)]
        what: InspectWhat,
    },
    /// Why an environment can or cannot serve tokens.
    Check {
        #[command(subcommand)]
        what: CheckWhat,
    },
    /// After switching storage (chart value crds.storageVersion): rewrite every stored object
    /// in the storage version and trim the CRDs' status.storedVersions. Uses Kubernetes'
    /// StorageVersionMigration where the cluster serves it.
    Migrate {
        /// Rewrite the objects with this command even where StorageVersionMigration is served
        /// (e.g. when no kube-controller-manager runs its migrator controller).
        #[arg(long)]
        rewrite: bool,
    },
    /// The CLI's version.
    Version,
    /// A completion script for your shell, e.g. `kubectl-frontegg completions bash`.
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand)]
enum InspectWhat {
    /// A token Secret.
    Secret { name: String },
}

#[derive(Subcommand)]
enum CheckWhat {
    /// A FronteggEnvironment in the namespace, or else the ClusterFronteggEnvironment.
    Environment {
        name: String,
        /// Where ClusterFronteggEnvironment credentials live.
        #[arg(long, default_value = "frontegg-token-operator")]
        operator_namespace: String,
    },
}

/// A command's result: what to print, and whether all was well.
struct Done {
    text: String,
    value: serde_json::Value,
    ok: bool,
}

fn done<T: Serialize>(text: String, value: &T, ok: bool) -> Result<Done, String> {
    let value = serde_json::to_value(value).map_err(|e| e.to_string())?;
    Ok(Done { text, value, ok })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Version => {
            println!("kubectl-frontegg {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Command::Completions { shell } => {
            let mut command = <Cli as clap::CommandFactory>::command();
            clap_complete::generate(
                shell,
                &mut command,
                "kubectl-frontegg",
                &mut std::io::stdout(),
            );
            return ExitCode::SUCCESS;
        }
        _ => {}
    }
    let result = match kube::Client::try_default().await {
        Ok(client) => run(&cli, &client).await,
        Err(e) => Err(format!("cannot reach Kubernetes: {e}")),
    };
    match result {
        Ok(done) => {
            let printed = match cli.output {
                Format::Text => Ok(done.text),
                Format::Json => {
                    serde_json::to_string_pretty(&done.value).map_err(|e| e.to_string())
                }
                Format::Yaml => serde_saphyr::to_string(&done.value).map_err(|e| e.to_string()),
            };
            match printed {
                Ok(text) => print!("{}{}", text, if text.ends_with('\n') { "" } else { "\n" }),
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(2);
                }
            }
            if done.ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn run(cli: &Cli, client: &kube::Client) -> Result<Done, String> {
    let namespace = cli
        .namespace
        .clone()
        .unwrap_or_else(|| client.default_namespace().to_string());
    match &cli.command {
        Command::Status {
            resource: Some(r), ..
        } => status_one(client, &namespace, r).await,
        Command::Status {
            resource: None,
            all_namespaces,
            selector,
        } => {
            let scope = (!all_namespaces).then_some(namespace.as_str());
            status_all(client, scope, selector.as_deref()).await
        }
        Command::Rotate {
            resource,
            selector,
            all_namespaces,
            wait,
            timeout,
        } => {
            let scope = (!all_namespaces).then_some(namespace.as_str());
            let targets = targets(
                client,
                &namespace,
                scope,
                resource.as_deref(),
                selector.as_deref(),
            )
            .await?;
            rotate_all(client, &targets, *wait, *timeout).await
        }
        Command::Inspect {
            what: InspectWhat::Secret { name },
        } => {
            let i = inspect::secret(client, &namespace, name).await?;
            let ok = i.matches_status != "differs";
            done(inspect::describe(&i), &i, ok)
        }
        Command::Check {
            what:
                CheckWhat::Environment {
                    name,
                    operator_namespace,
                },
        } => {
            let c = check::environment(client, &namespace, name, operator_namespace).await?;
            let ok = c.ready == "True" && c.credentials_problems.is_empty();
            done(check::describe(&c), &c, ok)
        }
        Command::Migrate { rewrite } => {
            let migrated = migrate::all(client, *rewrite).await?;
            done(migrate::describe(&migrated), &migrated, true)
        }
        Command::Version | Command::Completions { .. } => done(String::new(), &(), true),
    }
}

async fn status_all(
    client: &kube::Client,
    scope: Option<&str>,
    selector: Option<&str>,
) -> Result<Done, String> {
    let rows = status::rows(client, scope, selector)
        .await
        .map_err(|e| e.to_string())?;
    let ok = rows.iter().all(|r| r.ready == "True");
    // As kubectl says it, rather than a bare header.
    let text = match scope {
        _ if !rows.is_empty() => status::table(&rows, scope.is_none()),
        Some(ns) => format!("No token resources found in {ns} namespace."),
        None => "No token resources found.".into(),
    };
    done(text, &rows, ok)
}

async fn status_one(
    client: &kube::Client,
    namespace: &str,
    resource: &str,
) -> Result<Done, String> {
    let (kind, name) = kinds::parse_ref(resource)?;
    let obj = kinds::api(client, &kind, Some(namespace))
        .get_opt(&name)
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("{} {namespace}/{name} not found", kind.name))?;
    let d = status::detail(client, &kind, &obj).await;
    let ok = d.row.ready == "True";
    done(status::describe(&d), &d, ok)
}

/// The resources to rotate: one by name, or every one the selector matches.
async fn targets(
    client: &kube::Client,
    namespace: &str,
    scope: Option<&str>,
    resource: Option<&str>,
    selector: Option<&str>,
) -> Result<Vec<rotate::Target>, String> {
    let mut found = Vec::new();
    match (resource, selector) {
        (Some(r), None) => {
            let (kind, name) = kinds::parse_ref(r)?;
            let obj = kinds::api(client, &kind, Some(namespace))
                .get_opt(&name)
                .await
                .map_err(|e| e.to_string())?
                .ok_or_else(|| format!("{} {namespace}/{name} not found", kind.name))?;
            found.push(target(kind, &obj));
        }
        (None, Some(selector)) => {
            for kind in kinds::all() {
                let objs = kinds::list(client, &kind, scope, Some(selector))
                    .await
                    .map_err(|e| e.to_string())?;
                for obj in objs {
                    found.push(target(kinds::find(kind.name).ok_or("kind")?, &obj));
                }
            }
        }
        _ => return Err("name one resource (KIND/NAME) or give --selector, not both".into()),
    }
    Ok(found)
}

fn target(kind: kinds::Kind, obj: &kube::api::DynamicObject) -> rotate::Target {
    let row = status::row(&kind, obj);
    rotate::Target {
        kind,
        namespace: row.namespace,
        name: row.name,
        before: row.token_id,
    }
}

async fn rotate_all(
    client: &kube::Client,
    targets: &[rotate::Target],
    wait: bool,
    timeout: Duration,
) -> Result<Done, String> {
    let value = rotate::request_value();
    for t in targets {
        rotate::request(client, t, &value)
            .await
            .map_err(|e| format!("{}/{}: {e}", t.kind.name, t.name))?;
        eprintln!(
            "{} {}/{}: rotation requested",
            t.kind.name, t.namespace, t.name
        );
    }
    let outcomes = if wait {
        rotate::wait(client, targets, &value, timeout).await
    } else {
        targets
            .iter()
            .map(|t| rotate::Outcome {
                resource: format!("{}/{}/{}", t.kind.name, t.namespace, t.name),
                old_token_id: t.before.clone(),
                new_token_id: None,
                result: "Requested".into(),
                reason: None,
            })
            .collect()
    };
    let ok = outcomes.iter().all(|o| o.result != "Failed");
    let text: String = outcomes
        .iter()
        .map(|o| {
            format!(
                "{} {} {}\n",
                o.resource,
                o.result,
                o.reason.as_deref().unwrap_or("")
            )
        })
        .collect();
    done(text, &outcomes, ok)
}
