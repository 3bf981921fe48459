//! `POST /api/v1/write`: remote write 1.0; `POST /api/v1/read`: remote read.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::Storage;
use super::bounded::QueryGate;
use crate::remote::{WriteError, decompress_into, write_decoded};
use crate::storage::{ErrorKind, RejectReason};

/// The remote area: the remote-write receiver and remote read (a query path,
/// through the query gate).
#[derive(Clone)]
pub struct RemoteApi {
    pub storage: Storage,
    pub gate: QueryGate,
    /// `--web.enable-remote-write-receiver`.
    pub receiver: bool,
    pub write_limits: crate::remote::WriteLimits,
    /// Bounds the remote-write requests being decoded and appended at once.
    pub write_permits: std::sync::Arc<tokio::sync::Semaphore>,
    /// `global.external_labels`: added to what remote read returns.
    pub external_labels: std::sync::Arc<std::collections::BTreeMap<String, String>>,
}

pub fn routes(state: RemoteApi) -> axum::Router {
    use axum::extract::DefaultBodyLimit;
    use axum::routing::post;
    let limit = state.write_limits.max_body_bytes;
    axum::Router::new()
        .route(
            "/api/v1/write",
            post(write).layer(DefaultBodyLimit::max(limit)),
        )
        .route(
            "/api/v1/read",
            post(read).layer(DefaultBodyLimit::max(limit)),
        )
        .with_state(state)
}

thread_local! {
    /// The decompression buffer of each blocking thread, reused between requests.
    static DECOMPRESSED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Answers as Prometheus's receiver: 204 once the batch is durable; 400 with a plain
/// text reason for input that must not be retried (bad encoding, bad labels, samples
/// refused as out of order, out of bounds or duplicate — the rest of the batch is
/// stored); 5xx when storage failed and a retry may succeed.
async fn write(State(s): State<RemoteApi>, headers: HeaderMap, body: Bytes) -> Response {
    if !s.receiver {
        // Prometheus's answer with its receiver off.
        return text(
            StatusCode::NOT_FOUND,
            "remote write receiver needs to be enabled with --web.enable-remote-write-receiver"
                .into(),
        );
    }
    let backends = match s.storage.get() {
        Ok(b) => b.appendable.clone(),
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.message).into_response(),
    };
    if let Some(enc) = headers.get(header::CONTENT_ENCODING) {
        if !enc.as_bytes().eq_ignore_ascii_case(b"snappy") {
            return text(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                format!("unsupported content encoding {enc:?}; remote write 1.0 uses snappy"),
            );
        }
    }
    let limits = s.write_limits;
    let Ok(permit) = s.write_permits.clone().acquire_owned().await else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down".into());
    };
    let result = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        DECOMPRESSED.with_borrow_mut(|buf| {
            decompress_into(&body, limits, buf)?;
            let outcome = write_decoded(backends.as_ref(), buf, limits);
            // Keep a moderate buffer for the next request on this thread, not the
            // largest one ever seen.
            if buf.capacity() > 16 << 20 {
                *buf = Vec::new();
            }
            outcome
        })
    })
    .await;
    match result {
        Ok(Ok(summary)) if summary.rejected() == 0 => StatusCode::NO_CONTENT.into_response(),
        Ok(Ok(summary)) => {
            let reasons: Vec<String> = RejectReason::ALL
                .iter()
                .filter(|r| summary.count(**r) > 0)
                .map(|r| format!("{} {}", summary.count(*r), r.as_str()))
                .collect();
            text(
                StatusCode::BAD_REQUEST,
                format!(
                    "stored {} samples, refused {}: {}",
                    summary.accepted,
                    summary.rejected(),
                    reasons.join(", ")
                ),
            )
        }
        Ok(Err(WriteError::Storage { kind, message })) => {
            let code = match kind {
                ErrorKind::BadData => StatusCode::BAD_REQUEST,
                ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
                // A 5xx: the sender keeps the batch and retries it, and it lands
                // once space returns.
                ErrorKind::InsufficientStorage => StatusCode::INSUFFICIENT_STORAGE,
                ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            };
            if code.is_server_error() {
                tracing::error!(error = %message, "remote write commit failed");
            }
            text(code, format!("storage: {message}"))
        }
        Ok(Err(e)) => text(StatusCode::BAD_REQUEST, e.to_string()),
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("write task failed: {e}"),
        ),
    }
}

fn text(code: StatusCode, msg: String) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        msg + "\n",
    )
        .into_response()
}

/// Remote reads served at once (Prometheus's `--storage.remote.read-concurrent-limit`).
const READ_CONCURRENCY: usize = 10;

static READ_PERMITS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(READ_CONCURRENCY);

/// `POST /api/v1/read`: remote read, sampled or streamed (see `crate::remote::read`).
///
/// A query path like the query API's (see `super::bounded`): it takes one of the
/// `--query.max-concurrency` permits as well as a remote-read one, and
/// `--query.timeout` bounds it; a streamed answer stops at the deadline or when the
/// client goes away.
async fn read(State(s): State<RemoteApi>, body: Bytes) -> Response {
    use super::bounded::{acquire_permit, request_timeout, run_bounded};
    use crate::remote::read::{
        ReadBudget, ReadError, SAMPLES_CONTENT_TYPE, STREAMED_CONTENT_TYPE, decode_read_request,
        sampled_response, stream_chunks,
    };
    let (queryable, chunks) = match s.storage.get() {
        Ok(b) => (b.queryable.clone(), b.chunks.clone()),
        Err(e) => return (StatusCode::SERVICE_UNAVAILABLE, e.message).into_response(),
    };
    let deadline = std::time::Instant::now() + request_timeout(&s.gate, None);
    // Decoding is bounded by the request's size (see `decode_read_request`): a bad
    // request is refused before it waits for a turn.
    let external = s.external_labels.clone();
    let read = match decode_read_request(&body, &external) {
        Ok(r) => r,
        Err(e) => return text(StatusCode::BAD_REQUEST, e.to_string()),
    };
    let read_permit = tokio::select! {
        p = tokio::time::timeout_at(deadline.into(), READ_PERMITS.acquire()) => match p {
            Ok(Ok(p)) => p,
            Ok(Err(_)) => return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down".into()),
            Err(_) => {
                return text(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "query timed out in remote read queue".into(),
                );
            }
        },
        _ = s.gate.shutdown.cancelled() => {
            return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down".into());
        }
    };
    let api_error = |e: super::response::ApiError| text(e.kind.status(), e.message);
    if !read.streamed {
        let answer = run_bounded(&s.gate, None, None, move |limits| {
            let check = || limits.check("remote read").map_err(|e| e.to_string());
            let budget = ReadBudget {
                check: &check,
                max_samples: limits.max_samples,
            };
            Ok(sampled_response(
                queryable.as_ref(),
                &read.queries,
                &external,
                &budget,
            ))
        })
        .await;
        drop(read_permit);
        return match answer {
            Ok(Ok(body)) => (
                StatusCode::OK,
                [
                    (header::CONTENT_TYPE, SAMPLES_CONTENT_TYPE),
                    (header::CONTENT_ENCODING, "snappy"),
                ],
                body,
            )
                .into_response(),
            Ok(Err(ReadError::BadRequest(m))) => text(StatusCode::BAD_REQUEST, m),
            Ok(Err(ReadError::Stopped(m))) => text(StatusCode::SERVICE_UNAVAILABLE, m),
            Ok(Err(ReadError::Internal(m))) => text(StatusCode::INTERNAL_SERVER_ERROR, m),
            Err(e) => api_error(e),
        };
    }
    let permit = match acquire_permit(&s.gate, deadline).await {
        Ok(p) => p,
        Err(e) => return api_error(e),
    };
    // Frames go out as they are produced; a slow client slows the producer (the
    // channel is small). The producer waits for the client at most until the
    // deadline or shutdown, so a client that stops reading holds its thread and its
    // permits no longer than the query timeout; one that goes away stops it at once.
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let metrics = s.gate.metrics.clone();
    let runtime = tokio::runtime::Handle::current();
    let stopping = s.gate.shutdown.clone();
    tokio::task::spawn_blocking(move || {
        let _permits = (permit, read_permit);
        let _evaluating = metrics.evaluating();
        let past_deadline = || std::time::Instant::now() > deadline;
        let check = || {
            if stopping.is_cancelled() {
                Err("remote read stopped: shutting down".to_string())
            } else if past_deadline() {
                Err("query timed out in remote read".to_string())
            } else {
                Ok(())
            }
        };
        let budget = ReadBudget {
            check: &check,
            max_samples: usize::MAX,
        };
        let mut emit = |frame: Vec<u8>| {
            let send = tx.send(Ok(Bytes::from(frame)));
            runtime.block_on(async {
                tokio::select! {
                    sent = tokio::time::timeout_at(deadline.into(), send) => matches!(sent, Ok(Ok(()))),
                    _ = stopping.cancelled() => false,
                }
            })
        };
        let outcome = stream_chunks(
            chunks.as_ref(),
            &read.queries,
            &external,
            &budget,
            &mut emit,
        );
        // Headers are gone already: end the body with an error, as Prometheus does
        // by closing the stream.
        let failure = match outcome {
            Err(e) => Some(e.to_string()),
            Ok(_) => check().err(),
        };
        if let Some(e) = failure {
            tracing::warn!(error = %e, "remote read stream failed");
            let _ = tx.try_send(Err(std::io::Error::other(e)));
        }
    });
    let stream = futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, STREAMED_CONTENT_TYPE)],
        axum::body::Body::from_stream(stream),
    )
        .into_response()
}
