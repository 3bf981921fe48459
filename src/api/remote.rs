//! `POST /api/v1/write`: remote write 1.0.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::ApiState;
use crate::remote::{WriteError, decompress_into, write_decoded};
use crate::storage::RejectReason;

thread_local! {
    /// The decompression buffer of each blocking thread, reused between requests.
    static DECOMPRESSED: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Answers as Prometheus's receiver: 204 once the batch is durable; 400 with a plain
/// text reason for input that must not be retried (bad encoding, bad labels, samples
/// refused as out of order, out of bounds or duplicate — the rest of the batch is
/// stored); 5xx when storage failed and a retry may succeed.
pub async fn write(State(s): State<ApiState>, headers: HeaderMap, body: Bytes) -> Response {
    let backends = match s.backends() {
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
    let limits = s.options.write_limits;
    let Ok(permit) = s.write_permits.clone().acquire_owned().await else {
        return text(StatusCode::SERVICE_UNAVAILABLE, "shutting down".into());
    };
    let result = tokio::task::spawn_blocking(move || {
        let _permit = permit;
        DECOMPRESSED.with_borrow_mut(|buf| {
            decompress_into(&body, limits, buf)?;
            let outcome = write_decoded(backends.as_ref(), buf);
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
        Ok(Err(WriteError::Storage(m))) => {
            tracing::error!(error = %m, "remote write commit failed");
            text(StatusCode::INTERNAL_SERVER_ERROR, format!("storage: {m}"))
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
