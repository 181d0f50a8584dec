//! `/healthz`, `/readyz` and `/metrics`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use bytes::Bytes;
use futures::StreamExt;
use tokio::sync::{Semaphore, mpsc};

use crate::metrics::Metrics;
use crate::webhook::ServingCert;

/// The most of a page a scrape holds at once, besides the chunk on its way to the client.
const SCRAPE_CHUNK: usize = 32 * 1024;
/// Scrapes encoded at once; more wait their turn. Each holds a blocking thread, which the
/// HTTP clients also need for name resolution, so a flood of scrapes must not take them all.
const CONCURRENT_SCRAPES: usize = 2;
/// How long a client may take to read the whole page before it is cut off: a client that
/// stalls, or reads just fast enough never to stall, would otherwise keep its turn for good.
const SCRAPE_DEADLINE: Duration = Duration::from_secs(30);

#[derive(Clone)]
struct AppState {
    ready: Arc<AtomicBool>,
    /// With the conversion webhook on: not ready before it serves a certificate.
    conversion: Option<Arc<ServingCert>>,
    metrics: Arc<Metrics>,
    scrapes: Arc<Semaphore>,
    deadline: Duration,
}

pub async fn serve(
    addr: SocketAddr,
    ready: Arc<AtomicBool>,
    conversion: Option<Arc<ServingCert>>,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = router(AppState {
        ready,
        conversion,
        metrics,
        scrapes: Arc::new(Semaphore::new(CONCURRENT_SCRAPES)),
        deadline: SCRAPE_DEADLINE,
    });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    tracing::info!(%addr, "serving /healthz, /readyz and /metrics");
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    let converting = state.conversion.as_ref().is_none_or(|c| c.is_ready());
    if state.ready.load(Ordering::SeqCst) && converting {
        (StatusCode::OK, "ok")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "caches not synced")
    }
}

fn router(state: AppState) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(state)
}

/// The page is streamed: its per-token part grows with the tokens (about 8 MiB at 20,000),
/// and written whole it would be the process's largest allocation at every scrape.
async fn metrics_text(State(state): State<AppState>) -> Response {
    let Ok(permit) = state.scrapes.clone().acquire_owned().await else {
        return StatusCode::SERVICE_UNAVAILABLE.into_response();
    };
    let mut head = String::new();
    if state.metrics.encode_head(&mut head).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let (tx, rx) = mpsc::channel(1);
    let mut sink = ChunkSink {
        chunk: String::new(),
        tx,
        runtime: tokio::runtime::Handle::current(),
        // 30 s from now cannot overflow; were it to, the scrape ends at once, harmlessly.
        deadline: tokio::time::Instant::now()
            .checked_add(state.deadline)
            .unwrap_or_else(tokio::time::Instant::now),
    };
    let metrics = state.metrics.clone();
    // Encoding is synchronous, and waits for the client between chunks.
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        // A page cut short ends without `# EOF`, which a scraper rejects as incomplete.
        if metrics.encode_tokens(&mut sink).is_ok() {
            let _sent = sink.send();
        }
    });
    let rest = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv()
            .await
            .map(|chunk| (Ok::<_, Infallible>(chunk), rx))
    });
    let body = futures::stream::once(async move { Ok(Bytes::from(head)) }).chain(rest);
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        Body::from_stream(body),
    )
        .into_response()
}

/// Collects the page into chunks and hands each to the response as the client reads it.
struct ChunkSink {
    chunk: String,
    tx: mpsc::Sender<Bytes>,
    runtime: tokio::runtime::Handle,
    deadline: tokio::time::Instant,
}

impl ChunkSink {
    /// Sends what is collected; an error ends the page (the client left or ran out of time).
    fn send(&mut self) -> std::fmt::Result {
        if self.chunk.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::take(&mut self.chunk));
        match self
            .runtime
            .block_on(tokio::time::timeout_at(self.deadline, self.tx.send(chunk)))
        {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) | Err(_) => Err(std::fmt::Error),
        }
    }
}

impl std::fmt::Write for ChunkSink {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        if self.chunk.capacity() == 0 {
            self.chunk.reserve(SCRAPE_CHUNK);
        }
        self.chunk.push_str(s);
        if self.chunk.len() >= SCRAPE_CHUNK {
            self.send()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use axum::http::Request;
    use http_body_util::BodyExt;
    use tower::ServiceExt;

    use super::*;
    use crate::metrics::{TokenSample, TokenSource};

    /// Enough tokens for a page of many chunks.
    struct Many(usize);

    impl TokenSource for Many {
        fn visit(&self, f: &mut dyn FnMut(&TokenSample<'_>)) {
            for i in 0..self.0 {
                let name = format!("token-{i}");
                f(&TokenSample {
                    kind: "UserApiToken",
                    namespace: "team",
                    name: &name,
                    managed_in: Some("ClusterFronteggEnvironment/e".into()),
                    expiry: Some(1_800_000_000),
                    next_renewal: Some(1_790_000_000),
                    pending_revocations: Some(0),
                    ..TokenSample::default()
                });
            }
        }
    }

    fn state(tokens: usize, deadline: Duration) -> AppState {
        let metrics = Metrics::new();
        metrics.add_token_source(Arc::new(Many(tokens)));
        AppState {
            ready: Arc::new(AtomicBool::new(true)),
            conversion: None,
            metrics: Arc::new(metrics),
            scrapes: Arc::new(Semaphore::new(CONCURRENT_SCRAPES)),
            deadline,
        }
    }

    async fn scrape(state: &AppState) -> Body {
        let request = Request::get("/metrics").body(Body::empty()).unwrap();
        let response = router(state.clone()).oneshot(request).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        response.into_body()
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_scrape_streams_the_whole_page_in_bounded_chunks() {
        let state = state(5_000, SCRAPE_DEADLINE);
        let mut body = scrape(&state).await;
        let (mut page, mut frames, mut largest) = (Vec::new(), 0, 0);
        while let Some(frame) = body.frame().await {
            let data = frame.unwrap().into_data().unwrap();
            frames += 1;
            largest = largest.max(data.len());
            page.extend_from_slice(&data);
        }
        let page = String::from_utf8(page).unwrap();
        assert_eq!(
            page,
            state.metrics.encode(),
            "the streamed page is the page"
        );
        assert!(page.ends_with("# EOF\n"));
        assert!(page.len() > 20 * SCRAPE_CHUNK, "{} bytes", page.len());
        assert!(frames > 20, "{frames} frames");
        // A chunk is sent once it reaches SCRAPE_CHUNK, so it exceeds it by less than a line.
        assert!(
            largest < SCRAPE_CHUNK + 1024,
            "largest frame {largest} bytes"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_stalled_scrape_is_cut_off_and_gives_up_its_turn() {
        let state = state(5_000, Duration::from_millis(50));
        // The client reads nothing: the encoder fills the channel, waits out the deadline, and
        // stops. Every turn is free again only once it has.
        let mut body = scrape(&state).await;
        let all = u32::try_from(CONCURRENT_SCRAPES).unwrap();
        let turns = tokio::time::timeout(Duration::from_secs(60), state.scrapes.acquire_many(all));
        drop(
            turns
                .await
                .expect("the stalled scrape was never cut off")
                .unwrap(),
        );
        let mut page = Vec::new();
        while let Some(frame) = body.frame().await {
            page.extend_from_slice(&frame.unwrap().into_data().unwrap());
        }
        let page = String::from_utf8(page).unwrap();
        assert!(
            !page.contains("# EOF"),
            "a page cut short must not look complete"
        );
        assert!(page.len() < state.metrics.encode().len());
        // The cut-off scrape left nothing behind: the next one is whole.
        let state = AppState {
            deadline: SCRAPE_DEADLINE,
            ..state
        };
        let body = scrape(&state).await.collect().await.unwrap().to_bytes();
        assert!(body.ends_with(b"# EOF\n"));
    }
}
