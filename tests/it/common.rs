//! Starting the real `odin` binary on loopback and talking to it as a client.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use odin::remote::prompb::{Label, Sample, TimeSeries, WriteRequest};
use prost::Message;

pub const BIN: &str = env!("CARGO_BIN_EXE_odin");

/// A running `odin run` child process.
pub struct Odin {
    child: Option<Child>,
    pub addr: SocketAddr,
    /// The StoreAPI (gRPC) address; `None` when started with `--grpc-address=`.
    pub grpc_addr: Option<SocketAddr>,
    agent: ureq::Agent,
    log: LogTail,
}

impl Odin {
    /// The last lines the process logged, for a failing test's message.
    pub fn log_text(&self) -> String {
        self.log.text()
    }
}

/// The last lines a child wrote to stderr, for the message of a test that fails
/// because the child did not come up.
#[derive(Clone, Default)]
struct LogTail(std::sync::Arc<std::sync::Mutex<std::collections::VecDeque<String>>>);

impl LogTail {
    const LINES: usize = 40;

    /// Reads `stderr` to its end on a thread of its own (so that the child never
    /// blocks on a full pipe), keeping the last lines, echoing them with
    /// `ODIN_TEST_LOG` set, and handing each line to `watch`.
    fn follow(
        &self,
        stderr: impl std::io::Read + Send + 'static,
        mut watch: impl FnMut(&str) + Send + 'static,
    ) {
        let tail = self.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if std::env::var_os("ODIN_TEST_LOG").is_some() {
                    eprintln!("odin: {line}");
                }
                watch(&line);
                let mut lines = tail.0.lock().unwrap();
                if lines.len() == Self::LINES {
                    lines.pop_front();
                }
                lines.push_back(line);
            }
        });
    }

    fn text(&self) -> String {
        let lines = self.0.lock().unwrap();
        lines.iter().map(|l| format!("  {l}\n")).collect()
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into()
}

impl Odin {
    /// Starts odin on 127.0.0.1 with a free port and waits until it is ready. Without
    /// a `--config.file` in `extra` it runs a bare TSDB (a config with no scrape jobs
    /// and no collectors), so that only what a test sends is stored.
    pub fn start(dir: &Path, extra: &[&str]) -> Odin {
        let bare;
        let mut args: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        if !extra.iter().any(|a| a.starts_with("--config.file")) {
            bare = dir.with_extension("bare.yml");
            std::fs::write(&bare, "global: {}\n").expect("write bare config");
            args.push(format!("--config.file={}", bare.display()));
        }
        Self::start_args(dir, &args)
    }

    /// Starts odin with exactly these extra arguments (no config file unless given:
    /// the embedded default then runs).
    /// The gRPC server listens on a free loopback port unless `extra` names one.
    pub fn start_args(dir: &Path, extra: &[String]) -> Odin {
        Self::start_args_probing(dir, extra, &Odin::ready_over_http)
    }

    /// [`Odin::start_args`], with `ready` telling when the process is ready (`Err`
    /// with the last answer while it is not): for a listener the test's HTTP agent
    /// cannot talk to, TLS say.
    pub fn start_args_probing(
        dir: &Path,
        extra: &[String],
        ready: &dyn Fn(&Odin) -> Result<(), String>,
    ) -> Odin {
        let mut cmd = Command::new(BIN);
        cmd.arg("run")
            .arg(format!("--storage.tsdb.path={}", dir.display()))
            .arg("--web.listen-address=127.0.0.1:0");
        let grpc_given = extra.iter().any(|a| a.starts_with("--grpc-address"));
        let grpc_on = !extra.iter().any(|a| a == "--grpc-address=");
        if !grpc_given {
            cmd.arg("--grpc-address=127.0.0.1:0");
        }
        let mut child = cmd
            .args(extra)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn odin");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel::<SocketAddr>();
        let (grpc_tx, grpc_rx) = mpsc::channel::<SocketAddr>();
        let log = LogTail::default();
        let (mut sent, mut grpc_sent) = (false, false);
        log.follow(stderr, move |line| {
            let address = |line: &str| -> Option<SocketAddr> {
                line.split_whitespace()
                    .find_map(|w| w.strip_prefix("address="))
                    .and_then(|a| a.parse().ok())
            };
            if !sent && line.contains("http server listening") {
                if let Some(a) = address(line) {
                    let _ = tx.send(a);
                    sent = true;
                }
            }
            if !grpc_sent && line.contains("grpc server listening") {
                if let Some(a) = address(line) {
                    let _ = grpc_tx.send(a);
                    grpc_sent = true;
                }
            }
        });
        let reported = |what: &str, rx: &mpsc::Receiver<SocketAddr>| -> SocketAddr {
            rx.recv_timeout(Duration::from_secs(30))
                .unwrap_or_else(|_| {
                    panic!(
                        "odin did not report its {what} address; its log ends:\n{}",
                        log.text()
                    )
                })
        };
        let addr = reported("listen", &rx);
        let grpc_addr = grpc_on.then(|| reported("grpc", &grpc_rx));
        let mut odin = Odin {
            child: Some(child),
            addr,
            grpc_addr,
            agent: agent(),
            log,
        };
        odin.wait_ready(ready);
        odin
    }

    /// Starts `odin run` under `prefix` (for example `ip netns exec NS`, to run it in
    /// a network namespace) with exactly `args`, and waits until it answers ready at
    /// `addr`, where the test reaches its HTTP listener.
    pub fn start_under(prefix: &[&str], args: &[String], addr: SocketAddr) -> Odin {
        let mut cmd = Command::new(prefix[0]);
        let mut child = cmd
            .args(&prefix[1..])
            .arg(BIN)
            .arg("run")
            .args(args)
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn odin");
        let log = LogTail::default();
        log.follow(child.stderr.take().expect("stderr"), |_| {});
        let mut odin = Odin {
            child: Some(child),
            addr,
            grpc_addr: None,
            agent: agent(),
            log,
        };
        odin.wait_ready(&Odin::ready_over_http);
        odin
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    /// Whether `/-/ready` answers 200 over plain HTTP.
    pub fn ready_over_http(&self) -> Result<(), String> {
        match self.agent.get(&self.url("/-/ready")).call() {
            Ok(r) if r.status() == 200 => Ok(()),
            Ok(mut r) => Err(format!(
                "{}: {}",
                r.status(),
                r.body_mut().read_to_string().unwrap_or_default().trim()
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Polls `ready` until it holds; fails at once, with the child's last log
    /// lines, when the child exits first.
    fn wait_ready(&mut self, ready: &dyn Fn(&Odin) -> Result<(), String>) {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut last = String::from("no answer");
        while Instant::now() < deadline {
            match ready(self) {
                Ok(()) => return,
                Err(e) => last = e,
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                // Give the log reader a moment to take the last lines.
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "odin exited ({status}) before it was ready; its log ends:\n{}",
                    self.log.text()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "odin did not become ready in 60 s (last answer {last}); its log ends:\n{}",
            self.log.text()
        );
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let mut r = self.agent.get(&self.url(path)).call().expect("GET");
        let status = r.status().as_u16();
        (status, r.body_mut().read_to_string().unwrap_or_default())
    }

    pub fn post(&self, path: &str, content_type: &str, body: &[u8]) -> (u16, String) {
        let mut r = self
            .agent
            .post(&self.url(path))
            .header("Content-Type", content_type)
            .send(body)
            .expect("POST");
        let status = r.status().as_u16();
        (status, r.body_mut().read_to_string().unwrap_or_default())
    }

    /// Sends a snappy-compressed body to the remote-write endpoint.
    pub fn write_raw(&self, body: &[u8]) -> Result<(u16, String), ureq::Error> {
        let mut r = self
            .agent
            .post(&self.url("/api/v1/write"))
            .header("Content-Type", "application/x-protobuf")
            .header("Content-Encoding", "snappy")
            .header("X-Prometheus-Remote-Write-Version", "0.1.0")
            .send(body)?;
        let status = r.status().as_u16();
        Ok((status, r.body_mut().read_to_string().unwrap_or_default()))
    }

    pub fn write(&self, series: &[TestSeries]) -> (u16, String) {
        self.write_raw(&encode_write(series)).expect("remote write")
    }

    pub fn pid(&self) -> i32 {
        self.child.as_ref().map(|c| c.id() as i32).unwrap_or(0)
    }

    /// SIGKILL, as a crash.
    pub fn kill9(mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for the exit.
    pub fn stop(mut self) -> ExitStatus {
        let mut c = self.child.take().expect("running");
        // SAFETY: sending a signal to our own child process.
        unsafe {
            libc::kill(c.id() as i32, libc::SIGTERM);
        }
        wait_timeout(&mut c, Duration::from_secs(60)).expect("odin did not exit after SIGTERM")
    }
}

impl Drop for Odin {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// `odin check config <cfg>`, to its end.
pub fn check_config(cfg: &Path) -> std::process::Output {
    Command::new(BIN)
        .args(["check", "config"])
        .arg(cfg)
        .output()
        .expect("run odin check config")
}

/// `odin run` with the configuration file `cfg` and data under `dir`, to its end: for
/// configurations it must refuse before serving anything.
pub fn run_to_end(cfg: &Path, dir: &Path) -> std::process::Output {
    Command::new(BIN)
        .arg("run")
        .arg(format!("--config.file={}", cfg.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg("--web.listen-address=127.0.0.1:0")
        .arg("--grpc-address=")
        .output()
        .expect("run odin")
}

pub fn wait_timeout(c: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Ok(Some(st)) = c.try_wait() {
            return Some(st);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Labels and samples of one series in a test.
#[derive(Clone, Debug)]
pub struct TestSeries {
    pub labels: Vec<(String, String)>,
    pub samples: Vec<(i64, f64)>,
}

impl TestSeries {
    pub fn new(labels: &[(&str, &str)], samples: Vec<(i64, f64)>) -> Self {
        let mut labels: Vec<(String, String)> = labels
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        labels.sort();
        Self { labels, samples }
    }

    /// `{a="1", b="2"}` as promtool and `odin tsdb dump` print label sets.
    pub fn label_string(&self) -> String {
        let parts: Vec<String> = self
            .labels
            .iter()
            .map(|(n, v)| format!("{n}={v:?}"))
            .collect();
        format!("{{{}}}", parts.join(", "))
    }
}

pub fn encode_write(series: &[TestSeries]) -> Vec<u8> {
    let req = WriteRequest {
        timeseries: series
            .iter()
            .map(|s| TimeSeries {
                labels: s
                    .labels
                    .iter()
                    .map(|(n, v)| Label {
                        name: n.clone(),
                        value: v.clone(),
                    })
                    .collect(),
                samples: s
                    .samples
                    .iter()
                    .map(|&(t, v)| Sample {
                        value: v,
                        timestamp: t,
                    })
                    .collect(),
            })
            .collect(),
    };
    snap::raw::Encoder::new()
        .compress_vec(&req.encode_to_vec())
        .expect("snappy")
}

/// Runs `odin tsdb dump DIR` and returns its lines.
pub fn odin_dump(dir: &Path) -> Vec<String> {
    let out = Command::new(BIN)
        .args(["tsdb", "dump"])
        .arg(dir)
        .output()
        .expect("run odin tsdb dump");
    assert!(
        out.status.success(),
        "odin tsdb dump failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Block directories (ULID names with a meta.json) under `dir`.
pub fn block_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.path())
                .filter(|p| p.join("meta.json").exists())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.len() == 26 && !n.contains('.'))
                })
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

/// The wall clock in milliseconds since the epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Polls `cond` every 20 ms until it holds or `timeout` passes.
pub fn poll_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    cond()
}

/// A free loopback port (for programs that cannot report the port they bound).
/// A loopback port that a child process is told to listen on.
///
/// Ports come from below the kernel's ephemeral range (32768 and up on Linux): a port
/// from `bind(":0")` is handed out again to the next `bind(":0")` or outgoing
/// connection of any test running alongside, so a process started a few seconds later
/// could find it taken. Below that range only this function hands ports out, and its
/// counter never repeats one within the test process.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const SPAN: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    // Test processes that follow each other start at different offsets, so that a
    // port still in TIME_WAIT from the last run is not the first one tried.
    let seed = std::process::id().wrapping_mul(97) % SPAN;
    for _ in 0..SPAN {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let port = (FIRST + (seed + n) % SPAN) as u16;
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port between {FIRST} and {}", FIRST + SPAN);
}

/// Whether Debian's Prometheus tools are installed (the test script installs them).
pub fn have_prometheus() -> bool {
    let ok = |bin: &str| {
        Command::new(bin)
            .arg("--version")
            .output()
            .map(|o| o.status.success())
            .unwrap_or(false)
    };
    ok("promtool") && ok("prometheus")
}

/// Formats a value as promtool prints it (Go's %g).
pub fn go_g(v: f64) -> String {
    odin::model::format_go_g(v)
}

/// Copies a directory tree.
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let dst = to.join(e.file_name());
        if e.path().is_dir() {
            copy_dir(&e.path(), &dst);
        } else {
            std::fs::copy(e.path(), dst).unwrap();
        }
    }
}

/// A child process (Prometheus, say) killed when the test is done with it.
pub struct Killed(pub Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
