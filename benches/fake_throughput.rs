//! Throughput of frontegg-fake on loopback (the fake must never be the bottleneck of a test or
//! benchmark), and of the identity client against it. Prints a Markdown table row set.
//! Run with `make bench`, which writes docs/benchmarks.md.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use frontegg_token_operator::identity::*;

const CONCURRENCY: usize = 64;
const DURATION: Duration = Duration::from_secs(5);

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::main]
async fn main() {
    let port = free_port();
    let fake_bin = std::env::var("FRONTEGG_FAKE_BIN").unwrap_or_else(|_| {
        concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/frontegg-fake").into()
    });
    let mut fake = Command::new(&fake_bin)
        .args([
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--client-id",
            "bench",
            "--secret",
            "bench-secret",
        ])
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {fake_bin}: {e}"));
    let url = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..100 {
        if http.get(format!("{url}/_admin/stats")).send().await.is_ok() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let options = ClientOptions {
        qps: std::num::NonZeroU32::new(1_000_000).unwrap(),
        burst: std::num::NonZeroU32::new(1_000_000).unwrap(),
        ..ClientOptions::default()
    };
    let env = EnvironmentConfig {
        base_url: url.clone(),
        client_id: "bench".into(),
        secret: SecretString::from("bench-secret"),
        environment_id: None,
        auth: AuthMode::Vendor,
    };
    let client = Arc::new(IdentityClient::new(env, options, None).unwrap());
    let scope = TokenOwner {
        tenant_id: "t".into(),
        user_id: Some("u".into()),
    };
    // A realistic list: 20 tokens in the group.
    for _ in 0..20 {
        client
            .create::<UserApiTokens>(&scope, &CreateUserApiToken::default())
            .await
            .unwrap();
    }

    println!("| scenario | concurrency | requests | requests/s | p50 ms | p99 ms |");
    println!("|---|---|---|---|---|---|");
    for (name, create) in [
        ("list 20 user API tokens", false),
        ("create user access token", true),
    ] {
        let done = Arc::new(AtomicU64::new(0));
        let latencies = Arc::new(std::sync::Mutex::new(Vec::new()));
        let started = Instant::now();
        let workers: Vec<_> = (0..CONCURRENCY)
            .map(|_| {
                let (client, scope, done, latencies) = (
                    client.clone(),
                    scope.clone(),
                    done.clone(),
                    latencies.clone(),
                );
                tokio::spawn(async move {
                    let mut mine = Vec::new();
                    while started.elapsed() < DURATION {
                        let t = Instant::now();
                        if create {
                            client
                                .create::<UserAccessTokens>(
                                    &scope,
                                    &CreateUserAccessToken::default(),
                                )
                                .await
                                .unwrap();
                        } else {
                            client.list::<UserApiTokens>(&scope).await.unwrap();
                        }
                        mine.push(t.elapsed());
                        done.fetch_add(1, Ordering::Relaxed);
                    }
                    latencies.lock().unwrap().extend(mine);
                })
            })
            .collect();
        for w in workers {
            w.await.unwrap();
        }
        let elapsed = started.elapsed().as_secs_f64();
        let n = done.load(Ordering::Relaxed);
        let mut l = latencies.lock().unwrap().clone();
        l.sort();
        let pct =
            |p: f64| l[((l.len() as f64 * p) as usize).min(l.len() - 1)].as_secs_f64() * 1000.0;
        println!(
            "| {name} | {CONCURRENCY} | {n} | {:.0} | {:.2} | {:.2} |",
            n as f64 / elapsed,
            pct(0.5),
            pct(0.99)
        );
    }
    let _ = fake.kill();
    let _ = fake.wait();
}
