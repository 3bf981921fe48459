//! `GET /loki/api/v1/tail`: a websocket that first sends the query's lines since
//! `start` (forward, up to `limit`), then every matching line as it is applied.
//! Each message is Loki's: `{"streams": [{"stream": {…}, "values": [["ns", "line"]]}]}`.
//! A tail that falls more than the store's backlog behind is closed with a reason
//! (1011), never silently thinned.

use std::collections::HashSet;
use std::sync::Arc;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::HeaderMap;
use axum::response::Response;
use tokio::sync::broadcast::error::RecvError;

use super::{LokiApi, LokiError, bad_request, loki_time, param, tenant, unavailable};
use crate::api::admin::form_params;
use crate::log::record::LogBatch;
use crate::logs::logql::ast::{Expr, LogExpr};
use crate::logs::logql::parser::parse;
use crate::logs::logql::pipeline::Pipeline;
use crate::logs::query::{self, Direction, LabelPairs, LogRange, StreamResult};

/// A line the history sent: its labels, time and text.
type SentLine = (LabelPairs, i64, String);

/// Loki's `max_concurrent_tail_requests`.
pub const MAX_CONCURRENT_TAILS: usize = 10;

pub(super) async fn tail(
    State(s): State<LokiApi>,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    ws: WebSocketUpgrade,
) -> Result<Response, LokiError> {
    let tenant = tenant(&headers)?;
    let params = form_params(q.as_deref(), &headers, &[]);
    let expr = match parse(param(&params, "query").unwrap_or("")) {
        Ok(Expr::Log(l)) => l,
        Ok(Expr::Metric(_)) => return Err(bad_request("tail requires a log query")),
        Err(e) => return Err(bad_request(e.to_string())),
    };
    let pipeline = Pipeline::new(&expr.pipeline).map_err(bad_request)?;
    let limit = super::limit_param(&params)?;
    if limit > super::MAX_ENTRIES_LIMIT_PER_QUERY {
        return Err(bad_request(format!(
            "max entries limit per query exceeded, limit > max_entries_limit_per_query ({limit} > {})",
            super::MAX_ENTRIES_LIMIT_PER_QUERY
        )));
    }
    if let Some(d) = param(&params, "delay_for") {
        let secs: u64 = d
            .parse()
            .map_err(|_| bad_request(format!("cannot parse \"{d}\": not a number of seconds")))?;
        if secs > 5 {
            return Err(bad_request("delay_for can't be greater than 5"));
        }
    }
    let now = crate::model::now_ms().saturating_mul(1_000_000);
    let start = param(&params, "start")
        .map(loki_time)
        .transpose()
        .map_err(bad_request)?
        .unwrap_or(now - 3600 * 1_000_000_000);
    let permit = s.tails.clone().try_acquire_owned().map_err(|_| {
        bad_request(format!(
            "max concurrent tail requests limit exceeded, count > limit ({} > {MAX_CONCURRENT_TAILS})",
            MAX_CONCURRENT_TAILS + 1
        ))
    })?;
    let storage = s.storage.get().map_err(unavailable)?.logs.clone();
    // Listening before reading the history: a line applied in between is in both,
    // and the history's lines are not sent again.
    let live = storage.subscribe();
    let range = LogRange {
        start_ns: start,
        end_ns: now,
        limit: limit.max(1),
        direction: Direction::Forward,
    };
    let needles = query::needles(&expr.pipeline);
    // Reading may wait on the bucket (segments older than the local ones): off the
    // async workers, as every other read.
    let (read_tenant, selector, stages) =
        (tenant.clone(), expr.selector.clone(), expr.pipeline.clone());
    let history = tokio::task::spawn_blocking(move || {
        let read_pipeline = Pipeline::new(&stages).map_err(bad_request)?;
        let selected = storage
            .select(&read_tenant, &selector, start, now, &needles)
            .map_err(|e| super::gate_error(super::storage_error(e)))?;
        Ok::<_, LokiError>(if limit == 0 {
            Vec::new()
        } else {
            query::run::<()>(&read_pipeline, selected, &range, 0, || Ok(()))
                .map(|(streams, _)| streams)
                .unwrap_or_default()
        })
    })
    .await
    .map_err(|e| {
        unavailable(crate::api::response::ApiError::unavailable(format!(
            "tail history: {e}"
        )))
    })??;
    let shutdown = s.gate.shutdown.clone();
    Ok(ws.on_upgrade(move |socket| async move {
        let _permit = permit;
        let tail = Tailer {
            tenant,
            expr,
            pipeline,
        };
        tail.run(socket, history, live, shutdown).await;
    }))
}

struct Tailer {
    tenant: String,
    expr: LogExpr,
    pipeline: Pipeline,
}

impl Tailer {
    async fn run(
        self,
        mut socket: WebSocket,
        history: Vec<StreamResult>,
        mut live: tokio::sync::broadcast::Receiver<Arc<LogBatch>>,
        shutdown: tokio_util::sync::CancellationToken,
    ) {
        let sent: HashSet<SentLine> = history
            .iter()
            .flat_map(|s| {
                s.entries
                    .iter()
                    .map(|(t, l)| (s.labels.clone(), *t, l.clone()))
            })
            .collect();
        if !history.is_empty() && socket.send(message(&history)).await.is_err() {
            return;
        }
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => {
                    let _ = socket.send(close(1001, "server shutting down")).await;
                    return;
                }
                incoming = socket.recv() => match incoming {
                    None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                    Some(Ok(_)) => {}
                },
                batch = live.recv() => match batch {
                    Ok(batch) => {
                        let streams = self.matching(&batch, &sent);
                        if !streams.is_empty() && socket.send(message(&streams)).await.is_err() {
                            return;
                        }
                    }
                    Err(RecvError::Lagged(n)) => {
                        tracing::warn!(tenant = self.tenant, entries = n, "a live tail fell behind; closing it");
                        let reason = format!("tail fell behind by {n} entries; reconnect");
                        let _ = socket.send(close(1011, &reason)).await;
                        return;
                    }
                    Err(RecvError::Closed) => return,
                },
            }
        }
    }

    /// The batch's lines this tail shows, through its pipeline, by stream.
    fn matching(&self, batch: &LogBatch, sent: &HashSet<SentLine>) -> Vec<StreamResult> {
        if batch.tenant != self.tenant {
            return Vec::new();
        }
        let mut out: std::collections::BTreeMap<LabelPairs, Vec<(i64, String)>> =
            Default::default();
        for stream in &batch.streams {
            let matched = self
                .expr
                .selector
                .iter()
                .all(|m| m.matches(stream.labels.get(&m.name).unwrap_or("")));
            if !matched {
                continue;
            }
            let pairs: Vec<(String, String)> = stream
                .labels
                .iter()
                .map(|l| (l.name.to_string(), l.value.to_string()))
                .collect();
            for line in &stream.lines {
                if let Some((labels, text)) =
                    self.pipeline
                        .process(line.ts_ns, &pairs, &line.metadata, &line.text)
                {
                    if sent.contains(&(labels.clone(), line.ts_ns, text.clone())) {
                        continue;
                    }
                    out.entry(labels).or_default().push((line.ts_ns, text));
                }
            }
        }
        out.into_iter()
            .map(|(labels, entries)| StreamResult { labels, entries })
            .collect()
    }
}

fn message(streams: &[StreamResult]) -> Message {
    let streams: Vec<serde_json::Value> = streams
        .iter()
        .map(|s| {
            let values: Vec<serde_json::Value> = s
                .entries
                .iter()
                .map(|(t, l)| serde_json::json!([t.to_string(), l]))
                .collect();
            serde_json::json!({"stream": super::labels_object(&s.labels), "values": values})
        })
        .collect();
    Message::Text(serde_json::json!({"streams": streams}).to_string().into())
}

fn close(code: u16, reason: &str) -> Message {
    Message::Close(Some(CloseFrame {
        code,
        reason: reason.to_string().into(),
    }))
}
