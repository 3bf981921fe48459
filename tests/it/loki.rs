//! Loki's push and query API against the real binary: Promtail's protobuf and
//! Loki's JSON pushes, tenants, log queries, label and series lookups, restarts,
//! and bad input.

use crate::common::{Odin, agent, now_ms};

/// A protobuf field of wire type 2 (length-delimited).
fn field(out: &mut Vec<u8>, number: u32, bytes: &[u8]) {
    varint(out, u64::from(number << 3 | 2));
    varint(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

fn varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// One entry of a push: (ns, line, structured metadata).
pub type Entry<'a> = (i64, String, Vec<(&'a str, &'a str)>);

/// `logproto.PushRequest` as Promtail sends it: snappy-compressed protobuf.
/// Streams: (label text, entries).
pub fn promtail_request(streams: &[(&str, Vec<Entry<'_>>)]) -> Vec<u8> {
    let mut request = Vec::new();
    for (labels, entries) in streams {
        let mut stream = Vec::new();
        field(&mut stream, 1, labels.as_bytes());
        for (ns, line, meta) in entries {
            let mut ts = Vec::new();
            varint(&mut ts, 1 << 3);
            varint(&mut ts, (ns / 1_000_000_000) as u64);
            varint(&mut ts, 2 << 3);
            varint(&mut ts, (ns % 1_000_000_000) as u64);
            let mut entry = Vec::new();
            field(&mut entry, 1, &ts);
            field(&mut entry, 2, line.as_bytes());
            for (k, v) in meta {
                let mut pair = Vec::new();
                field(&mut pair, 1, k.as_bytes());
                field(&mut pair, 2, v.as_bytes());
                field(&mut entry, 3, &pair);
            }
            field(&mut stream, 2, &entry);
        }
        field(&mut request, 1, &stream);
    }
    snap::raw::Encoder::new().compress_vec(&request).unwrap()
}

/// POSTs a push; (status, body).
pub fn push(
    odin: &Odin,
    tenant: Option<&str>,
    content_type: &str,
    encoding: Option<&str>,
    body: &[u8],
) -> (u16, String) {
    let mut req = agent()
        .post(&odin.url("/loki/api/v1/push"))
        .header("Content-Type", content_type);
    if let Some(t) = tenant {
        req = req.header("X-Scope-OrgID", t);
    }
    if let Some(e) = encoding {
        req = req.header("Content-Encoding", e);
    }
    let mut r = req.send(body).expect("push");
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_string().unwrap_or_default())
}

/// GETs a Loki API path with query parameters as `tenant`; (status, body).
pub fn get(
    odin: &Odin,
    tenant: Option<&str>,
    path: &str,
    params: &[(&str, &str)],
) -> (u16, String) {
    let query: String = form_urlencoded::Serializer::new(String::new())
        .extend_pairs(params)
        .finish();
    let mut req = agent().get(&odin.url(&format!("{path}?{query}")));
    if let Some(t) = tenant {
        req = req.header("X-Scope-OrgID", t);
    }
    let mut r = req.call().expect("GET");
    let status = r.status().as_u16();
    (status, r.body_mut().read_to_string().unwrap_or_default())
}

/// The lines a log query returns, flattened: (stream labels as JSON, ns, line).
pub fn lines(
    odin: &Odin,
    tenant: Option<&str>,
    query: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, i64, String)> {
    let start = ((now_ms() - 3_600_000) * 1_000_000).to_string();
    let end = ((now_ms() + 60_000) * 1_000_000).to_string();
    // The caller's parameters first: the server reads the first of a name.
    let mut params = extra.to_vec();
    params.extend_from_slice(&[("query", query), ("start", &start), ("end", &end)]);
    let (code, body) = get(odin, tenant, "/loki/api/v1/query_range", &params);
    assert_eq!(code, 200, "{query}: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["status"], "success");
    assert_eq!(v["data"]["resultType"], "streams");
    let mut out = Vec::new();
    for s in v["data"]["result"].as_array().unwrap() {
        for e in s["values"].as_array().unwrap() {
            out.push((
                s["stream"].to_string(),
                e[0].as_str().unwrap().parse().unwrap(),
                e[1].as_str().unwrap().to_string(),
            ));
        }
    }
    // The answer groups lines by stream; in one list they go by time, in the
    // query's direction.
    out.sort_by_key(|e| e.1);
    if !extra.contains(&("direction", "forward")) {
        out.reverse();
    }
    out
}

pub fn texts(found: &[(String, i64, String)]) -> Vec<&str> {
    found.iter().map(|(_, _, l)| l.as_str()).collect()
}

#[test]
fn promtail_and_json_pushes_are_queryable_per_tenant_and_survive_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &[]);
    let t0 = (now_ms() - 60_000) * 1_000_000;
    // Promtail's protobuf, with structured metadata.
    let body = promtail_request(&[
        (
            r#"{job="varlogs", host="gpu1"}"#,
            vec![
                (t0, "level=info msg=\"started\" took=15ms".into(), vec![]),
                (
                    t0 + 1_000,
                    "level=error msg=\"disk full\" took=2s".into(),
                    vec![("trace_id", "abc")],
                ),
            ],
        ),
        (
            r#"{job="kernel"}"#,
            vec![(
                t0 + 2_000,
                "NVRM: Xid 79, GPU has fallen off the bus".into(),
                vec![],
            )],
        ),
    ]);
    assert_eq!(
        push(&odin, None, "application/x-protobuf", None, &body).0,
        204
    );
    // Loki's JSON, gzip-compressed, for another tenant.
    let json = format!(
        r#"{{"streams":[{{"stream":{{"job":"varlogs","host":"gpu2"}},"values":[["{}","tenant b line"]]}}]}}"#,
        t0 + 3_000
    );
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    std::io::Write::write_all(&mut gz, json.as_bytes()).unwrap();
    let gz = gz.finish().unwrap();
    assert_eq!(
        push(&odin, Some("team-b"), "application/json", Some("gzip"), &gz).0,
        204
    );

    // Backward by default: newest first.
    let all = lines(&odin, None, r#"{job=~".+"}"#, &[]);
    assert_eq!(
        texts(&all),
        [
            "NVRM: Xid 79, GPU has fallen off the bus",
            "level=error msg=\"disk full\" took=2s",
            "level=info msg=\"started\" took=15ms"
        ]
    );
    assert_eq!(all[2].1, t0);
    let forward = lines(
        &odin,
        None,
        r#"{job="varlogs"}"#,
        &[("direction", "forward"), ("limit", "1")],
    );
    assert_eq!(texts(&forward), ["level=info msg=\"started\" took=15ms"]);
    // A line filter, a parser and a label filter; the structured metadata is a label.
    let errors = lines(
        &odin,
        None,
        r#"{job="varlogs"} |= "disk" | logfmt | took > 1s"#,
        &[],
    );
    assert_eq!(texts(&errors), ["level=error msg=\"disk full\" took=2s"]);
    let stream: serde_json::Value = serde_json::from_str(&errors[0].0).unwrap();
    assert_eq!(stream["trace_id"], "abc");
    assert_eq!(stream["level"], "error");
    assert_eq!(stream["host"], "gpu1");
    // Tenants never see each other's lines.
    assert_eq!(
        texts(&lines(&odin, Some("team-b"), r#"{job=~".+"}"#, &[])),
        ["tenant b line"]
    );
    assert!(lines(&odin, Some("nobody"), r#"{job=~".+"}"#, &[]).is_empty());

    // Labels, values and series, per tenant.
    let (code, body) = get(&odin, None, "/loki/api/v1/labels", &[]);
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"], serde_json::json!(["host", "job"]));
    let (_, body) = get(&odin, None, "/loki/api/v1/label/job/values", &[]);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"], serde_json::json!(["kernel", "varlogs"]));
    let (_, body) = get(&odin, Some("team-b"), "/loki/api/v1/label/host/values", &[]);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"], serde_json::json!(["gpu2"]));
    let (_, body) = get(
        &odin,
        None,
        "/loki/api/v1/series",
        &[("match[]", r#"{job="varlogs"}"#)],
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["data"],
        serde_json::json!([{"host": "gpu1", "job": "varlogs"}])
    );

    // The self metrics count what was stored.
    let (_, metrics) = odin.get("/metrics");
    assert!(
        metrics.contains("odin_tsdb_log_lines_appended_total 4"),
        "{metrics}"
    );

    // A clean restart, then a kill: every acknowledged line is there, once.
    let before = lines(&odin, None, r#"{job=~".+"}"#, &[]);
    assert_eq!(odin.stop().code(), Some(0));
    let odin = Odin::start(dir.path(), &[]);
    assert_eq!(lines(&odin, None, r#"{job=~".+"}"#, &[]), before);
    let more = promtail_request(&[(
        r#"{job="kernel"}"#,
        vec![(t0 + 5_000, "after restart".into(), vec![])],
    )]);
    assert_eq!(
        push(&odin, None, "application/x-protobuf", None, &more).0,
        204
    );
    odin.kill9();
    let odin = Odin::start(dir.path(), &[]);
    let after = lines(&odin, None, r#"{job="kernel"}"#, &[]);
    assert_eq!(
        texts(&after),
        ["after restart", "NVRM: Xid 79, GPU has fallen off the bus"]
    );
    assert_eq!(
        texts(&lines(&odin, Some("team-b"), r#"{job=~".+"}"#, &[])),
        ["tenant b line"]
    );
}

#[test]
fn bad_pushes_and_queries_get_lokis_errors_and_nothing_half_stored() {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &[]);
    let now = now_ms() * 1_000_000;
    // Malformed JSON, a broken protobuf, an unknown encoding: refused whole.
    let (code, body) = push(&odin, None, "application/json", None, b"{\"streams\": [");
    assert_eq!(code, 400, "{body}");
    let (code, _) = push(
        &odin,
        None,
        "application/x-protobuf",
        None,
        b"\xff\xff\xff garbage",
    );
    assert_eq!(code, 400);
    let (code, _) = push(&odin, None, "application/json", Some("br"), b"{}");
    assert_eq!(code, 415);
    let (code, body) = push(&odin, Some("a|b"), "application/json", None, b"{}");
    assert_eq!((code, body.trim()), (400, "multiple org IDs present"));
    // A huge line and a label bomb are dropped with Loki's messages; the good line
    // of the same request is stored.
    let huge = "x".repeat(300 * 1024);
    let bomb: String = (0..20).map(|i| format!("l{i}=\"v\",")).collect();
    let json = format!(
        r#"{{"streams":[
            {{"stream":{{"job":"ok"}},"values":[["{now}","fine"],["{later}","{huge}"]]}},
            {{"stream":{{{bomb_json}}},"values":[["{now}","bomb"]]}}]}}"#,
        later = now + 1,
        bomb_json = bomb
            .trim_end_matches(',')
            .split(',')
            .map(|p| {
                let (k, v) = p.split_once('=').unwrap();
                format!("\"{k}\":{v}")
            })
            .collect::<Vec<_>>()
            .join(",")
    );
    let (code, body) = push(&odin, None, "application/json", None, json.as_bytes());
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("Max entry size '262144' bytes exceeded"),
        "{body}"
    );
    assert!(body.contains("has 20 label names; limit 15"), "{body}");
    // The good line is stored; the rest is not.
    assert_eq!(texts(&lines(&odin, None, r#"{job=~".+"}"#, &[])), ["fine"]);
    // Bad queries: Loki's parse errors and parameter checks, as 400 plain text.
    let (code, body) = get(
        &odin,
        None,
        "/loki/api/v1/query_range",
        &[("query", "{job=}")],
    );
    assert_eq!(code, 400);
    assert!(body.starts_with("parse error at line 1, col"), "{body}");
    let (code, body) = get(
        &odin,
        None,
        "/loki/api/v1/query_range",
        &[("query", "{job=\"ok\"}"), ("limit", "100000")],
    );
    assert_eq!(code, 400);
    assert!(
        body.contains("max entries limit per query exceeded"),
        "{body}"
    );
    // format_query writes a query canonically, or says why it cannot.
    let (code, body) = get(
        &odin,
        None,
        "/loki/api/v1/format_query",
        &[("query", "sum by(job)(rate({job=\"ok\"}|=`x`[5m]))")],
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"], r#"sum by (job) (rate({job="ok"} |= "x" [5m]))"#);
    let (code, body) = get(
        &odin,
        None,
        "/loki/api/v1/format_query",
        &[("query", "sum(")],
    );
    assert_eq!(code, 400);
    assert!(body.starts_with("parse error"), "{body}");
    // Long chains of operators or label filters are as deep as they are long:
    // refused, where 3,000 terms overflowed a worker's stack and killed the process.
    for q in [
        vec!["vector(1)"; 1_000].join("+"),
        format!(
            "{{job=\"ok\"}} | logfmt | {}",
            vec!["level=\"x\""; 1_000].join(" and ")
        ),
    ] {
        for path in ["/loki/api/v1/query", "/loki/api/v1/query_range"] {
            let (code, body) = get(&odin, None, path, &[("query", &q)]);
            assert_eq!(code, 400, "{path}: {body}");
            assert!(body.contains("nested too deeply"), "{body}");
        }
    }
    // The process stays up; Loki's readiness path answers Loki's word.
    assert_eq!(odin.get("/ready"), (200, "ready\n".to_string()));
}

/// A client that retries a whole batch (Promtail after a timeout or a 5xx) sends its
/// lines again; each is read once, by log and metric queries, as in Loki. A line
/// of the same time with other text is a line of its own.
#[test]
fn a_retried_push_is_read_once() {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &[]);
    let now = now_ms() * 1_000_000;
    let batch = promtail_request(&[(
        r#"{job="retry"}"#,
        vec![
            (now - 3_000_000_000, "a".to_string(), vec![]),
            (now - 2_000_000_000, "b".to_string(), vec![]),
            (now - 1_000_000_000, "c".to_string(), vec![]),
        ],
    )]);
    for _ in 0..2 {
        let (code, body) = push(&odin, None, "application/x-protobuf", None, &batch);
        assert_eq!(code, 204, "{body}");
    }
    let json = format!(
        r#"{{"streams":[{{"stream":{{"job":"retry"}},"values":[["{}","c"],["{}","c2"]]}}]}}"#,
        now - 1_000_000_000,
        now - 1_000_000_000
    );
    let (code, body) = push(&odin, None, "application/json", None, json.as_bytes());
    assert_eq!(code, 204, "{body}");
    assert_eq!(
        texts(&lines(
            &odin,
            None,
            r#"{job="retry"}"#,
            &[("direction", "forward")]
        )),
        ["a", "b", "c", "c2"]
    );
    // Written in Loki's key order: one-pass parsers need the type first.
    let (code, body) = get(
        &odin,
        None,
        "/loki/api/v1/query_range",
        &[("query", r#"{job="retry"}"#)],
    );
    assert_eq!(code, 200, "{body}");
    assert!(
        body.starts_with(r#"{"status":"success","data":{"resultType":"streams","result":["#),
        "{body}"
    );
    let (code, body) = get(
        &odin,
        None,
        "/loki/api/v1/query",
        &[("query", r#"sum(count_over_time({job="retry"}[1m]))"#)],
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["result"][0]["value"][1], "4", "{v}");
    // Loki's legacy path takes protobuf; its old JSON shape is refused by name,
    // not stored as an empty stream.
    let legacy = promtail_request(&[(
        r#"{job="legacy"}"#,
        vec![(now, "old client".to_string(), vec![])],
    )]);
    let (code, body) = odin.post("/api/prom/push", "application/x-protobuf", &legacy);
    assert_eq!(code, 204, "{body}");
    assert_eq!(
        texts(&lines(&odin, None, r#"{job="legacy"}"#, &[])),
        ["old client"]
    );
    let old_json = br#"{"streams":[{"labels":"{job=\"a\"}","entries":[{"ts":"2024-01-01T00:00:00Z","line":"x"}]}]}"#;
    let (code, body) = odin.post("/api/prom/push", "application/json", old_json);
    assert_eq!(code, 400, "{body}");
    assert!(
        body.contains("legacy JSON push format is not supported"),
        "{body}"
    );
}

/// The tenant limits are flags: the active-stream limit and the ingestion rate
/// refuse with 429 and Loki's messages, per tenant, and store nothing of the push.
#[test]
fn tenant_limits_are_set_by_flags_and_refuse_with_429() {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(
        dir.path(),
        &[
            "--logs.max-streams-per-tenant=2",
            "--logs.ingestion-rate-mb=0.01",
            "--logs.ingestion-burst-size-mb=0.02",
        ],
    );
    let now = now_ms() * 1_000_000;
    let body = |streams: &[&str], line: &str| {
        let entries: Vec<(&str, Vec<Entry<'_>>)> = streams
            .iter()
            .map(|s| (*s, vec![(now, line.to_string(), Vec::new())]))
            .collect();
        promtail_request(&entries)
    };
    let ok = body(&["{app=\"a\"}", "{app=\"b\"}"], "x");
    let (code, text) = push(&odin, None, "application/x-protobuf", None, &ok);
    assert_eq!(code, 204, "{text}");
    // A third stream is one too many for this tenant; nothing of the push is kept.
    let third = body(&["{app=\"a\"}", "{app=\"c\"}"], "y");
    let (code, text) = push(&odin, None, "application/x-protobuf", None, &third);
    assert_eq!(code, 429, "{text}");
    assert!(
        text.contains("Maximum active stream limit exceeded"),
        "{text}"
    );
    assert_eq!(
        texts(&lines(&odin, None, r#"{app=~".+"}"#, &[])),
        ["x", "x"]
    );
    // Known streams still take lines; another tenant has its own count.
    let (code, text) = push(
        &odin,
        None,
        "application/x-protobuf",
        None,
        &body(&["{app=\"a\"}"], "z"),
    );
    assert_eq!(code, 204, "{text}");
    let (code, text) = push(&odin, Some("other"), "application/x-protobuf", None, &third);
    assert_eq!(code, 204, "{text}");
    // 20 KB at once is over the 0.02 MB burst.
    let big = body(&["{app=\"a\"}"], &"w".repeat(30_000));
    let (code, text) = push(&odin, None, "application/x-protobuf", None, &big);
    assert_eq!(code, 429, "{text}");
    assert!(text.contains("Ingestion rate limit exceeded"), "{text}");
    // Empty lines cost memory too: each is charged at least 64 bytes. 400 of them
    // (0 bytes, 25,600 charged) take the whole burst; the next push is refused.
    let entries: Vec<Entry<'_>> = (0..400)
        .map(|i| (now + i, String::new(), Vec::new()))
        .collect();
    let empty = promtail_request(&[("{app=\"a\"}", entries)]);
    let (code, text) = push(&odin, Some("empty"), "application/x-protobuf", None, &empty);
    assert_eq!(code, 204, "{text}");
    let (code, text) = push(&odin, Some("empty"), "application/x-protobuf", None, &empty);
    assert_eq!(code, 429, "{text}");
    assert!(text.contains("'400' lines totaling '0' bytes"), "{text}");
    // A limit that makes no sense is refused at start.
    let out = std::process::Command::new(crate::common::BIN)
        .args(["run", "--logs.ingestion-rate-mb=0"])
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("x").display()
        ))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--logs.ingestion-rate-mb"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Lines of a window an hour past its end are sealed and written out as a segment
/// (zstd lines, tantivy index); queries read them there, also after a restart.
#[test]
fn sealed_windows_are_written_out_and_stay_queryable() {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &[]);
    let old = (now_ms() - 5 * 3_600_000) * 1_000_000;
    let now = now_ms() * 1_000_000;
    let body = promtail_request(&[(
        r#"{job="old"}"#,
        (0..200)
            .map(|i| {
                (
                    old + i * 1_000_000,
                    format!("old line {i} status=200"),
                    vec![],
                )
            })
            .chain([(old + 500_000_000, "kernel: Xid 48 DBE".to_string(), vec![])])
            .collect(),
    )]);
    assert_eq!(
        push(&odin, None, "application/x-protobuf", None, &body).0,
        204
    );
    let body = promtail_request(&[(r#"{job="new"}"#, vec![(now, "new line".into(), vec![])])]);
    assert_eq!(
        push(&odin, None, "application/x-protobuf", None, &body).0,
        204
    );
    let tenant_dir = dir.path().join("logs").join("fake");
    let written = || {
        std::fs::read_dir(&tenant_dir)
            .map(|d| d.flatten().any(|e| e.path().join("meta.json").exists()))
            .unwrap_or(false)
    };
    assert!(
        crate::common::poll_until(std::time::Duration::from_secs(30), written),
        "no segment written; log:\n{}",
        odin.log_text()
    );
    let range = [
        (
            "start",
            ((now_ms() - 6 * 3_600_000) * 1_000_000).to_string(),
        ),
        ("end", ((now_ms() + 60_000) * 1_000_000).to_string()),
    ];
    let q = |odin: &Odin, query: &str| {
        let (code, body) = get(
            odin,
            None,
            "/loki/api/v1/query_range",
            &[
                ("query", query),
                ("limit", "1000"),
                ("start", &range[0].1),
                ("end", &range[1].1),
            ],
        );
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(&body).unwrap();
        v["data"]["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["values"].as_array().unwrap().len())
            .sum::<usize>()
    };
    assert_eq!(q(&odin, r#"{job="old"}"#), 201);
    assert_eq!(q(&odin, r#"{job="old"} |= "Xid 48""#), 1);
    assert_eq!(q(&odin, r#"{job=~".+"} != "status=200""#), 2);
    // Late lines for the sealed window are refused, with a reason.
    let late = promtail_request(&[(r#"{job="old"}"#, vec![(old + 2, "late".into(), vec![])])]);
    let (code, body) = push(&odin, None, "application/x-protobuf", None, &late);
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("too old"), "{body}");
    assert_eq!(odin.stop().code(), Some(0));
    let odin = Odin::start(dir.path(), &[]);
    assert_eq!(q(&odin, r#"{job="old"}"#), 201);
    assert_eq!(q(&odin, r#"{job="new"}"#), 1);
}

/// Metric queries as Grafana's Loki datasource sends them: `query` (instant, a
/// vector) and `query_range` (a matrix at every step); a log query is no instant
/// query.
#[test]
fn metric_queries_answer_vectors_and_matrices() {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &[]);
    // Whole seconds, 60 lines a second apart ending 10 s ago; every third an error.
    let end_s = now_ms() / 1000 - 10;
    let entries: Vec<Entry<'_>> = (0..60)
        .map(|i| {
            let level = if i % 3 == 0 { "error" } else { "info" };
            (
                (end_s - 59 + i) * 1_000_000_000,
                format!("level={level} took={}ms", i + 1),
                vec![],
            )
        })
        .collect();
    let body = promtail_request(&[(r#"{job="m", host="h1"}"#, entries)]);
    assert_eq!(
        push(&odin, None, "application/x-protobuf", None, &body).0,
        204
    );
    let t = end_s.to_string();
    let (code, body) = get(
        &odin,
        None,
        "/loki/api/v1/query",
        &[
            (
                "query",
                r#"sum by (level) (count_over_time({job="m"} | logfmt [1m]))"#,
            ),
            ("time", &t),
        ],
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["resultType"], "vector");
    assert_eq!(
        v["data"]["result"],
        serde_json::json!([
            {"metric": {"level": "error"}, "value": [end_s, "20"]},
            {"metric": {"level": "info"}, "value": [end_s, "40"]}
        ])
    );
    // A range query: at end-30 s and at the end, with an unwrap and a comparison.
    let start = (end_s - 30).to_string();
    let (code, body) = get(
        &odin,
        None,
        "/loki/api/v1/query_range",
        &[
            (
                "query",
                r#"max_over_time({job="m"} | logfmt | unwrap duration(took) [30s]) by (host) > 0.01"#,
            ),
            ("start", &start),
            ("end", &t),
            ("step", "30s"),
        ],
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["resultType"], "matrix");
    assert_eq!(
        v["data"]["result"],
        serde_json::json!([{"metric": {"host": "h1"}, "values": [[end_s - 30, "0.03"], [end_s, "0.06"]]}])
    );
    // Sorted by value where the query asks.
    let (_, body) = get(
        &odin,
        None,
        "/loki/api/v1/query",
        &[
            (
                "query",
                r#"sort_desc(sum by (level) (count_over_time({job="m"} | logfmt [1m])))"#,
            ),
            ("time", &t),
        ],
    );
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["data"]["result"][0]["metric"]["level"], "info");
    // Errors: a log query on /query, a parse error, a pipeline error.
    let (code, body) = get(
        &odin,
        None,
        "/loki/api/v1/query",
        &[("query", r#"{job="m"}"#)],
    );
    assert_eq!(code, 400);
    assert!(
        body.starts_with("log queries are not supported as an instant query type"),
        "{body}"
    );
    let (code, body) = get(
        &odin,
        None,
        "/loki/api/v1/query",
        &[("query", "rate({job=\"m\"}[1x])")],
    );
    assert_eq!(code, 400, "{body}");
    let (code, body) = get(
        &odin,
        None,
        "/loki/api/v1/query",
        &[
            (
                "query",
                r#"sum(sum_over_time({job="m"} | logfmt | unwrap level [1m]))"#,
            ),
            ("time", &t),
        ],
    );
    assert_eq!(code, 400);
    assert!(
        body.starts_with("pipeline error: 'SampleExtractionErr'"),
        "{body}"
    );
}

/// Grafana's other calls: build info, the query size estimate (`index/stats`),
/// log volumes (`index/volume`), and a live tail over a websocket.
#[test]
fn tail_stats_volume_and_buildinfo() {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &[]);
    let t0 = (now_ms() - 30_000) * 1_000_000;
    let body = promtail_request(&[
        (
            r#"{job="a", pod="p1"}"#,
            vec![(t0, "12345".into(), vec![]), (t0 + 1, "123".into(), vec![])],
        ),
        (r#"{job="b", pod="p2"}"#, vec![(t0 + 2, "1".into(), vec![])]),
    ]);
    assert_eq!(
        push(&odin, None, "application/x-protobuf", None, &body).0,
        204
    );
    let (code, body) = get(&odin, None, "/loki/api/v1/status/buildinfo", &[]);
    assert_eq!(code, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    // Loki 2.9, whose endpoints ODIN has: a client that sees 3.x calls Loki 3's.
    assert!(v["version"].as_str().unwrap().starts_with("2.9."), "{body}");
    let (code, body) = get(
        &odin,
        None,
        "/loki/api/v1/index/stats",
        &[("query", r#"{job=~".+"}"#)],
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (
            v["streams"].as_u64(),
            v["entries"].as_u64(),
            v["bytes"].as_u64()
        ),
        (Some(2), Some(3), Some(9))
    );
    let (code, body) = get(
        &odin,
        None,
        "/loki/api/v1/index/volume",
        &[("query", r#"{job=~".+"}"#)],
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    let result = &v["data"]["result"];
    assert_eq!(result[0]["metric"], serde_json::json!({"job": "a"}));
    assert_eq!(result[0]["value"][1], "8");
    assert_eq!(result[1]["value"][1], "1");
    let (code, _) = get(
        &odin,
        None,
        "/loki/api/v1/index/volume",
        &[("query", r#"{job=~".+"}"#), ("targetLabels", "pod")],
    );
    assert_eq!(code, 200);

    // A tail: the history since `start` first, then lines as they arrive, through
    // the pipeline, for its tenant only.
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("query", r#"{job="a"} |= "1""#)
        .append_pair("start", &(t0 - 1).to_string())
        .finish();
    let url = format!("ws://{}/loki/api/v1/tail?{query}", odin.addr);
    let (mut socket, _) = tungstenite::connect(url).expect("websocket");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = socket.get_mut() {
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
    }
    let mut next = || -> serde_json::Value {
        loop {
            match socket.read().expect("a tail message") {
                tungstenite::Message::Text(t) => return serde_json::from_str(&t).unwrap(),
                _ => continue,
            }
        }
    };
    let history = next();
    assert_eq!(
        history["streams"][0]["values"].as_array().unwrap().len(),
        2,
        "{history}"
    );
    let live = promtail_request(&[
        (
            r#"{job="a", pod="p1"}"#,
            vec![
                (t0 + 10, "live 1".into(), vec![]),
                (t0 + 11, "no match".into(), vec![]),
            ],
        ),
        (
            r#"{job="b", pod="p2"}"#,
            vec![(t0 + 12, "other stream 1".into(), vec![])],
        ),
    ]);
    assert_eq!(
        push(
            &odin,
            Some("other-tenant"),
            "application/x-protobuf",
            None,
            &live
        )
        .0,
        204
    );
    assert_eq!(
        push(&odin, None, "application/x-protobuf", None, &live).0,
        204
    );
    let m = next();
    assert_eq!(m["streams"].as_array().unwrap().len(), 1, "{m}");
    assert_eq!(
        m["streams"][0]["values"],
        serde_json::json!([[(t0 + 10).to_string(), "live 1"]])
    );
    // A metric query is no tail.
    let url = format!(
        "ws://{}/loki/api/v1/tail?query=count_over_time(%7Bjob%3D%22a%22%7D%5B1m%5D)",
        odin.addr
    );
    assert!(tungstenite::connect(url).is_err());
}

fn append(path: &std::path::Path, text: &str) {
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

/// The built-in sources: files followed through appends, a rotation by rename
/// and a truncation, multi-line entries joined, pod logs in the CRI format, and a
/// restart that neither loses nor repeats a line.
#[test]
fn files_and_pod_logs_are_followed_through_rotation_and_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let logs = dir.path().join("logs-in");
    for sub in ["app", "ml", "pods/default_web-1_0c7a/nginx"] {
        std::fs::create_dir_all(logs.join(sub)).unwrap();
    }
    let config = dir.path().join("odin.yml");
    std::fs::write(
        &config,
        format!(
            "collectors:\n  files:\n    - paths: [\"{d}/app/*.log\"]\n      labels: {{job: app}}\n    - paths: [\"{d}/ml/*.log\"]\n      labels: {{job: ml}}\n      multiline: {{firstline: '^\\d{{4}}-', max_wait_time: 1s}}\n  pods:\n    path: {d}/pods\n",
            d = logs.display()
        ),
    )
    .unwrap();
    let app = logs.join("app/a.log");
    append(&app, "one\ntwo\nthree\n");
    let data = dir.path().join("data");
    let args = [format!("--config.file={}", config.display())];
    let odin = Odin::start_args(&data, &args);
    let app_lines = |odin: &Odin| -> Vec<String> {
        let mut t: Vec<String> = lines(odin, None, r#"{job="app"}"#, &[("direction", "forward")])
            .into_iter()
            .map(|(_, _, l)| l)
            .collect();
        t.sort();
        t
    };
    let until = |odin: &Odin, want: &[&str]| {
        let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        want.sort();
        let ok = crate::common::poll_until(std::time::Duration::from_secs(20), || {
            app_lines(odin) == want
        });
        assert!(ok, "have {:?}, want {want:?}", app_lines(odin));
    };
    until(&odin, &["one", "two", "three"]);
    // Rotation by rename: the old file's last lines, then the new file's.
    append(&app, "four\n");
    std::fs::rename(&app, logs.join("app/a.log.1")).unwrap();
    append(&app, "five\n");
    until(&odin, &["one", "two", "three", "four", "five"]);
    // Truncation in place.
    // (Shorter than what was read of the file: the tail sees the truncation.)
    std::fs::write(&app, "").unwrap();
    append(&app, "six\n");
    until(&odin, &["one", "two", "three", "four", "five", "six"]);
    let streams: Vec<String> = lines(&odin, None, r#"{job="app"}"#, &[])
        .into_iter()
        .map(|(s, _, _)| s)
        .collect();
    assert!(
        streams
            .iter()
            .all(|s| s.contains(&format!("\"filename\":\"{}\"", app.display()))),
        "{streams:?}"
    );

    // Multi-line entries.
    append(
        &logs.join("ml/m.log"),
        "2024-01-01 start one\n  at frame 1\n  at frame 2\n2024-01-01 start two\n",
    );
    let ml = |odin: &Odin| -> Vec<String> {
        let mut t: Vec<String> = lines(odin, None, r#"{job="ml"}"#, &[])
            .into_iter()
            .map(|(_, _, l)| l)
            .collect();
        t.sort();
        t
    };
    assert!(
        crate::common::poll_until(std::time::Duration::from_secs(20), || ml(&odin).len() == 2),
        "{:?}",
        ml(&odin)
    );
    assert_eq!(
        ml(&odin),
        [
            "2024-01-01 start one\n  at frame 1\n  at frame 2",
            "2024-01-01 start two"
        ]
    );

    // Pod logs: labels from the path, the CRI stream as a label, split lines joined.
    let t0 = (now_ms() - 60_000) * 1_000_000 + 1;
    let at = |ns: i64| {
        chrono::DateTime::from_timestamp_nanos(ns)
            .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
    };
    append(
        &logs.join("pods/default_web-1_0c7a/nginx/0.log"),
        &format!(
            "{} stdout P GET /index\n{} stdout F .html 200\n{} stderr F warn: slow\n",
            at(t0),
            at(t0 + 1),
            at(t0 + 1_000_000_000)
        ),
    );
    let start = (t0 - 1_000_000_000).to_string();
    let start = start.as_str();
    let pods = |odin: &Odin| {
        lines(
            odin,
            None,
            r#"{namespace="default", pod="web-1", container="nginx"}"#,
            &[("start", start)],
        )
    };
    assert!(crate::common::poll_until(
        std::time::Duration::from_secs(20),
        || pods(&odin).len() == 2
    ));
    let found = pods(&odin);
    assert!(
        found
            .iter()
            .any(|(s, t, l)| s.contains("\"stream\":\"stdout\"")
                && *t == t0
                && l == "GET /index.html 200"),
        "{found:?}"
    );
    assert!(
        found
            .iter()
            .any(|(s, _, l)| s.contains("\"stream\":\"stderr\"") && l == "warn: slow"),
        "{found:?}"
    );

    // A restart: lines written while stopped come once, nothing twice.
    assert_eq!(odin.stop().code(), Some(0));
    append(&app, "seven\neight\n");
    let odin = Odin::start_args(&data, &args);
    until(
        &odin,
        &[
            "one", "two", "three", "four", "five", "six", "seven", "eight",
        ],
    );
    // A round later, still each line once.
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert_eq!(app_lines(&odin).len(), 8);
    assert_eq!(ml(&odin).len(), 2);
    assert_eq!(pods(&odin).len(), 2);
}

/// The journald source: entries of journalctl's JSON become lines of their unit;
/// after a restart journalctl is asked for what follows the committed cursor, so
/// nothing comes twice. (A stand-in journalctl plays the journal: this machine has
/// none.)
#[test]
fn journald_entries_are_read_once_across_restarts() {
    let dir = tempfile::tempdir().unwrap();
    let entries = dir.path().join("entries");
    let calls = dir.path().join("calls");
    let fake = dir.path().join("journalctl");
    std::fs::write(
        &fake,
        format!(
            "#!/bin/sh\nafter=\"\"\nfor a in \"$@\"; do case \"$a\" in --after-cursor=*) after=\"${{a#--after-cursor=}}\";; esac; done\necho \"after=$after\" >> {calls}\nawk -v after=\"$after\" 'BEGIN{{p = (after == \"\")}} {{ if (p) print; if (index($0, \"\\\"__CURSOR\\\":\\\"\" after \"\\\"\")) p = 1 }}' {entries}\nexec sleep 3600\n",
            calls = calls.display(),
            entries = entries.display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    let us = (now_ms() - 60_000) * 1000;
    let entry = |i: i64| {
        format!(
            "{{\"__CURSOR\":\"c{i}\",\"__REALTIME_TIMESTAMP\":\"{}\",\"MESSAGE\":\"message {i}\",\"_SYSTEMD_UNIT\":\"app.service\",\"PRIORITY\":\"6\"}}\n",
            us + i
        )
    };
    append(&entries, &(entry(1) + &entry(2)));
    let config = dir.path().join("odin.yml");
    std::fs::write(
        &config,
        format!(
            "collectors:\n  journald:\n    journalctl: {}\n",
            fake.display()
        ),
    )
    .unwrap();
    let data = dir.path().join("data");
    let args = [format!("--config.file={}", config.display())];
    let got = |odin: &Odin| -> Vec<String> {
        let mut t: Vec<String> = lines(
            odin,
            None,
            r#"{job="systemd-journal", unit="app.service"}"#,
            &[],
        )
        .into_iter()
        .map(|(_, _, l)| l)
        .collect();
        t.sort();
        t
    };
    let odin = Odin::start_args(&data, &args);
    assert!(
        crate::common::poll_until(std::time::Duration::from_secs(20), || got(&odin).len() == 2),
        "{:?}",
        got(&odin)
    );
    assert_eq!(odin.stop().code(), Some(0));
    append(&entries, &entry(3));
    let odin = Odin::start_args(&data, &args);
    assert!(
        crate::common::poll_until(std::time::Duration::from_secs(20), || got(&odin).len() == 3),
        "{:?}",
        got(&odin)
    );
    assert_eq!(got(&odin), ["message 1", "message 2", "message 3"]);
    let asked = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(asked.lines().collect::<Vec<_>>(), ["after=", "after=c2"]);
}

/// What Grafana's Loki datasource asks, in its order: the health check (an instant
/// `vector(1)+vector(1)`, and the labels call of older versions), the label browser
/// (labels, values, values narrowed by a selector, series), Explore's log query with
/// its logs-volume companion and the query-size estimate (`index/stats`), a metric
/// query over a range, and the live tail with Grafana's parameters.
#[test]
fn grafana_loki_datasource_request_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let odin = Odin::start(dir.path(), &[]);
    let now = now_ms() * 1_000_000;
    let t0 = now - 10 * 60 * 1_000_000_000;
    let entries = |level: &str, n: i64| -> Vec<Entry<'static>> {
        (0..n)
            .map(|i| {
                (
                    t0 + i * 1_000_000_000,
                    format!("level={level} msg=\"request {i}\" status={}", 200 + i % 3),
                    vec![],
                )
            })
            .collect()
    };
    let body = promtail_request(&[
        (
            r#"{app="api", level="info", pod="api-1"}"#,
            entries("info", 30),
        ),
        (
            r#"{app="api", level="error", pod="api-2"}"#,
            entries("error", 5),
        ),
        (
            r#"{app="db", level="info", pod="db-1"}"#,
            entries("info", 10),
        ),
    ]);
    assert_eq!(
        push(&odin, None, "application/x-protobuf", None, &body).0,
        204
    );
    let (start, end) = ((t0 - 60_000_000_000).to_string(), now.to_string());
    let json = |code: u16, body: &str| -> serde_json::Value {
        assert_eq!(code, 200, "{body}");
        let v: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(v["status"], "success", "{body}");
        v
    };
    let range = |q: &str, extra: &[(&str, &str)]| -> serde_json::Value {
        let mut params = vec![
            ("query", q),
            ("start", start.as_str()),
            ("end", end.as_str()),
        ];
        params.extend_from_slice(extra);
        let (code, body) = get(&odin, None, "/loki/api/v1/query_range", &params);
        json(code, &body)
    };

    // Save & test.
    let (code, body) = get(
        &odin,
        None,
        "/loki/api/v1/query",
        &[("query", "vector(1)+vector(1)"), ("time", &end)],
    );
    let v = json(code, &body);
    assert_eq!(v["data"]["resultType"], "vector", "{v}");
    assert_eq!(v["data"]["result"][0]["value"][1], "2", "{v}");
    let (code, body) = get(
        &odin,
        None,
        "/loki/api/v1/labels",
        &[("start", &start), ("end", &end)],
    );
    let v = json(code, &body);
    assert_eq!(v["data"], serde_json::json!(["app", "level", "pod"]), "{v}");

    // The label browser.
    let (code, body) = get(
        &odin,
        None,
        "/loki/api/v1/label/app/values",
        &[("start", &start), ("end", &end)],
    );
    assert_eq!(json(code, &body)["data"], serde_json::json!(["api", "db"]));
    let (code, body) = get(
        &odin,
        None,
        "/loki/api/v1/label/pod/values",
        &[
            ("start", &start),
            ("end", &end),
            ("query", r#"{app="api"}"#),
        ],
    );
    assert_eq!(
        json(code, &body)["data"],
        serde_json::json!(["api-1", "api-2"])
    );
    let (code, body) = get(
        &odin,
        None,
        "/loki/api/v1/series",
        &[
            ("match[]", r#"{app="api"}"#),
            ("start", &start),
            ("end", &end),
        ],
    );
    assert_eq!(json(code, &body)["data"].as_array().unwrap().len(), 2);

    // Explore: the query-size estimate, the log query, its logs volume.
    let (code, body) = get(
        &odin,
        None,
        "/loki/api/v1/index/stats",
        &[
            ("query", r#"{app="api"}"#),
            ("start", &start),
            ("end", &end),
        ],
    );
    assert_eq!(code, 200, "{body}");
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (v["streams"].as_u64(), v["entries"].as_u64()),
        (Some(2), Some(35))
    );
    let logs = range(
        r#"{app="api"} |= "request""#,
        &[("limit", "1000"), ("direction", "backward"), ("step", "1")],
    );
    assert_eq!(logs["data"]["resultType"], "streams");
    let lines: usize = logs["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["values"].as_array().unwrap().len())
        .sum();
    assert_eq!(lines, 35);
    assert!(logs["data"]["stats"]["summary"].is_object(), "{logs}");
    let volume = range(
        r#"sum by (level) (count_over_time({app="api"} | drop __error__[1m]))"#,
        &[("step", "60")],
    );
    assert_eq!(volume["data"]["resultType"], "matrix");
    let mut totals: Vec<(String, f64)> = volume["data"]["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            let level = s["metric"]["level"].as_str().unwrap().to_string();
            // Each 1m window counts its lines once; steps are a minute apart.
            let sum = s["values"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p[1].as_str().unwrap().parse::<f64>().unwrap())
                .sum();
            (level, sum)
        })
        .collect();
    totals.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        totals,
        [("error".to_string(), 5.0), ("info".to_string(), 30.0)]
    );

    // A metric query in Explore: error rate by pod, parsed with logfmt.
    let rate = range(
        r#"sum by (pod) (rate({app=~".+"} | logfmt | level="error" [5m]))"#,
        &[("step", "30")],
    );
    let series = rate["data"]["result"].as_array().unwrap();
    assert_eq!(series.len(), 1, "{rate}");
    assert_eq!(series[0]["metric"]["pod"], "api-2");

    // Live tail, as Grafana opens it.
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("query", r#"{app="db"}"#)
        .append_pair("delay_for", "0")
        .append_pair("limit", "1000")
        .append_pair("start", &(now - 1_000_000_000).to_string())
        .finish();
    let url = format!("ws://{}/loki/api/v1/tail?{query}", odin.addr);
    let (mut socket, _) = tungstenite::connect(url).expect("websocket");
    if let tungstenite::stream::MaybeTlsStream::Plain(s) = socket.get_mut() {
        s.set_read_timeout(Some(std::time::Duration::from_secs(20)))
            .unwrap();
    }
    let live = promtail_request(&[(
        r#"{app="db", level="info", pod="db-1"}"#,
        vec![(now_ms() * 1_000_000, "live line".into(), vec![])],
    )]);
    assert_eq!(
        push(&odin, None, "application/x-protobuf", None, &live).0,
        204
    );
    let got = loop {
        match socket.read().expect("a tail message") {
            tungstenite::Message::Text(t) => {
                let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                if !v["streams"].as_array().is_some_and(|s| s.is_empty()) {
                    break v;
                }
            }
            _ => continue,
        }
    };
    assert_eq!(got["streams"][0]["values"][0][1], "live line", "{got}");
    assert_eq!(got["streams"][0]["stream"]["pod"], "db-1", "{got}");
}
