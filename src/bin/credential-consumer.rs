//! A workload that uses a token Secret the way applications do, for the in-cluster test and
//! `make dev IN_CLUSTER=1`: it mounts the Secret as a volume, reads the files again before
//! every request, and exchanges the API token's client credentials at Frontegg. So a rotation
//! reaches it only through the kubelet's Secret refresh, and each line it prints says whether
//! the credential it held at that moment still worked.
#![cfg_attr(
    not(test),
    deny(
        clippy::arithmetic_side_effects,
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing,
        clippy::too_many_lines
    )
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;
use secrecy::{ExposeSecret, SecretString};
use serde_json::json;

#[derive(Parser)]
#[command(about = "Reads a mounted API-token Secret before each request and exchanges it")]
struct Args {
    /// Where the Secret is mounted (keys clientId, secret and baseUrl).
    #[arg(long, default_value = "/var/run/frontegg")]
    dir: PathBuf,
    /// Pause between requests.
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    interval: Duration,
}

struct Credential {
    client_id: String,
    secret: SecretString,
    base_url: String,
}

/// The kubelet swaps a Secret volume atomically by repointing `..data`, so the three keys are
/// read from one resolved generation; otherwise a read that straddles a swap could pair an old
/// client id with a new secret, a failure of this reader and not of the rotation.
fn read(dir: &Path) -> std::io::Result<Credential> {
    let generation = match std::fs::read_link(dir.join("..data")) {
        Ok(target) => dir.join(target),
        Err(_) => dir.to_path_buf(),
    };
    let key = |name: &str| -> std::io::Result<String> {
        Ok(std::fs::read_to_string(generation.join(name))?
            .trim()
            .to_owned())
    };
    Ok(Credential {
        client_id: key("clientId")?,
        secret: SecretString::from(key("secret")?),
        base_url: key("baseUrl")?,
    })
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .redirect(reqwest::redirect::Policy::none())
        .build()?;
    loop {
        match read(&args.dir) {
            // A generation removed between readlink and read: not a request, try again.
            Err(e) => println!("{}", json!({"event": "unreadable", "error": e.to_string()})),
            Ok(cred) => {
                let url = format!(
                    "{}/identity/resources/auth/v2/api-token",
                    cred.base_url.trim_end_matches('/')
                );
                let body =
                    json!({"clientId": cred.client_id, "secret": cred.secret.expose_secret()});
                let status = match http.post(url).json(&body).send().await {
                    Ok(r) => r.status().as_u16(),
                    Err(_) => 0,
                };
                println!(
                    "{}",
                    json!({"event": "request", "clientId": cred.client_id, "status": status, "ok": status == 200})
                );
            }
        }
        tokio::time::sleep(args.interval).await;
    }
}
