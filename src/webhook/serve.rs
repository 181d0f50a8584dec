//! The HTTPS server: one task per connection, its TLS handshake and request bodies bounded,
//! so a slow or hostile client holds only its own connection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use kube::core::conversion::{ConversionRequest, ConversionResponse, ConversionReview};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;

use super::ServingCert;
use crate::api::convert;

/// The API server sends at most a list's worth of objects; 3 MiB is etcd's object limit.
const MAX_BODY: usize = 16 * 1024 * 1024;
const HANDSHAKE_DEADLINE: Duration = Duration::from_secs(10);
const CONNECTION_DEADLINE: Duration = Duration::from_secs(120);
/// The API server keeps a few connections per replica; past this many, new ones wait in the
/// listen backlog, so a flood of idle handshakes cannot grow the tasks without bound.
const MAX_CONNECTIONS: usize = 256;

pub async fn serve(
    addr: SocketAddr,
    serving: Arc<ServingCert>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let mut config = ServerConfig::builder()
        .with_no_client_auth()
        .with_cert_resolver(serving);
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving the conversion webhook");
    let app = Router::new()
        .route(crate::api::versions::CONVERSION_PATH, post(handle))
        .layer(DefaultBodyLimit::max(MAX_BODY));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => match slot {
                Ok(slot) => slot,
                Err(_) => return Ok(()),
            },
            () = &mut shutdown => return Ok(()),
        };
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::debug!(error = %e, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let (acceptor, app) = (acceptor.clone(), app.clone());
        tokio::spawn(async move {
            connection(acceptor, stream, app).await;
            drop(slot);
        });
    }
}

async fn connection(acceptor: TlsAcceptor, stream: tokio::net::TcpStream, app: Router) {
    let Ok(Ok(tls)) = tokio::time::timeout(HANDSHAKE_DEADLINE, acceptor.accept(stream)).await
    else {
        return;
    };
    let service = TowerToHyperService::new(app);
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(HANDSHAKE_DEADLINE)
        .serve_connection(TokioIo::new(tls), service);
    let _ = tokio::time::timeout(CONNECTION_DEADLINE, conn).await;
}

async fn handle(Json(review): Json<ConversionReview>) -> Json<ConversionReview> {
    Json(convert_review(review))
}

/// Answers a review: every object converted, or the whole review failed with the first
/// object's error (the API server takes all or nothing).
pub fn convert_review(review: ConversionReview) -> ConversionReview {
    let request = match ConversionRequest::from_review(review) {
        Ok(r) => r,
        Err(_) => {
            return ConversionResponse::invalid(failure("the review has no request")).into_review();
        }
    };
    let desired = request.desired_api_version.clone();
    let objects = request.objects.clone();
    let response = ConversionResponse::for_request(request);
    let converted: Result<Vec<_>, _> = objects
        .into_iter()
        .map(|o| convert::convert(o, &desired))
        .collect();
    match converted {
        Ok(objects) => response.success(objects),
        Err(e) => response.failure(failure(&e.to_string())),
    }
    .into_review()
}

fn failure(message: &str) -> kube::core::Status {
    kube::core::Status::failure(message, "ConversionFailed")
}
