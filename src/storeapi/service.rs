//! The tonic services: `thanos.Store` and `thanos.info.Info` over the storage seams.
//! Storage reads run on blocking threads, a batch of frames at a time; a `Series`
//! answer is sent from an async task through a bounded channel, so a slow client
//! slows the read, a gone client stops it, and a client that stops reading holds no
//! thread, only its turn, until its deadline.

use std::pin::Pin;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

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
    /// Turns for `Series` calls; `None` when unlimited.
    series_turns: Option<Arc<tokio::sync::Semaphore>>,
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
                series_turns: (options.series_max_concurrency > 0)
                    .then(|| Arc::new(tokio::sync::Semaphore::new(options.series_max_concurrency))),
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
        let label_set = ZLabelSet {
            labels: self.external_labels(),
        };
        Ok(info::InfoResponse {
            label_sets: vec![label_set.clone()],
            component_type: COMPONENT_TYPE.to_string(),
            store: Some(info::StoreInfo {
                min_time,
                max_time,
                supports_sharding: false,
                supports_without_replica_labels: false,
                // One TSDB, as the sidecar describes its Prometheus: the external
                // labels and the range it holds.
                tsdb_infos: vec![info::TsdbInfo {
                    labels: Some(label_set),
                    min_time,
                    max_time,
                }],
            }),
            ..Default::default()
        })
    }

    /// Opens a `Series` answer: waits for a turn (until the call's deadline), then
    /// produces frames in batches on blocking threads and sends them from an async
    /// task, never from a blocking thread. The stream ends with the call's error, if
    /// any, even when it comes after the channel filled.
    async fn open_series(
        &self,
        req: &SeriesRequest,
        client_timeout: Option<Duration>,
    ) -> std::result::Result<SeriesStream, Status> {
        let plan = SeriesPlan::new(req, &self.inner.external)?;
        let backends = self.backends()?;
        let deadline = self.call_deadline(client_timeout);
        let permit = self.take_turn(deadline).await?;
        let depth = self.inner.options.series_channel_depth.max(1);
        let (tx, mut rx) = tokio::sync::mpsc::channel::<SeriesResponse>(depth);
        // The call's final error; set before `tx` is dropped, read once the channel
        // is drained.
        let outcome: Arc<Mutex<Option<Status>>> = Arc::new(Mutex::new(None));
        if plan.selection.can_match {
            let external = self.inner.external.clone();
            let shutdown = self.inner.shutdown.clone();
            let metrics = self.inner.metrics.clone();
            let outcome = outcome.clone();
            tokio::spawn(async move {
                let _permit = permit;
                // `tx` lives until the outcome and the count are in, so whoever sees
                // the stream end sees both.
                let code = send_series(
                    backends, plan, external, depth, deadline, &shutdown, &tx, &metrics,
                )
                .await
                .map_or_else(
                    |status| {
                        let code = status.code();
                        if let Ok(mut o) = outcome.lock() {
                            *o = Some(status);
                        }
                        code
                    },
                    |()| tonic::Code::Ok,
                );
                metrics.request("Series", code);
                drop(tx);
            });
        } else {
            self.inner.metrics.request("Series", tonic::Code::Ok);
        }
        let mut sleep = Box::pin(tokio::time::sleep_until(deadline));
        let mut done = false;
        let stream = futures_util::stream::poll_fn(move |cx| {
            use std::task::Poll;
            if done {
                return Poll::Ready(None);
            }
            match rx.poll_recv(cx) {
                Poll::Ready(Some(frame)) => return Poll::Ready(Some(Ok(frame))),
                Poll::Ready(None) => {
                    done = true;
                    let status = outcome.lock().ok().and_then(|mut o| o.take());
                    return Poll::Ready(status.map(Err));
                }
                Poll::Pending => {}
            }
            // Nothing to send yet: past the deadline the answer is cut off here, so
            // a producer that is stuck in storage cannot keep the call open.
            if sleep.as_mut().poll(cx).is_ready() {
                done = true;
                rx.close();
                return Poll::Ready(Some(Err(deadline_exceeded())));
            }
            Poll::Pending
        });
        Ok(Box::pin(stream))
    }

    /// When a call must end: the client's `grpc-timeout`, at most
    /// `series_max_duration`.
    fn call_deadline(&self, client_timeout: Option<Duration>) -> tokio::time::Instant {
        let max = self.inner.options.series_max_duration;
        tokio::time::Instant::now() + client_timeout.map_or(max, |t| t.min(max))
    }

    /// Waits for one of the `--store.grpc.series-max-concurrency` turns until
    /// `deadline`.
    async fn take_turn(
        &self,
        deadline: tokio::time::Instant,
    ) -> std::result::Result<Option<tokio::sync::OwnedSemaphorePermit>, Status> {
        let Some(turns) = &self.inner.series_turns else {
            return Ok(None);
        };
        match tokio::time::timeout_at(deadline, turns.clone().acquire_owned()).await {
            Ok(Ok(p)) => Ok(Some(p)),
            Ok(Err(_)) => Err(Status::unavailable("server is shutting down")),
            // Thanos answers so when its series gate does not open in time.
            Err(_) => Err(Status::resource_exhausted(format!(
                "failed to wait for turn: {} calls are running (--store.grpc.series-max-concurrency)",
                self.inner.options.series_max_concurrency
            ))),
        }
    }

    /// Runs a blocking storage read (label names or values) off the async runtime,
    /// under a turn and the call's deadline as a `Series` call is: the turn stays
    /// with the read until it has really finished, so these calls cannot fill the
    /// blocking pool either.
    async fn blocking<T: Send + 'static>(
        &self,
        client_timeout: Option<Duration>,
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> std::result::Result<T, Status> {
        let deadline = self.call_deadline(client_timeout);
        let turn = self.take_turn(deadline).await?;
        let read = tokio::task::spawn_blocking(move || {
            let _turn = turn;
            f()
        });
        match tokio::time::timeout_at(deadline, read).await {
            Ok(Ok(r)) => r.map_err(Status::from),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "storeapi: read task failed");
                Err(Status::internal("read task failed"))
            }
            Err(_) => Err(Status::deadline_exceeded("the call's deadline passed")),
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
        let timeout = grpc_timeout(request.metadata());
        match self.open_series(request.get_ref(), timeout).await {
            Ok(stream) => Ok(Response::new(stream)),
            Err(status) => self.record("Series", Err(status)),
        }
    }

    async fn label_names(
        &self,
        request: Request<LabelNamesRequest>,
    ) -> std::result::Result<Response<LabelNamesResponse>, Status> {
        let timeout = grpc_timeout(request.metadata());
        let r = async {
            let req = request.into_inner();
            let (min_t, max_t) = series::label_range(req.start, req.end)?;
            let selection = series::convert_matchers(&req.matchers, &self.inner.external)?;
            let backends = self.backends()?;
            let external = self.inner.external.clone();
            let names = self
                .blocking(timeout, move || {
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
        let timeout = grpc_timeout(request.metadata());
        let r = async {
            let req = request.into_inner();
            let (min_t, max_t) = series::label_range(req.start, req.end)?;
            let selection = series::convert_matchers(&req.matchers, &self.inner.external)?;
            let backends = self.backends()?;
            let external = self.inner.external.clone();
            let values = self
                .blocking(timeout, move || {
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

fn deadline_exceeded() -> Status {
    Status::deadline_exceeded("Series call ran past its deadline")
}

/// Produces the frames of `plan` in batches of `depth` on blocking threads and sends
/// them to `tx` from this async task, until the answer is complete, the client is
/// gone (the send fails: `Cancelled`), the deadline passes or shutdown begins.
#[allow(clippy::too_many_arguments)]
async fn send_series(
    backends: StoreBackends,
    plan: SeriesPlan,
    external: Arc<ExternalLabels>,
    depth: usize,
    deadline: tokio::time::Instant,
    shutdown: &CancellationToken,
    tx: &tokio::sync::mpsc::Sender<SeriesResponse>,
    metrics: &StoreApiMetrics,
) -> std::result::Result<(), Status> {
    let blocking = |f: Box<
        dyn FnOnce() -> Result<(series::SeriesProducer, Vec<SeriesResponse>)> + Send,
    >| async move {
        let task = tokio::task::spawn_blocking(f);
        match tokio::time::timeout_at(deadline, task).await {
            Err(_) => Err(deadline_exceeded()),
            Ok(Err(e)) => {
                tracing::error!(error = %e, "storeapi: series task failed");
                Err(Status::internal("read task failed"))
            }
            Ok(Ok(r)) => r.map_err(Status::from),
        }
    };
    let (mut producer, mut frames) = blocking(Box::new(move || {
        let mut p = series::SeriesProducer::open(
            &*backends.queryable,
            &*backends.chunks,
            &plan,
            &external,
        )?;
        let frames = p.next_frames(depth)?;
        Ok((p, frames))
    }))
    .await?;
    while !frames.is_empty() {
        for frame in frames {
            let bytes = chunk_bytes(&frame);
            tokio::select! {
                sent = tx.send(frame) => {
                    if sent.is_err() {
                        return Err(Status::cancelled("client went away"));
                    }
                }
                _ = tokio::time::sleep_until(deadline) => return Err(deadline_exceeded()),
                _ = shutdown.cancelled() => {
                    return Err(Status::unavailable("server is shutting down"));
                }
            }
            metrics.sent(1, bytes);
        }
        (producer, frames) = blocking(Box::new(move || {
            let frames = producer.next_frames(depth)?;
            Ok((producer, frames))
        }))
        .await?;
    }
    Ok(())
}

/// The client's deadline from the `grpc-timeout` header (gRPC over HTTP/2: up to 8
/// digits and a unit, H M S m u n); `None` when absent or malformed.
fn grpc_timeout(metadata: &tonic::metadata::MetadataMap) -> Option<Duration> {
    let v = metadata.get("grpc-timeout")?.to_str().ok()?;
    let (digits, unit) = v.split_at_checked(v.len().checked_sub(1)?)?;
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.checked_mul(3600)?),
        "M" => Duration::from_secs(n.checked_mul(60)?),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
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
    use crate::tsdb::{Db, DbOptions};
    use futures_util::StreamExt;
    use info::info_server::Info;
    use store_server::Store;

    /// A service with external label `cluster="eu"`, `depth` frames of channel and
    /// `turns` Series calls at once (0: no limit).
    fn api(
        backends: Arc<OnceLock<StoreBackends>>,
        depth: usize,
        turns: usize,
        metrics: &StoreApiMetrics,
    ) -> StoreApi {
        StoreApi::new(
            backends,
            ExternalLabels::from([("cluster".to_string(), "eu".to_string())]),
            StoreApiOptions {
                series_channel_depth: depth,
                series_max_concurrency: turns,
                ..StoreApiOptions::default()
            },
            metrics.clone(),
            CancellationToken::new(),
        )
    }

    fn db_with_series(n: usize) -> (tempfile::TempDir, Arc<OnceLock<StoreBackends>>) {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open_for_tests(dir.path(), DbOptions::default(), &Default::default());
        let mut app = db.appender();
        for i in 0..n {
            let l = Labels::from_pairs([("__name__", "m".to_string()), ("i", format!("{i:05}"))]);
            app.append(&l, 1000, i as f64).unwrap();
        }
        app.commit().unwrap();
        let backends = Arc::new(OnceLock::new());
        let _ = backends.set(StoreBackends {
            queryable: Arc::new(db.clone()),
            chunks: Arc::new(db),
        });
        (dir, backends)
    }

    fn with_timeout(mut r: Request<SeriesRequest>, timeout: &str) -> Request<SeriesRequest> {
        r.metadata_mut()
            .insert("grpc-timeout", timeout.parse().unwrap());
        r
    }

    /// Issue 14, item 4: ~530 `Series` streams that the client never read held all
    /// of tokio's blocking threads. With a pool of 4 blocking threads, 50 unread
    /// streams (no concurrency limit, so only the producer design is tested) must
    /// leave the pool free.
    #[test]
    fn unread_series_streams_hold_no_blocking_thread() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .max_blocking_threads(4)
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let (_dir, backends) = db_with_series(200);
            let api = api(backends, 1, 0, &StoreApiMetrics::default());
            let mut unread = Vec::new();
            for _ in 0..50 {
                let s = api
                    .series(request(vec![eq("__name__", "m")]))
                    .await
                    .unwrap();
                unread.push(s.into_inner());
            }
            // Let every producer fill its channel.
            tokio::time::sleep(Duration::from_millis(200)).await;
            let free =
                tokio::time::timeout(Duration::from_secs(5), tokio::task::spawn_blocking(|| 42))
                    .await;
            assert_eq!(free.unwrap().unwrap(), 42, "blocking pool is held");
            // And the streams still answer whole once read.
            let frames: Vec<_> = unread.pop().unwrap().collect().await;
            assert_eq!(frames.len(), 200);
            assert!(frames.iter().all(|f| f.is_ok()));
        });
    }

    /// `--store.grpc.series-max-concurrency`: a call waits for a turn until its
    /// deadline, then fails `ResourceExhausted`; a stream that is not read is cut off
    /// at its deadline, ends with `DeadlineExceeded`, and frees its turn.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn series_calls_take_turns_and_end_at_their_deadline() {
        let (_dir, backends) = db_with_series(100);
        let metrics = StoreApiMetrics::default();
        let api = api(backends, 1, 1, &metrics);
        let started = tokio::time::Instant::now();
        let first = api
            .series(with_timeout(request(vec![eq("__name__", "m")]), "700m"))
            .await
            .unwrap()
            .into_inner();
        let Err(waited) = api
            .series(with_timeout(request(vec![eq("__name__", "m")]), "200m"))
            .await
        else {
            panic!("second call got a turn while the first holds it");
        };
        assert_eq!(waited.code(), tonic::Code::ResourceExhausted);
        assert!(started.elapsed() >= Duration::from_millis(200));
        // The first is cut off at its deadline; its turn comes free.
        let third = api
            .series(with_timeout(request(vec![eq("__name__", "m")]), "5S"))
            .await
            .unwrap()
            .into_inner();
        assert!(
            started.elapsed() >= Duration::from_millis(650),
            "{:?}",
            started.elapsed()
        );
        let frames: Vec<_> = first.collect().await;
        let last = frames.last().unwrap().as_ref().unwrap_err();
        assert_eq!(last.code(), tonic::Code::DeadlineExceeded);
        assert!(frames.len() < 100, "a cut answer must not look whole");
        let frames: Vec<_> = third.collect().await;
        assert_eq!(frames.len(), 100);
        assert_eq!(metrics.requests("Series", tonic::Code::DeadlineExceeded), 1);
        assert_eq!(
            metrics.requests("Series", tonic::Code::ResourceExhausted),
            1
        );
        assert_eq!(metrics.requests("Series", tonic::Code::Ok), 1);
    }

    #[test]
    fn grpc_timeout_header_is_parsed() {
        let parse = |v: &str| {
            let mut m = tonic::metadata::MetadataMap::new();
            m.insert("grpc-timeout", v.parse().unwrap());
            grpc_timeout(&m)
        };
        assert_eq!(parse("2S"), Some(Duration::from_secs(2)));
        assert_eq!(parse("150m"), Some(Duration::from_millis(150)));
        assert_eq!(parse("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(parse("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in ["S", "123456789S", "1x", "-1S", ""] {
            assert_eq!(parse(bad), None, "{bad:?}");
        }
    }

    /// Issue 14, item 13: field 6 of `StoreInfo` is released Thanos's `repeated
    /// TSDBInfo tsdb_infos` (a length-delimited message), not a varint.
    #[tokio::test]
    async fn info_sends_tsdb_infos_as_released_thanos_reads_them() {
        use prost::Message;
        let (_dir, backends) = db_with_series(1);
        let api = api(backends, 4, 20, &StoreApiMetrics::default());
        let resp = Info::info(&api, Request::new(info::InfoRequest {}))
            .await
            .unwrap()
            .into_inner();
        let store = resp.store.unwrap();
        let bytes = store.encode_to_vec();
        // Key of field 6, wire type 2 (length-delimited).
        assert!(bytes.contains(&((6 << 3) | 2)), "{bytes:?}");
        assert!(!bytes.contains(&(6 << 3)), "field 6 as a varint: {bytes:?}");
        let tsdb = &store.tsdb_infos[0];
        assert_eq!(tsdb.labels.as_ref().unwrap().labels[0].name, "cluster");
        assert_eq!(
            (tsdb.min_time, tsdb.max_time),
            (store.min_time, store.max_time)
        );
        assert_eq!(tsdb.min_time, 1000);
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
        let api = api(Arc::new(OnceLock::new()), 4, 20, &metrics);
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
        let (_dir, backends) = db_with_series(100);
        let metrics = StoreApiMetrics::default();
        let api = api(backends, 2, 20, &metrics);
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
