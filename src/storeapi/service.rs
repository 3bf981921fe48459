//! The tonic services: `thanos.Store` and `thanos.info.Info` over the storage seams.
//! Storage reads run on blocking threads; a `Series` answer streams through a bounded
//! channel, so a slow client slows the read and a gone client stops it.

use std::pin::Pin;
use std::sync::{Arc, OnceLock};

use futures_util::Stream;
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status};

use crate::storeapi::error::{Result, StoreApiError};
use crate::storeapi::metrics::StoreApiMetrics;
use crate::storeapi::proto::thanos::{
    self, InfoRequest, InfoResponse, LabelNamesRequest, LabelNamesResponse, LabelValuesRequest,
    LabelValuesResponse, SeriesRequest, SeriesResponse, StoreType, ZLabelSet, info, store_server,
};
use crate::storeapi::series::{self, ExternalLabels, SeriesPlan};
use crate::storeapi::{StoreApiOptions, StoreBackends};

/// What Thanos Query shows as the component type: ODIN stands where a Prometheus
/// with its sidecar stood.
pub const COMPONENT_TYPE: &str = "sidecar";

/// Both services share this; cheap to clone.
#[derive(Clone)]
pub struct StoreApi {
    inner: Arc<Inner>,
}

struct Inner {
    backends: Arc<OnceLock<StoreBackends>>,
    external: Arc<ExternalLabels>,
    options: StoreApiOptions,
    metrics: StoreApiMetrics,
    shutdown: CancellationToken,
}

impl StoreApi {
    /// `backends` is set once storage has opened; until then every call answers
    /// `Unavailable` (Thanos Query retries).
    pub fn new(
        backends: Arc<OnceLock<StoreBackends>>,
        external: ExternalLabels,
        options: StoreApiOptions,
        metrics: StoreApiMetrics,
        shutdown: CancellationToken,
    ) -> StoreApi {
        StoreApi {
            inner: Arc::new(Inner {
                backends,
                external: Arc::new(external),
                options,
                metrics,
                shutdown,
            }),
        }
    }

    pub fn options(&self) -> &StoreApiOptions {
        &self.inner.options
    }

    fn backends(&self) -> Result<StoreBackends> {
        self.inner
            .backends
            .get()
            .cloned()
            .ok_or_else(|| StoreApiError::Unavailable("storage is not ready yet".into()))
    }

    fn external_labels(&self) -> Vec<thanos::Label> {
        self.inner
            .external
            .iter()
            .map(|(n, v)| thanos::Label {
                name: n.clone(),
                value: v.clone(),
            })
            .collect()
    }

    /// `[min, max]` the store advertises: from the oldest stored sample (all time
    /// while empty) to the end of time, as the sidecar does, since new samples keep
    /// arriving.
    fn time_range(&self) -> Result<(i64, i64)> {
        let b = self.backends()?;
        Ok((b.chunks.start_time().unwrap_or(i64::MIN), i64::MAX))
    }

    /// Counts a finished call by its status.
    fn record<T>(
        &self,
        method: &str,
        r: std::result::Result<T, Status>,
    ) -> std::result::Result<T, Status> {
        let code = r.as_ref().map_or_else(|s| s.code(), |_| tonic::Code::Ok);
        self.inner.metrics.request(method, code);
        r
    }

    fn store_info(&self) -> std::result::Result<InfoResponse, Status> {
        let (min_time, max_time) = self.time_range()?;
        let labels = self.external_labels();
        Ok(InfoResponse {
            labels: labels.clone(),
            min_time,
            max_time,
            store_type: StoreType::Sidecar as i32,
            label_sets: vec![ZLabelSet { labels }],
        })
    }

    fn info(&self) -> std::result::Result<info::InfoResponse, Status> {
        let (min_time, max_time) = self.time_range()?;
        Ok(info::InfoResponse {
            label_sets: vec![ZLabelSet {
                labels: self.external_labels(),
            }],
            component_type: COMPONENT_TYPE.to_string(),
            store: Some(info::StoreInfo {
                min_time,
                max_time,
                supports_sharding: false,
                supports_without_replica_labels: false,
                guaranteed_min_time: 0,
            }),
            ..Default::default()
        })
    }

    fn open_series(&self, req: &SeriesRequest) -> std::result::Result<SeriesStream, Status> {
        let plan = SeriesPlan::new(req, &self.inner.external)?;
        let backends = self.backends()?;
        let (tx, mut rx) = tokio::sync::mpsc::channel(self.inner.options.series_channel_depth);
        if plan.selection.can_match {
            let external = self.inner.external.clone();
            let shutdown = self.inner.shutdown.clone();
            let metrics = self.inner.metrics.clone();
            tokio::task::spawn_blocking(move || {
                let mut stopped_by_shutdown = false;
                let mut client_gone = false;
                let mut emit = |frame: SeriesResponse| {
                    if shutdown.is_cancelled() {
                        stopped_by_shutdown = true;
                        return false;
                    }
                    let bytes = chunk_bytes(&frame);
                    // Blocks while the channel is full: back-pressure from the client.
                    // Fails once the client has gone and the stream was dropped.
                    if tx.blocking_send(Ok(frame)).is_err() {
                        client_gone = true;
                        return false;
                    }
                    metrics.sent(1, bytes);
                    true
                };
                let result = series::produce_series(
                    &*backends.queryable,
                    &*backends.chunks,
                    &plan,
                    &external,
                    &mut emit,
                );
                let failure = match result {
                    Err(e) => Some(Status::from(e)),
                    Ok(()) if stopped_by_shutdown => {
                        Some(Status::unavailable("server is shutting down"))
                    }
                    Ok(()) => None,
                };
                let code = match &failure {
                    _ if client_gone => tonic::Code::Cancelled,
                    Some(status) => status.code(),
                    None => tonic::Code::Ok,
                };
                metrics.request("Series", code);
                if let Some(status) = failure {
                    // The client must not take a cut answer for a whole one.
                    let _ = tx.blocking_send(Err(status));
                }
            });
        } else {
            self.inner.metrics.request("Series", tonic::Code::Ok);
        }
        let stream = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx));
        Ok(Box::pin(stream))
    }

    /// Runs a blocking storage read off the async runtime.
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> std::result::Result<T, Status> {
        match tokio::task::spawn_blocking(f).await {
            Ok(r) => r.map_err(Status::from),
            Err(e) => {
                tracing::error!(error = %e, "storeapi: read task failed");
                Err(Status::internal("read task failed"))
            }
        }
    }
}

pub type SeriesStream =
    Pin<Box<dyn Stream<Item = std::result::Result<SeriesResponse, Status>> + Send>>;

#[tonic::async_trait]
impl store_server::Store for StoreApi {
    async fn info(
        &self,
        _request: Request<InfoRequest>,
    ) -> std::result::Result<Response<InfoResponse>, Status> {
        self.record("Store.Info", self.store_info())
            .map(Response::new)
    }

    type SeriesStream = SeriesStream;

    async fn series(
        &self,
        request: Request<SeriesRequest>,
    ) -> std::result::Result<Response<SeriesStream>, Status> {
        // A stream that opens is counted when it ends.
        match self.open_series(request.get_ref()) {
            Ok(stream) => Ok(Response::new(stream)),
            Err(status) => self.record("Series", Err(status)),
        }
    }

    async fn label_names(
        &self,
        request: Request<LabelNamesRequest>,
    ) -> std::result::Result<Response<LabelNamesResponse>, Status> {
        let r = async {
            let req = request.into_inner();
            let (min_t, max_t) = series::label_range(req.start, req.end)?;
            let selection = series::convert_matchers(&req.matchers, &self.inner.external)?;
            let backends = self.backends()?;
            let external = self.inner.external.clone();
            let names = self
                .blocking(move || {
                    series::label_names(&*backends.queryable, min_t, max_t, &selection, &external)
                })
                .await?;
            Ok(LabelNamesResponse {
                names,
                ..Default::default()
            })
        }
        .await;
        self.record("LabelNames", r).map(Response::new)
    }

    async fn label_values(
        &self,
        request: Request<LabelValuesRequest>,
    ) -> std::result::Result<Response<LabelValuesResponse>, Status> {
        let r = async {
            let req = request.into_inner();
            let (min_t, max_t) = series::label_range(req.start, req.end)?;
            let selection = series::convert_matchers(&req.matchers, &self.inner.external)?;
            let backends = self.backends()?;
            let external = self.inner.external.clone();
            let values = self
                .blocking(move || {
                    series::label_values(
                        &*backends.queryable,
                        &req.label,
                        min_t,
                        max_t,
                        &selection,
                        &external,
                    )
                })
                .await?;
            Ok(LabelValuesResponse {
                values,
                ..Default::default()
            })
        }
        .await;
        self.record("LabelValues", r).map(Response::new)
    }
}

#[tonic::async_trait]
impl info::info_server::Info for StoreApi {
    async fn info(
        &self,
        _request: Request<info::InfoRequest>,
    ) -> std::result::Result<Response<info::InfoResponse>, Status> {
        self.record("Info", StoreApi::info(self)).map(Response::new)
    }
}

/// Encoded chunk bytes in one frame.
fn chunk_bytes(frame: &SeriesResponse) -> u64 {
    match &frame.result {
        Some(thanos::series_response::Result::Series(s)) => s
            .chunks
            .iter()
            .filter_map(|c| c.raw.as_ref())
            .map(|r| r.data.len() as u64)
            .sum(),
        _ => 0,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::model::Labels;
    use crate::storage::Appendable;
    use crate::storeapi::proto::thanos::{LabelMatcher, label_matcher};
    use crate::tsdb::{Db, DbOptions, TsdbMetrics};
    use futures_util::StreamExt;
    use info::info_server::Info;
    use store_server::Store;

    fn api(
        backends: Arc<OnceLock<StoreBackends>>,
        depth: usize,
        metrics: &StoreApiMetrics,
    ) -> StoreApi {
        StoreApi::new(
            backends,
            ExternalLabels::from([("cluster".to_string(), "eu".to_string())]),
            StoreApiOptions {
                series_channel_depth: depth,
                ..StoreApiOptions::default()
            },
            metrics.clone(),
            CancellationToken::new(),
        )
    }

    fn request(matchers: Vec<LabelMatcher>) -> Request<SeriesRequest> {
        Request::new(SeriesRequest {
            min_time: 0,
            max_time: 1_000_000,
            matchers,
            ..Default::default()
        })
    }

    fn eq(name: &str, value: &str) -> LabelMatcher {
        LabelMatcher {
            r#type: label_matcher::Type::Eq as i32,
            name: name.into(),
            value: value.into(),
        }
    }

    #[tokio::test]
    async fn before_storage_is_ready_calls_are_unavailable_and_bad_input_is_invalid() {
        let metrics = StoreApiMetrics::default();
        let api = api(Arc::new(OnceLock::new()), 4, &metrics);
        let err = Info::info(&api, Request::new(info::InfoRequest {}))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::Unavailable);
        let Err(err) = api.series(request(vec![eq("__name__", "up")])).await else {
            panic!("series answered without storage");
        };
        assert_eq!(err.code(), tonic::Code::Unavailable);
        // Request errors are found before storage is needed.
        let bad = LabelMatcher {
            r#type: label_matcher::Type::Re as i32,
            name: "job".into(),
            value: "*".into(),
        };
        let Err(err) = api.series(request(vec![bad])).await else {
            panic!("bad regex accepted");
        };
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert_eq!(metrics.requests("Info", tonic::Code::Unavailable), 1);
        assert_eq!(metrics.requests("Series", tonic::Code::Unavailable), 1);
        assert_eq!(metrics.requests("Series", tonic::Code::InvalidArgument), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn series_stream_through_a_bounded_channel() {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path(), DbOptions::default(), TsdbMetrics::default()).unwrap();
        let mut app = db.appender();
        for i in 0..100 {
            let l = Labels::from_pairs([("__name__", "m".to_string()), ("i", format!("{i:03}"))]);
            app.append(&l, 1000, i as f64).unwrap();
        }
        app.commit().unwrap();
        let backends = Arc::new(OnceLock::new());
        let _ = backends.set(StoreBackends {
            queryable: Arc::new(db.clone()),
            chunks: Arc::new(db.clone()),
        });
        let metrics = StoreApiMetrics::default();
        let api = api(backends, 2, &metrics);
        let stream = api
            .series(request(vec![eq("__name__", "m")]))
            .await
            .unwrap()
            .into_inner();
        let frames: Vec<_> = stream.collect().await;
        assert_eq!(frames.len(), 100);
        assert!(frames.iter().all(|f| f.is_ok()));
        // A matcher on an external label that cannot match: an empty stream.
        let stream = api
            .series(request(vec![eq("__name__", "m"), eq("cluster", "us")]))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(stream.collect::<Vec<_>>().await.len(), 0);
        assert_eq!(metrics.requests("Series", tonic::Code::Ok), 2);
    }
}
