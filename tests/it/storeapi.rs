//! Thanos StoreAPI: a tonic client generated from the same protos talks to the real
//! binary on its `--grpc-address`, as Thanos Query would: Info (both APIs), Series with
//! and without chunks, LabelNames, LabelValues, matchers, and bad requests. The chunks
//! that come back decode (with ODIN's own XOR decoder) to what `/api/v1/query_range`
//! answers for the same series.

use std::collections::BTreeMap;

use odin::storeapi::proto::thanos::info::{self, info_client::InfoClient};
use odin::storeapi::proto::thanos::{
    InfoRequest, LabelMatcher, LabelNamesRequest, LabelValuesRequest, Series, SeriesRequest,
    StoreType, label_matcher::Type, series_response, store_client::StoreClient,
};
use odin::tsdb::chunkenc::XorIterator;
use tonic::transport::Channel;

use crate::common::{Odin, TestSeries};

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn m(t: Type, name: &str, value: &str) -> LabelMatcher {
    LabelMatcher {
        r#type: t as i32,
        name: name.into(),
        value: value.into(),
    }
}

fn label_map(s: &Series) -> BTreeMap<String, String> {
    s.labels
        .iter()
        .map(|l| (l.name.clone(), l.value.clone()))
        .collect()
}

/// Every frame of a `Series` call, or the call's status.
async fn series(
    client: &mut StoreClient<Channel>,
    req: SeriesRequest,
) -> Result<Vec<Series>, tonic::Status> {
    let mut stream = client.series(req).await?.into_inner();
    let mut out: Vec<Series> = Vec::new();
    while let Some(frame) = stream.message().await? {
        match frame.result {
            Some(series_response::Result::Series(s)) => {
                // A series split over frames continues in the next one.
                match out.last_mut() {
                    Some(last) if last.labels == s.labels => last.chunks.extend(s.chunks),
                    _ => out.push(s),
                }
            }
            Some(series_response::Result::Warning(w)) => panic!("warning: {w}"),
            _ => {}
        }
    }
    Ok(out)
}

/// `(t, v)` of every sample in the series' chunks within `[start, end]`.
fn decode(s: &Series, start: i64, end: i64) -> Vec<(i64, f64)> {
    let mut out: Vec<(i64, f64)> = Vec::new();
    for c in &s.chunks {
        let raw = c.raw.as_ref().expect("raw chunk");
        assert_eq!(raw.r#type, 0, "XOR encoding");
        let it = XorIterator::new(&raw.data);
        let samples: Vec<(i64, f64)> = it.collect();
        assert_eq!(samples.first().map(|s| s.0), Some(c.min_time));
        assert_eq!(samples.last().map(|s| s.0), Some(c.max_time));
        out.extend(
            samples
                .into_iter()
                .filter(|(t, _)| *t >= start && *t <= end),
        );
    }
    out
}

#[test]
fn thanos_store_api_serves_what_query_range_answers() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("odin.yml");
    std::fs::write(
        &cfg,
        "global:\n  external_labels:\n    cluster: eu\n    replica: r1\n",
    )
    .unwrap();
    let odin = Odin::start(
        &dir.path().join("data"),
        &[&format!("--config.file={}", cfg.display())],
    );
    let grpc = odin.grpc_addr.expect("grpc address");

    // Ten minutes of samples ending a minute ago, 15 s apart.
    let end = now_ms() / 1000 * 1000 - 60_000;
    let start = end - 39 * 15_000;
    let samples = |f: fn(i64) -> f64| -> Vec<(i64, f64)> {
        (0..40).map(|i| (start + i * 15_000, f(i))).collect()
    };
    let (status, body) = odin.write(&[
        TestSeries::new(
            &[("__name__", "sa_metric"), ("job", "b"), ("instance", "x")],
            samples(|i| (i * i) as f64 / 3.0),
        ),
        TestSeries::new(
            &[("__name__", "sa_metric"), ("job", "a"), ("instance", "x")],
            samples(|i| i as f64 * 1.5),
        ),
        TestSeries::new(
            &[("__name__", "sa_other"), ("zone", "z1")],
            samples(|_| 1.0),
        ),
    ]);
    assert_eq!(status, 204, "{body}");

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = format!("http://{grpc}");
        let mut info = InfoClient::connect(url.clone()).await.unwrap();
        let mut store = StoreClient::connect(url).await.unwrap();

        // Info API (Thanos Query 0.37+): the external labels and the time range.
        let i = info.info(info::InfoRequest {}).await.unwrap().into_inner();
        assert_eq!(i.component_type, "sidecar");
        assert_eq!(i.label_sets.len(), 1);
        let ext: Vec<(String, String)> = i.label_sets[0]
            .labels
            .iter()
            .map(|l| (l.name.clone(), l.value.clone()))
            .collect();
        assert_eq!(
            ext,
            [
                ("cluster".into(), "eu".into()),
                ("replica".into(), "r1".into())
            ]
        );
        let si = i.store.expect("store info");
        assert_eq!(si.min_time, start, "oldest sample");
        assert_eq!(si.max_time, i64::MAX);

        // The older Store.Info says the same.
        let si = store.info(InfoRequest {}).await.unwrap().into_inner();
        assert_eq!(si.min_time, start);
        assert_eq!(si.store_type, StoreType::Sidecar as i32);
        assert_eq!(si.label_sets[0].labels, i.label_sets[0].labels);

        // Series: sorted, external labels on each, chunks decode to query_range.
        let req = SeriesRequest {
            min_time: start,
            max_time: end,
            matchers: vec![m(Type::Eq, "__name__", "sa_metric")],
            ..Default::default()
        };
        let got = series(&mut store, req.clone()).await.unwrap();
        assert_eq!(got.len(), 2, "{got:?}");
        let jobs: Vec<String> = got.iter().map(|s| label_map(s)["job"].clone()).collect();
        assert_eq!(jobs, ["a", "b"], "sorted by labels");
        for s in &got {
            let l = label_map(s);
            assert_eq!(l["cluster"], "eu");
            assert_eq!(l["replica"], "r1");
            let names: Vec<&str> = s.labels.iter().map(|l| l.name.as_str()).collect();
            let mut sorted = names.clone();
            sorted.sort();
            assert_eq!(names, sorted, "labels sorted by name");
        }
        for s in &got {
            let job = &label_map(s)["job"];
            let from_store = decode(s, start, end);
            assert_eq!(from_store.len(), 40);
            let query = format!("sa_metric{{job=\"{job}\"}}");
            let (status, body) = odin.get(&format!(
                "/api/v1/query_range?query={}&start={}&end={}&step=15",
                form_urlencoded::byte_serialize(query.as_bytes()).collect::<String>(),
                start / 1000,
                end / 1000
            ));
            assert_eq!(status, 200, "{body}");
            let v: serde_json::Value = serde_json::from_str(&body).unwrap();
            let values = v["data"]["result"][0]["values"].as_array().unwrap();
            let from_api: Vec<(i64, f64)> = values
                .iter()
                .map(|p| {
                    (
                        (p[0].as_f64().unwrap() * 1000.0).round() as i64,
                        p[1].as_str().unwrap().parse::<f64>().unwrap(),
                    )
                })
                .collect();
            assert_eq!(from_store, from_api, "job={job}");
        }

        // skip_chunks: the same series, labels only.
        let labels_only = series(
            &mut store,
            SeriesRequest {
                skip_chunks: true,
                ..req.clone()
            },
        )
        .await
        .unwrap();
        assert_eq!(labels_only.len(), 2);
        assert!(labels_only.iter().all(|s| s.chunks.is_empty()));
        assert_eq!(labels_only[0].labels, got[0].labels);
        assert_eq!(labels_only[1].labels, got[1].labels);

        // Matchers: NEQ, RE, NRE, and on external labels.
        let jobs_for = |matchers: Vec<LabelMatcher>| SeriesRequest {
            matchers,
            skip_chunks: true,
            ..req.clone()
        };
        let name = m(Type::Eq, "__name__", "sa_metric");
        for (extra, want) in [
            (m(Type::Neq, "job", "a"), vec!["b"]),
            (m(Type::Re, "job", "a|b"), vec!["a", "b"]),
            (m(Type::Nre, "job", "b"), vec!["a"]),
            (m(Type::Re, "job", "."), vec!["a", "b"]),
            (m(Type::Re, "cluster", "eu|us"), vec!["a", "b"]),
            (m(Type::Eq, "cluster", "us"), vec![]),
            (m(Type::Neq, "replica", "r1"), vec![]),
        ] {
            let got = series(&mut store, jobs_for(vec![name.clone(), extra.clone()]))
                .await
                .unwrap();
            let jobs: Vec<String> = got.iter().map(|s| label_map(s)["job"].clone()).collect();
            assert_eq!(jobs, want, "{extra:?}");
        }
        // Outside the stored range: nothing.
        let none = series(
            &mut store,
            SeriesRequest {
                min_time: end + 3_600_000,
                max_time: end + 7_200_000,
                ..req.clone()
            },
        )
        .await
        .unwrap();
        assert!(none.is_empty());

        // Label names and values, external labels included.
        let names = store
            .label_names(LabelNamesRequest {
                start,
                end,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .names;
        assert_eq!(
            names,
            ["__name__", "cluster", "instance", "job", "replica", "zone"]
        );
        let names = store
            .label_names(LabelNamesRequest {
                start,
                end,
                matchers: vec![m(Type::Eq, "__name__", "sa_other")],
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .names;
        assert_eq!(names, ["__name__", "cluster", "replica", "zone"]);
        let values = |label: &str, matchers: Vec<LabelMatcher>| LabelValuesRequest {
            label: label.into(),
            start,
            end,
            matchers,
            ..Default::default()
        };
        let v = store
            .label_values(values("job", vec![]))
            .await
            .unwrap()
            .into_inner()
            .values;
        assert_eq!(v, ["a", "b"]);
        let v = store
            .label_values(values("__name__", vec![m(Type::Eq, "job", "a")]))
            .await
            .unwrap()
            .into_inner()
            .values;
        assert_eq!(v, ["sa_metric"]);
        let v = store
            .label_values(values("cluster", vec![]))
            .await
            .unwrap()
            .into_inner()
            .values;
        assert_eq!(v, ["eu"]);
        let v = store
            .label_values(values("job", vec![m(Type::Eq, "cluster", "us")]))
            .await
            .unwrap()
            .into_inner()
            .values;
        assert!(v.is_empty());

        // Bad requests: InvalidArgument with a clear message; the server carries on.
        let err = series(
            &mut store,
            SeriesRequest {
                matchers: vec![m(Type::Re, "job", "(unclosed")],
                ..req.clone()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(err.message().contains("invalid regex"), "{}", err.message());
        let err = series(
            &mut store,
            SeriesRequest {
                min_time: end,
                max_time: start,
                ..req.clone()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        assert!(
            err.message().contains("is after max time"),
            "{}",
            err.message()
        );
        let err = series(
            &mut store,
            SeriesRequest {
                matchers: vec![m(Type::Re, "job", ".*")],
                ..req.clone()
            },
        )
        .await
        .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        let err = store
            .label_values(values("job", vec![m(Type::Nre, "job", "[")]))
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);
        let err = store
            .label_names(LabelNamesRequest {
                start: end,
                end: start,
                ..Default::default()
            })
            .await
            .unwrap_err();
        assert_eq!(err.code(), tonic::Code::InvalidArgument);

        // A client that walks away mid-stream does not upset the server.
        let mut stream = store.series(req.clone()).await.unwrap().into_inner();
        assert!(stream.message().await.unwrap().is_some());
        drop(stream);
        assert_eq!(series(&mut store, req.clone()).await.unwrap().len(), 2);
    });
    // Closes the client's connections (they are driven by this runtime).
    drop(rt);
    assert_eq!(odin.get("/-/ready").0, 200);
    let (_, metrics) = odin.get("/metrics");
    for line in [
        r#"odin_storeapi_requests_total{method="Info",code="Ok"} 1"#,
        r#"odin_storeapi_requests_total{method="Series",code="InvalidArgument"} 3"#,
        r#"odin_storeapi_requests_total{method="LabelValues",code="Ok"} 4"#,
    ] {
        assert!(
            metrics.lines().any(|l| l == line),
            "{line} not in:\n{metrics}"
        );
    }
    // The gRPC server stops with the rest on SIGTERM.
    assert_eq!(odin.stop().code(), Some(0));
}

#[test]
fn grpc_address_can_be_turned_off() {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &["--grpc-address="]);
    assert!(odin.grpc_addr.is_none());
    assert_eq!(odin.get("/-/ready").0, 200);
    assert_eq!(odin.stop().code(), Some(0));
}

/// Issue 14, item 4: a thousand `Series` streams whose client never reads once held
/// every thread of the blocking pool, and remote write and queries stopped while
/// `/-/healthy` still said 200. Now calls take turns (`--store.grpc.series-max-
/// concurrency`) and a stream waiting on its client holds no thread: the HTTP API
/// answers as before.
#[test]
fn a_thousand_unread_series_streams_starve_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(&dir.path().join("data"), &[]);
    let grpc = odin.grpc_addr.expect("grpc address");
    // Enough data that no answer fits in a stream's flow-control window.
    let end = now_ms() / 1000 * 1000 - 60_000;
    let batch: Vec<TestSeries> = (0..2_000)
        .map(|i| {
            TestSeries::new(
                &[("__name__", "unread"), ("i", &i.to_string())],
                (0..30)
                    .map(|k| (end - (29 - k) * 15_000, k as f64))
                    .collect(),
            )
        })
        .collect();
    let (status, body) = odin.write(&batch);
    assert_eq!(status, 204, "{body}");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let streams = rt.block_on(async {
        let mut streams = Vec::new();
        for _ in 0..10 {
            let channel = Channel::from_shared(format!("http://{grpc}"))
                .unwrap()
                .connect()
                .await
                .unwrap();
            for _ in 0..100 {
                let mut client = StoreClient::new(channel.clone());
                let req = SeriesRequest {
                    min_time: end - 3_600_000,
                    max_time: end,
                    matchers: vec![m(Type::Eq, "__name__", "unread")],
                    ..Default::default()
                };
                // Started, never read.
                let call = tokio::spawn(async move { client.series(req).await });
                streams.push(call);
            }
        }
        streams
    });
    // Give the server time to start the calls it lets run.
    std::thread::sleep(std::time::Duration::from_secs(1));

    let started = std::time::Instant::now();
    let (status, body) = odin.write(&[TestSeries::new(
        &[("__name__", "still_written")],
        vec![(end, 1.0)],
    )]);
    assert_eq!(status, 204, "{body}");
    let (status, body) = odin.get("/api/v1/query?query=count(unread)");
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("\"2000\""), "{body}");
    let (status, body) = odin.get("/api/v1/series?match[]=still_written");
    assert_eq!(status, 200, "{body}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "the HTTP API took {:?} under 1,000 unread streams",
        started.elapsed()
    );
    drop(streams);
    rt.shutdown_background();
}

/// The StoreAPI port is bounded like the HTTP port: `--grpc.max-connections` open
/// at once (more wait in the backlog), and a connection that never sends a byte is
/// closed after the first-bytes deadline (`--web.read-header-timeout`), giving its
/// slot back.
#[test]
fn grpc_connections_are_bounded_and_silent_ones_closed() {
    use std::io::Read;
    let tmp = tempfile::tempdir().unwrap();
    let odin = Odin::start(
        tmp.path(),
        &["--grpc.max-connections=2", "--web.read-header-timeout=2s"],
    );
    let addr = odin.grpc_addr.expect("grpc address");
    let url = format!("http://{addr}");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let info_within = |limit: std::time::Duration| {
        rt.block_on(async {
            let call = async {
                let mut client = InfoClient::connect(url.clone()).await?;
                client
                    .info(info::InfoRequest::default())
                    .await
                    .map_err(|s| Box::new(s) as Box<dyn std::error::Error + Send + Sync>)?;
                Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
            };
            matches!(tokio::time::timeout(limit, call).await, Ok(Ok(())))
        })
    };
    assert!(
        info_within(std::time::Duration::from_secs(5)),
        "a first call"
    );
    // Two clients that connect and say nothing take both slots...
    let silent: Vec<std::net::TcpStream> = (0..2)
        .map(|_| std::net::TcpStream::connect(addr).unwrap())
        .collect();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert!(
        !info_within(std::time::Duration::from_millis(700)),
        "served past --grpc.max-connections"
    );
    // ...until the server closes them for their silence; a client that starts the
    // HTTP/2 preface and stops is closed too.
    let mut started = std::net::TcpStream::connect(addr).unwrap();
    std::io::Write::write_all(&mut started, b"PRI * HTTP/2.0").unwrap();
    for mut s in silent.into_iter().chain([started]) {
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        // Read to the end (the server may say goodbye, an HTTP/2 GOAWAY, first);
        // a reset is a close too. Only running into the read timeout is not.
        let mut rest = Vec::new();
        let end = s.read_to_end(&mut rest);
        assert!(
            !matches!(&end, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
            "connection left open ({end:?}, {} bytes read)",
            rest.len()
        );
    }
    assert!(
        info_within(std::time::Duration::from_secs(5)),
        "slots not given back"
    );
}

/// An HTTP/2 client that opens its connection properly (preface and SETTINGS) and
/// then says nothing is closed after `--grpc.max-connection-idle`, so idle
/// connections cannot hold every slot; its slot then serves a real client.
#[test]
fn idle_grpc_connections_are_closed() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let odin = Odin::start(
        tmp.path(),
        &["--grpc.max-connections=1", "--grpc.max-connection-idle=1s"],
    );
    let addr = odin.grpc_addr.expect("grpc address");
    let mut idle = std::net::TcpStream::connect(addr).unwrap();
    // The HTTP/2 preface and an empty SETTINGS frame.
    idle.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\x04\0\0\0\0\0")
        .unwrap();
    idle.set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .unwrap();
    let started = std::time::Instant::now();
    let mut got = Vec::new();
    let end = idle.read_to_end(&mut got);
    assert!(
        !matches!(&end, Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut)),
        "an idle HTTP/2 connection stayed open ({end:?})"
    );
    assert!(!got.is_empty(), "the server never answered the preface");
    let after = started.elapsed();
    assert!(
        after >= std::time::Duration::from_millis(900) && after < std::time::Duration::from_secs(5),
        "closed after {after:?}"
    );
    // Its slot is free again: a real client is served.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut client = InfoClient::connect(format!("http://{addr}")).await.unwrap();
        for _ in 0..3 {
            client.info(info::InfoRequest::default()).await.unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(400)).await;
        }
    });
}
