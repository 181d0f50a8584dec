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

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use frontegg_token_operator::{api, controller, leader, metrics::Metrics, server, webhook};
use futures::FutureExt;
use tracing_subscriber::EnvFilter;

#[derive(Parser)]
#[command(
    version,
    about = "Issues, rotates and revokes Frontegg tokens into Kubernetes Secrets"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the operator.
    Run(Box<RunArgs>),
    /// Print every CRD as YAML.
    Crd {
        /// Print the Helm chart's CRD template instead.
        #[arg(long, conflicts_with = "reference")]
        helm: bool,
        /// Print the field reference (docs/crd-reference.md) instead.
        #[arg(long)]
        reference: bool,
        /// Serve v1alpha1 only, without the conversion webhook: for an operator run outside
        /// the cluster, which no Service reaches (benchmarks, profiles).
        #[arg(long, conflicts_with_all = ["helm", "reference"])]
        without_webhook: bool,
        /// Name the webhook by this URL instead of the Service: for an operator run outside
        /// the cluster with --conversion-url (make dev).
        #[arg(long, conflicts_with_all = ["helm", "reference", "without_webhook"])]
        conversion_url: Option<String>,
    },
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

/// The conversion webhook (`webhook`). Off unless `--conversion-webhook-addr` is given.
#[derive(clap::Args)]
struct ConversionArgs {
    /// Serve the conversion webhook (HTTPS) on this address, on every replica.
    #[arg(long, env = "CONVERSION_WEBHOOK_ADDR")]
    conversion_webhook_addr: Option<SocketAddr>,
    /// The URL the CRDs' conversion names instead of a Service, for an operator outside the
    /// cluster that the API server reaches directly (make dev): https://HOST:PORT/convert.
    #[arg(long, env = "CONVERSION_URL")]
    conversion_url: Option<String>,
    /// Serve the certificate mounted here (tls.crt, tls.key) instead of keeping a CA: for
    /// a chart that lets cert-manager issue it and inject its CA into the CRDs.
    #[arg(long, env = "CONVERSION_TLS_DIR")]
    conversion_tls_dir: Option<std::path::PathBuf>,
    /// The Service in the operator's namespace that the CRDs' conversion names.
    #[arg(long, env = "CONVERSION_SERVICE", default_value = api::versions::DEFAULT_SERVICE)]
    conversion_service: String,
    /// The Secret in the operator's namespace that holds the webhook's CA.
    #[arg(
        long,
        env = "CONVERSION_CA_SECRET",
        default_value = "frontegg-token-operator-conversion-ca"
    )]
    conversion_ca_secret: String,
    /// Lifetime of the webhook's CA; it is replaced when a third is left.
    #[arg(long, default_value = "8760h", value_parser = humantime::parse_duration)]
    conversion_ca_lifetime: Duration,
    /// Lifetime of each replica's serving certificate; renewed when a third is left.
    #[arg(long, default_value = "168h", value_parser = humantime::parse_duration)]
    conversion_cert_lifetime: Duration,
}

#[derive(clap::Args)]
struct RunArgs {
    #[command(flatten)]
    conversion: ConversionArgs,
    /// Namespaces to watch (comma separated). Empty: the whole cluster.
    #[arg(
        long,
        env = "WATCH_NAMESPACES",
        value_delimiter = ',',
        default_value = ""
    )]
    watch_namespaces: Vec<String>,
    /// Namespace the operator runs in; ClusterFronteggEnvironment credentials are read here.
    #[arg(long, env = "POD_NAMESPACE", default_value = "frontegg-token-operator")]
    operator_namespace: String,
    /// The chart's default ClusterFronteggEnvironment, as JSON: applied at start, owned by the
    /// operator from the chart's values (not a Helm hook, which upgrades would recreate).
    #[arg(long, env = "DEFAULT_ENVIRONMENT_MANIFEST")]
    default_environment_manifest: Option<String>,
    /// Environment used by tokens without spec.environmentRef, as Kind/name.
    #[arg(
        long,
        env = "DEFAULT_ENVIRONMENT",
        default_value = "ClusterFronteggEnvironment/default"
    )]
    default_environment: String,
    /// Drift check and steady-state requeue period.
    #[arg(long, env = "RESYNC_PERIOD", default_value = "5m", value_parser = humantime::parse_duration)]
    resync_period: Duration,
    /// Retry period for permanently failed resources that saw no change.
    #[arg(long, env = "PERMANENT_FAILURE_RETRY", default_value = "10m", value_parser = humantime::parse_duration)]
    permanent_failure_retry: Duration,
    /// Re-check period for environments whose credentials fail.
    #[arg(long, env = "ENVIRONMENT_RETRY", default_value = "30s", value_parser = humantime::parse_duration)]
    environment_retry: Duration,
    /// Concurrent reconciles per kind.
    #[arg(long, env = "CONCURRENCY", default_value_t = 4)]
    concurrency: u16,
    /// Default Frontegg requests per second per environment.
    #[arg(long, env = "FRONTEGG_QPS", default_value_t = 10)]
    qps: u32,
    /// Default Frontegg burst per environment.
    #[arg(long, env = "FRONTEGG_BURST", default_value_t = 20)]
    burst: u32,
    /// Deadline of one Frontegg request, body included.
    #[arg(long, env = "FRONTEGG_TIMEOUT", default_value = "10s", value_parser = humantime::parse_duration)]
    request_timeout: Duration,
    /// At most one remote create per token resource per this interval, whatever triggers it
    /// (rotation, repair, a spec change). 0s turns the guard off.
    #[arg(long, env = "MIN_REISSUE_INTERVAL", default_value = "1m", value_parser = humantime::parse_duration)]
    min_reissue_interval: Duration,
    /// After failed issuances, a resource's next create waits twice as long each time, from
    /// --min-reissue-interval up to this; a spec change or a rotate request starts over.
    #[arg(long, env = "MAX_REISSUE_BACKOFF", default_value = "6h", value_parser = humantime::parse_duration)]
    max_reissue_backoff: Duration,
    /// How long a replaced token keeps working after its successor is in the Secret, so that
    /// workloads switch first (spec.rotation.gracePeriod overrides it per resource).
    #[arg(long, env = "GRACE_PERIOD", default_value = "10m", value_parser = humantime::parse_duration)]
    grace_period: Duration,
    /// Base URLs environments may use, as globs over `scheme://host[:port]` (repeat the flag,
    /// or separate with commas). An environment whose baseUrl matches none is refused before
    /// any request. The default is Frontegg's regional API hosts and its sub-domains.
    #[arg(
        long = "allowed-base-url",
        env = "ALLOWED_BASE_URLS",
        value_delimiter = ',',
        default_values = [
            "https://api.frontegg.com",
            "https://api.us.frontegg.com",
            "https://api.ca.frontegg.com",
            "https://api.au.frontegg.com",
            "https://*.frontegg.com",
        ]
    )]
    allowed_base_urls: Vec<String>,
    /// Only serve ClusterFronteggEnvironments matching this label selector.
    #[arg(long, env = "CLUSTER_ENVIRONMENT_SELECTOR")]
    cluster_environment_selector: Option<String>,
    /// Revoke leaked tokens: tokens this installation created whose resource no longer exists
    /// (its finalizer removed by hand), seen for a full resync period and absent from a fresh
    /// read. Without it they are only reported.
    #[arg(long, env = "COLLECT_LEAKED_TOKENS", default_value_t = false, action = clap::ArgAction::Set, num_args = 0..=1, default_missing_value = "true")]
    collect_leaked_tokens: bool,
    /// Address of /healthz, /readyz and /metrics.
    #[arg(long, env = "METRICS_ADDR", default_value = "0.0.0.0:8080")]
    metrics_addr: SocketAddr,
    /// Elect a leader with a Lease so that only one replica reconciles.
    #[arg(long, env = "LEADER_ELECTION", default_value_t = true, action = clap::ArgAction::Set)]
    leader_election: bool,
    /// Name of the leader-election Lease.
    #[arg(long, env = "LEASE_NAME", default_value = "frontegg-token-operator")]
    lease_name: String,
    /// Namespace of the Lease (default: the operator namespace).
    #[arg(long, env = "LEASE_NAMESPACE")]
    lease_namespace: Option<String>,
    /// Seconds a lease stays valid without renewal.
    #[arg(long, env = "LEASE_DURATION_SECONDS", default_value_t = 15)]
    lease_duration_seconds: u64,
    /// Seconds before expiry that the leader renews.
    #[arg(long, env = "LEASE_GRACE_SECONDS", default_value_t = 5)]
    lease_grace_seconds: u64,
    /// Log format.
    #[arg(long, env = "LOG_FORMAT", value_enum, default_value = "text")]
    log_format: LogFormat,
}

fn main() -> ExitCode {
    match Cli::parse().command {
        Command::Crd {
            reference: true, ..
        } => {
            print!("{}", api::crd_reference());
            ExitCode::SUCCESS
        }
        Command::Crd {
            helm,
            without_webhook,
            conversion_url,
            ..
        } => match if helm {
            api::helm_crds_template()
        } else if without_webhook {
            api::crds_yaml(&api::Conversion::AlphaOnly)
        } else if let Some(url) = conversion_url {
            api::crds_yaml(&api::Conversion::Url(url))
        } else {
            api::crds_yaml(&api::Conversion::Webhook)
        } {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: could not render CRDs: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Run(args) => {
            init_logging(args.log_format);
            log_panics();
            let runtime = match tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(e) => {
                    eprintln!("error: cannot start the async runtime: {e}");
                    return ExitCode::FAILURE;
                }
            };
            match runtime.block_on(run(*args)) {
                Ok(()) => ExitCode::SUCCESS,
                Err(e) => {
                    tracing::error!(error = %e, "operator stopped");
                    ExitCode::FAILURE
                }
            }
        }
    }
}

/// Panics are caught per reconcile; this hook logs them as one structured line, without
/// capturing a backtrace (symbolizing one costs tens of MiB in a process that keeps running).
fn log_panics() {
    std::panic::set_hook(Box::new(|info| {
        let message = info
            .payload()
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| info.payload().downcast_ref::<String>().cloned())
            .unwrap_or_default();
        let location = info
            .location()
            .map(|l| format!("{}:{}", l.file(), l.line()))
            .unwrap_or_default();
        tracing::error!(%location, %message, "panic (an operator bug)");
    }));
}

fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,kube=warn"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let default_environment = controller::parse_environment_ref(&args.default_environment)
        .map_err(|e| anyhow::anyhow!("--default-environment: {e}"))?;
    let client = kube::Client::try_default()
        .await
        .map_err(|e| anyhow::anyhow!("cannot reach Kubernetes: {e}"))?;
    prepare_cluster(&client, &args).await?;
    let metrics = Arc::new(Metrics::new());
    let installation = installation_id(&client, &args.watch_namespaces).await;
    let mut ctx = context(&args, default_environment, client.clone(), metrics.clone());
    ctx.config.installation_id = installation;
    let ctx = Arc::new(ctx);
    let scope = watch_scope(&args);
    let ready = Arc::new(AtomicBool::new(false));
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let shutdown = async move {
        let _ = stop_rx.wait_for(|stop| *stop).await;
    }
    .boxed()
    .shared();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutting down: finishing in-flight reconciles");
        let _ = stop_tx.send(true);
    });
    let webhook = start_webhook(&args, &client, shutdown.clone());
    let http = tokio::spawn(server::serve(
        args.metrics_addr,
        ready.clone(),
        webhook.as_ref().map(|(serving, _)| serving.clone()),
        metrics,
        shutdown.clone(),
    ));
    tracing::info!(namespaces = ?scope.namespaces, "starting");
    let result = if args.leader_election {
        let lease = lease_config(&args, &ctx.config.operator_namespace);
        let controllers_ready = ready.clone();
        match leader::run(client, lease, ready, shutdown, |stop| {
            controller::run(ctx, scope, controllers_ready, stop)
        })
        .await?
        {
            leader::Outcome::ShutDown => Ok(()),
            leader::Outcome::LostLeadership => Err(anyhow::anyhow!("lost leadership")),
        }
    } else {
        controller::run(ctx, scope, ready, shutdown).await;
        Ok(())
    };
    http.abort();
    // Conversions keep being answered while the Service drops this pod (webhook::DRAIN).
    if let Some((_, task)) = webhook {
        let _ = task.await;
    }
    result
}

/// Before any reconcile: the CRDs are ones this release can read, and the chart's default
/// environment is as its values say.
async fn prepare_cluster(client: &kube::Client, args: &RunArgs) -> anyhow::Result<()> {
    refuse_unreadable_crds(client).await?;
    if let Some(manifest) = &args.default_environment_manifest {
        let name = controller::environment::chart_default::own(client, manifest)
            .await
            .map_err(|e| anyhow::anyhow!(e))?;
        tracing::info!(environment = %name, "the chart's default environment is applied");
    }
    Ok(())
}

/// Stops before any reconcile when the CRDs hold objects this release cannot read. Without the
/// right to read CRDs (RBAC made by hand), says so and goes on.
async fn refuse_unreadable_crds(client: &kube::Client) -> anyhow::Result<()> {
    use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
    let crds: kube::Api<CustomResourceDefinition> = kube::Api::all(client.clone());
    for ours in api::all_crds() {
        let name = ours.metadata.name.unwrap_or_default();
        match crds.get(&name).await {
            Ok(crd) => {
                if let Some(why) = api::versions::unreadable(&crd) {
                    anyhow::bail!(why);
                }
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {
                anyhow::bail!(
                    "CRD {name} is not installed: install the chart with crds.install, or crds/"
                )
            }
            Err(e) => {
                tracing::warn!(crd = %name, error = %e, "cannot read the CRD; its stored versions are not checked")
            }
        }
    }
    Ok(())
}

fn watch_scope(args: &RunArgs) -> controller::WatchScope {
    controller::WatchScope {
        namespaces: args
            .watch_namespaces
            .iter()
            .filter(|n| !n.is_empty())
            .cloned()
            .collect(),
        cluster_environment_selector: args.cluster_environment_selector.clone(),
        concurrency: args.concurrency,
    }
}

/// Starts the conversion webhook when asked; returns its certificate, which readiness waits
/// for, and its task, which ends once it has drained.
fn start_webhook(
    args: &RunArgs,
    client: &kube::Client,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Option<(Arc<webhook::ServingCert>, tokio::task::JoinHandle<()>)> {
    let conversion = &args.conversion;
    let addr = conversion.conversion_webhook_addr?;
    let options = webhook::Options {
        addr,
        namespace: args.operator_namespace.clone(),
        service: conversion.conversion_service.clone(),
        url: conversion.conversion_url.clone(),
        tls_dir: conversion.conversion_tls_dir.clone(),
        ca_secret: conversion.conversion_ca_secret.clone(),
        ca_lifetime: conversion.conversion_ca_lifetime,
        cert_lifetime: conversion.conversion_cert_lifetime,
    };
    let serving = Arc::new(webhook::ServingCert::default());
    let running = serving.clone();
    let client = client.clone();
    let task = tokio::spawn(async move {
        if let Err(e) = webhook::run(client, options, running, shutdown).await {
            tracing::error!(error = %e, "the conversion webhook stopped");
        }
    });
    Some((serving, task))
}

/// This installation's id for the marks (`steps::marker::installation_id`), from the
/// `kube-system` namespace's UID. Without it, tokens are marked as earlier versions did and
/// none is ever taken for leaked.
async fn installation_id(client: &kube::Client, watched: &[String]) -> Option<String> {
    let namespaces: kube::Api<k8s_openapi::api::core::v1::Namespace> =
        kube::Api::all(client.clone());
    match namespaces.get_metadata_opt("kube-system").await {
        Ok(Some(ns)) => {
            let watched: Vec<String> = watched.iter().filter(|n| !n.is_empty()).cloned().collect();
            ns.metadata
                .uid
                .map(|uid| controller::installation_id(&uid, &watched))
        }
        Ok(None) => None,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the kube-system namespace; leaked tokens will not be detected");
            None
        }
    }
}

/// The context every reconcile shares, from the flags.
fn context(
    args: &RunArgs,
    default_environment: api::EnvironmentRef,
    client: kube::Client,
    metrics: Arc<Metrics>,
) -> controller::Context {
    let events = controller::events::EventPublisher::new(
        client.clone(),
        "frontegg-token-operator".into(),
        std::env::var("POD_NAME").unwrap_or_else(|_| "frontegg-token-operator".into()),
    );
    let config = controller::Config {
        operator_namespace: args.operator_namespace.clone(),
        default_environment,
        resync: args.resync_period,
        permanent_retry: args.permanent_failure_retry,
        environment_retry: args.environment_retry,
        qps: args.qps,
        burst: args.burst,
        request_timeout: args.request_timeout,
        min_reissue_interval: args.min_reissue_interval,
        grace_period: args.grace_period,
        allowed_base_urls: args.allowed_base_urls.clone(),
        cluster_environment_selector: args.cluster_environment_selector.clone(),
        installation_id: None,
        collect_leaked_tokens: args.collect_leaked_tokens,
        max_reissue_backoff: args.max_reissue_backoff,
        concurrency: args.concurrency,
    };
    controller::Context::new(client, events, config, metrics)
}

fn lease_config(args: &RunArgs, operator_namespace: &str) -> leader::LeaseConfig {
    leader::LeaseConfig {
        name: args.lease_name.clone(),
        namespace: args
            .lease_namespace
            .clone()
            .unwrap_or_else(|| operator_namespace.to_string()),
        identity: std::env::var("POD_NAME").unwrap_or_else(|_| {
            format!("frontegg-token-operator-{}", uuid::Uuid::new_v4().simple())
        }),
        duration_seconds: args.lease_duration_seconds,
        grace_seconds: args.lease_grace_seconds,
    }
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(s) => s,
                Err(_) => return std::future::pending().await,
            };
        tokio::select! {
            _ = term.recv() => {}
            _ = tokio::signal::ctrl_c() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
