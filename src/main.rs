//! The `odin` command line: `odin run` starts the appliance with Prometheus's flags;
//! `odin check config` validates a config file; `odin tsdb dump` prints stored samples;
//! `odin tools bucket ls|inspect|verify` reads the bucket blocks ship to.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Parser, Subcommand};

use odin::app::{self, RunOptions};
use odin::config::Config;
use odin::model::{
    Matcher, format_duration_ms, format_go_g, parse_bytes, parse_duration_ms, parse_time_ms,
};
use odin::promql::EngineOptions;
use odin::storage::{Queryable, SelectHints};
use odin::tsdb::{Db, DbOptions, TsdbMetrics};

#[derive(Parser)]
#[command(
    name = "odin",
    version,
    about = "ODIN: metrics scraping, storage and querying in one binary"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once at start-up, so the size of the largest variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    /// Run the appliance.
    Run(RunFlags),
    /// Check configuration files.
    Check {
        #[command(subcommand)]
        what: CheckCommand,
    },
    /// Run tests.
    Test {
        #[command(subcommand)]
        what: TestCommand,
    },
    /// Inspect a data directory.
    Tsdb {
        #[command(subcommand)]
        what: TsdbCommand,
    },
    /// Look at and change a running cluster through a node's HTTP API (adding and
    /// removing members needs `--web.enable-admin-api` on that node, the leader).
    Cluster {
        #[command(subcommand)]
        what: ClusterCommand,
    },
    /// Make the certificates a deployment needs: a CA, then each node's and each
    /// client's certificate, signed by it.
    #[command(long_about = CERTS_HELP)]
    Certs {
        #[command(subcommand)]
        what: CertsCommand,
    },
    /// Tools for the object storage bucket blocks ship to.
    Tools {
        #[command(subcommand)]
        what: ToolsCommand,
    },
}

#[derive(Subcommand)]
enum ClusterCommand {
    /// Print the node's view of the cluster: role, leader, term, indices, members.
    Status {
        /// The node's HTTP address.
        #[arg(long, default_value = "http://localhost:9090")]
        url: String,
    },
    /// Add a node: a learner until it caught up with the log, then a voter. Start it
    /// first, with `--cluster.peers` naming the cluster and itself.
    Add {
        /// The leader's HTTP address.
        #[arg(long, default_value = "http://localhost:9090")]
        url: String,
        /// The new node's id.
        #[arg(long)]
        id: u64,
        /// `HOST:PORT` of the new node's cluster listener, as the others reach it.
        #[arg(long)]
        address: String,
    },
    /// Remove a node from the cluster.
    Remove {
        /// The leader's HTTP address.
        #[arg(long, default_value = "http://localhost:9090")]
        url: String,
        /// The node's id.
        #[arg(long)]
        id: u64,
    },
}

#[derive(Subcommand)]
enum ToolsCommand {
    /// Read the Thanos-layout bucket (as `thanos tools bucket`).
    Bucket {
        #[command(subcommand)]
        what: BucketCommand,
    },
}

/// Where the bucket is configured: a Thanos objstore file, or ODIN's config file
/// (`storage.object_store`).
#[derive(Args, Debug)]
struct BucketFlags {
    /// Thanos objstore YAML file (`type: S3|FILESYSTEM`, `config: …`).
    #[arg(long = "objstore.config-file")]
    objstore_config_file: Option<PathBuf>,
    /// ODIN configuration file with `storage.object_store`.
    #[arg(long = "config.file")]
    config_file: Option<PathBuf>,
}

#[derive(Subcommand)]
enum BucketCommand {
    /// List the blocks: ULID, time range (RFC 3339), labels, size, level. With
    /// `--logs`, the log segments instead (`logs/<tenant>/<ULID>/`).
    Ls {
        #[command(flatten)]
        bucket: BucketFlags,
        #[arg(long)]
        logs: bool,
    },
    /// Print one block's meta.json and its files.
    Inspect {
        #[command(flatten)]
        bucket: BucketFlags,
        /// The block's ULID.
        #[arg(long = "id")]
        id: String,
    },
    /// Check every block (or one): meta.json present and parsing, its files present
    /// with their sizes, the index and chunks readable. Exits non-zero on problems.
    Verify {
        #[command(flatten)]
        bucket: BucketFlags,
        /// Only this block.
        #[arg(long = "id")]
        id: Option<String>,
    },
}

const CERTS_HELP: &str = "Make the certificates a deployment needs: a CA, then each node's and \
each client's certificate, signed by it. Keys are ECDSA P-256, written with mode 0600.

The whole flow, for a three-node cluster with Grafana as a client:

  odin certs ca                                    # certs/ca.crt, certs/ca.key
  odin certs node --name odin-1 --host odin-1.example --host 10.0.0.1
  odin certs node --name odin-2 --host odin-2.example --host 10.0.0.2
  odin certs node --name odin-3 --host odin-3.example --host 10.0.0.3
  odin certs client --name grafana                 # certs/grafana.crt, .key

Copy ca.crt and a node's .crt and .key to that node, and point its web config at them:

  tls_server_config:
    cert_file: odin-1.crt
    key_file: odin-1.key
    client_auth_type: RequireAndVerifyClientCert   # or VerifyClientCertIfGiven
    client_ca_file: ca.crt

  odin run --web.config.file=web.yml --cluster.node-id=1 ...

A node's certificate serves its HTTP, StoreAPI and cluster ports (serverAuth) and is its \
identity towards its peers (clientAuth): the cluster's peers talk mutual TLS with it. \
Give Grafana (or Prometheus, or Thanos Query) ca.crt to trust the nodes, and its client \
certificate where client certificates are required. Keep ca.key offline once the \
certificates are made.";

#[derive(Subcommand)]
enum CertsCommand {
    /// A CA (ca.crt, ca.key) that signs the others and that nodes and clients trust.
    Ca {
        #[command(flatten)]
        common: CertsCommon,
        /// Common name of the CA.
        #[arg(long, default_value = "ODIN CA")]
        name: String,
        /// Validity in days.
        #[arg(long, default_value_t = 3650)]
        days: u32,
    },
    /// A node's certificate (NAME.crt, NAME.key): server and peer identity.
    Node {
        #[command(flatten)]
        common: CertsCommon,
        /// Common name, and the files' name.
        #[arg(long)]
        name: String,
        /// A DNS name or IP address the node is reached at (repeat for more).
        #[arg(long = "host", required = true)]
        hosts: Vec<String>,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
    /// A client's certificate (NAME.crt, NAME.key), for Grafana, Prometheus, Thanos.
    Client {
        #[command(flatten)]
        common: CertsCommon,
        /// Common name, and the files' name.
        #[arg(long)]
        name: String,
        /// Validity in days.
        #[arg(long, default_value_t = 365)]
        days: u32,
    },
}

#[derive(Args)]
struct CertsCommon {
    /// Folder of the CA and the certificates.
    #[arg(long, default_value = "certs")]
    dir: PathBuf,
    /// Replace files that exist.
    #[arg(long)]
    force: bool,
}

#[derive(Subcommand)]
enum TestCommand {
    /// Run rule unit tests in promtool's format (`promtool test rules`).
    Rules { files: Vec<PathBuf> },
}

#[derive(Subcommand)]
enum CheckCommand {
    /// Validate a configuration file; errors name the key and the line.
    Config { files: Vec<PathBuf> },
    /// Validate rule files as `promtool check rules` does: errors name the file,
    /// the line, the group and the rule.
    Rules { files: Vec<PathBuf> },
}

#[derive(Subcommand)]
enum TsdbCommand {
    /// Print every stored sample (blocks and WAL) of a data directory that no running
    /// ODIN holds, as `promtool tsdb dump` does.
    Dump {
        /// Data directory.
        #[arg(default_value = "data/")]
        path: PathBuf,
        #[arg(long = "min-time")]
        min_time: Option<String>,
        #[arg(long = "max-time")]
        max_time: Option<String>,
        /// Series selector; all series when absent.
        #[arg(long = "match", default_value = r#"{__name__=~".+"}"#)]
        matcher: String,
    },
    /// Report WAL damage (bad records, missing segments, damage kept aside) and block
    /// problems (meta.json, index, every chunk) without changing anything; exits
    /// non-zero when it finds any.
    Check {
        /// Data directory.
        #[arg(default_value = "data/")]
        path: PathBuf,
    },
}

/// Prometheus's flags, with Prometheus's names and meanings.
#[derive(Args, Debug)]
struct RunFlags {
    /// Configuration file. Without it ODIN runs its embedded default.
    #[arg(long = "config.file")]
    config_file: Option<PathBuf>,
    /// Base path for metrics storage [default: ./data].
    #[arg(long = "storage.tsdb.path")]
    tsdb_path: Option<PathBuf>,
    /// How long to retain samples in storage [default: 7d].
    #[arg(long = "storage.tsdb.retention.time")]
    retention_time: Option<String>,
    /// Maximum number of bytes of blocks and WAL (units: B, KB, MB, GB, TB, PB, EB; base 2).
    #[arg(long = "storage.tsdb.retention.size")]
    retention_size: Option<String>,
    /// How long to keep sealed log segments (0: forever) [default: the samples'
    /// retention time].
    #[arg(long = "logs.retention.time")]
    logs_retention_time: Option<String>,
    /// Per tenant, MB of log lines a second a push may bring (Loki's
    /// `ingestion_rate_mb`).
    #[arg(long = "logs.ingestion-rate-mb", default_value_t = 4.0)]
    logs_ingestion_rate_mb: f64,
    /// Per tenant, the most MB of log lines at once (Loki's `ingestion_burst_size_mb`).
    #[arg(long = "logs.ingestion-burst-size-mb", default_value_t = 6.0)]
    logs_ingestion_burst_size_mb: f64,
    /// Active log streams per tenant (Loki's `max_global_streams_per_user`; 0: no
    /// limit).
    #[arg(long = "logs.max-streams-per-tenant", default_value_t = 5000)]
    logs_max_streams_per_tenant: usize,
    /// Span of a block cut from the head.
    #[arg(long = "storage.tsdb.min-block-duration", default_value = "2h")]
    min_block_duration: String,
    /// Largest span compaction builds [default: 10% of the retention time].
    #[arg(long = "storage.tsdb.max-block-duration")]
    max_block_duration: Option<String>,
    /// Samples newer than the wall clock plus this window are refused
    /// (too_far_in_future), so one sample from a wrong clock cannot make every later
    /// write out of bounds; 0s accepts any time (Thanos Receive's
    /// --tsdb.too-far-in-future.time-window; default as Mimir's creation grace period).
    #[arg(
        long = "storage.tsdb.too-far-in-future.time-window",
        default_value = "10m"
    )]
    too_far_in_future: String,
    /// Address to listen on for the web interface and API.
    #[arg(long = "web.listen-address", default_value = "0.0.0.0:9090")]
    listen_address: String,
    /// Address to listen on for the Thanos StoreAPI (gRPC), as the Thanos sidecar's
    /// flag; empty turns it off.
    #[arg(long = "grpc-address", default_value = odin::storeapi::DEFAULT_GRPC_ADDRESS)]
    grpc_address: String,
    /// Path to a web configuration file (Prometheus's format): TLS
    /// (`tls_server_config`), response headers and basic-auth users, plus ODIN's
    /// `odin:` section for the users' roles.
    #[arg(long = "web.config.file")]
    web_config_file: Option<PathBuf>,
    /// Maximum number of simultaneous HTTP connections (more wait to be accepted).
    #[arg(long = "web.max-connections", default_value_t = 512)]
    web_max_connections: usize,
    /// Maximum duration before timing out the read of a request's body.
    #[arg(long = "web.read-timeout", default_value = "5m")]
    web_read_timeout: String,
    /// Maximum duration for a request's header to arrive, and for an idle
    /// connection to send its next request, before the connection is closed.
    #[arg(long = "web.read-header-timeout", default_value = "30s")]
    web_read_header_timeout: String,
    /// StoreAPI `Series` calls served at once, as Thanos's flag; more wait for a
    /// turn until their deadline. 0: no limit.
    #[arg(long = "store.grpc.series-max-concurrency", default_value_t = odin::storeapi::DEFAULT_SERIES_MAX_CONCURRENCY)]
    series_max_concurrency: usize,
    /// StoreAPI (gRPC) connections open at once; more wait in the kernel's backlog
    /// (as --web.max-connections for HTTP).
    #[arg(long = "grpc.max-connections", default_value_t = odin::storeapi::DEFAULT_MAX_CONNECTIONS)]
    grpc_max_connections: usize,
    /// A StoreAPI connection that moves no byte for this long is closed (its client
    /// reconnects when it next calls), so idle connections cannot hold every slot.
    #[arg(long = "grpc.max-connection-idle", default_value = "15m")]
    grpc_max_connection_idle: String,
    /// Run as this node of a Raft cluster (ids start at 1); without the
    /// `--cluster.*` flags (or a `cluster:` section), ODIN is a single node.
    #[arg(long = "cluster.node-id")]
    cluster_node_id: Option<u64>,
    /// Address the cluster (gRPC) listener binds, for the other nodes.
    #[arg(long = "cluster.listen-address")]
    cluster_listen_address: Option<String>,
    /// Address the other nodes reach this one at, when the listen address is not
    /// reachable by them [default: the listen address].
    #[arg(long = "cluster.advertise-address")]
    cluster_advertise_address: Option<String>,
    /// The members of a fresh cluster, `ID@HOST:PORT` comma-separated (etcd's
    /// --initial-cluster); this node among them. The lowest id initialises the cluster
    /// on its first start; restarts rejoin with what the data directory holds.
    #[arg(long = "cluster.peers")]
    cluster_peers: Option<String>,
    /// Raft log entries kept behind the newest durable head image, for followers
    /// that lag a little; one further behind catches up from a snapshot.
    #[arg(long = "cluster.log-entries-kept", default_value_t = 10_000)]
    cluster_log_entries_kept: u64,
    /// Enable the admin API endpoints.
    #[arg(long = "web.enable-admin-api")]
    enable_admin_api: bool,
    /// Accept remote-write requests on /api/v1/write (on by default, unlike
    /// Prometheus; `=false` for an appliance that only scrapes).
    #[arg(
        long = "web.enable-remote-write-receiver",
        default_value_t = true,
        num_args = 0..=1,
        default_missing_value = "true",
        action = clap::ArgAction::Set
    )]
    enable_remote_write_receiver: bool,
    /// Enable shutdown via HTTP (`/-/quit`).
    #[arg(long = "web.enable-lifecycle")]
    enable_lifecycle: bool,
    /// Regex for the CORS origins browsers may read the HTTP API from (anchored,
    /// as Prometheus's).
    #[arg(long = "web.cors.origin", default_value = ".*")]
    web_cors_origin: String,
    /// Only log messages at this level or above: debug, info, warn, error.
    #[arg(long = "log.level", default_value = "info")]
    log_level: String,
    /// Write the audit log (denials, admin actions, configuration reloads: who,
    /// what, from where, when) to this file as JSON lines, appended; without it
    /// the audit events go to the main log under the `odin::audit` target.
    #[arg(long = "audit.log-file")]
    audit_log_file: Option<PathBuf>,
    /// Log format: logfmt or json.
    #[arg(long = "log.format", default_value = "logfmt")]
    log_format: String,
    /// Maximum number of samples a single query can load into memory.
    #[arg(long = "query.max-samples", default_value_t = 50_000_000)]
    query_max_samples: usize,
    /// Maximum time a query may take before it is aborted.
    #[arg(long = "query.timeout", default_value = "2m")]
    query_timeout: String,
    /// Maximum number of queries executed concurrently.
    #[arg(long = "query.max-concurrency", default_value_t = 20)]
    query_max_concurrency: usize,
    /// How far back an instant selector looks for a sample.
    #[arg(long = "query.lookback-delta", default_value = "5m")]
    query_lookback_delta: String,
    /// Object storage that finished blocks ship to: a Thanos objstore YAML file
    /// (`type: S3|FILESYSTEM`, `config: …`), as the Thanos sidecar's flag. Wins over
    /// `storage.object_store` in the config file. Needs `global.external_labels`.
    #[arg(long = "objstore.config-file")]
    objstore_config_file: Option<PathBuf>,
    /// How often the shipper looks for blocks to upload (a head cut wakes it sooner).
    #[arg(long = "shipper.upload-interval", default_value = "30s")]
    shipper_interval: String,
    /// First wait after a failed upload; doubles per failure up to the maximum.
    #[arg(long = "shipper.retry-backoff-min", default_value = "1s")]
    shipper_backoff_min: String,
    /// Longest wait between upload attempts during an outage.
    #[arg(long = "shipper.retry-backoff-max", default_value = "2m")]
    shipper_backoff_max: String,
    /// Selected samples above which a query streams chunks window by window instead of
    /// loading every sample first (0 streams every query).
    #[arg(long = "query.stream-above-samples", default_value_t = 20_000_000)]
    query_stream_above_samples: usize,
    /// Bound of the in-memory cache of postings, series and chunks read from the
    /// bucket for long-term queries (0 turns caching off).
    #[arg(long = "store.cache-size", default_value = "1GiB")]
    store_cache_size: String,
    /// How often the bucket is listed for blocks to query.
    #[arg(long = "store.sync-interval", default_value = "1m")]
    store_sync_interval: String,
    /// The URL ODIN is reached at (behind a proxy, say): alerts link back to it and
    /// templates read it as `$externalURL` [default: http://<hostname>:<port>/].
    #[arg(long = "web.external-url")]
    web_external_url: Option<String>,
    /// Longest time ODIN may have been down for an alert's `for` state to be
    /// restored from ALERTS_FOR_STATE.
    #[arg(long = "rules.alert.for-outage-tolerance", default_value = "1h")]
    rules_for_outage_tolerance: String,
    /// Least time between a restart (or a change of leader after an outage) and a
    /// restored alert firing, for alerts whose `for` is at least this long.
    #[arg(long = "rules.alert.for-grace-period", default_value = "10m")]
    rules_for_grace_period: String,
    /// Least time between two notifications of the same firing alert.
    #[arg(long = "rules.alert.resend-delay", default_value = "1m")]
    rules_resend_delay: String,
    /// Alerts waiting for Alertmanager; past this the oldest are dropped (and
    /// counted in prometheus_notifications_dropped_total).
    #[arg(
        long = "alertmanager.notification-queue-capacity",
        default_value_t = 10_000
    )]
    notification_queue_capacity: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(flags) => run(flags),
        Command::Check {
            what: CheckCommand::Config { files },
        } => check_config(&files),
        Command::Check {
            what: CheckCommand::Rules { files },
        } => check_rules(&files),
        Command::Test {
            what: TestCommand::Rules { files },
        } => test_rules(&files),
        Command::Tsdb {
            what:
                TsdbCommand::Dump {
                    path,
                    min_time,
                    max_time,
                    matcher,
                },
        } => dump(&path, min_time.as_deref(), max_time.as_deref(), &matcher),
        Command::Tsdb {
            what: TsdbCommand::Check { path },
        } => tsdb_check(&path),
        Command::Tools {
            what: ToolsCommand::Bucket { what },
        } => bucket_tool(what),
        Command::Cluster { what } => cluster_tool(what),
        Command::Certs { what } => certs_tool(what),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn certs_tool(what: CertsCommand) -> anyhow::Result<ExitCode> {
    use odin::security::certs::{Request, make};
    let (common, request) = match &what {
        CertsCommand::Ca { common, name, days } => (common, Request::Ca { name, days: *days }),
        CertsCommand::Node {
            common,
            name,
            hosts,
            days,
        } => (
            common,
            Request::Node {
                name,
                hosts,
                days: *days,
            },
        ),
        CertsCommand::Client { common, name, days } => {
            (common, Request::Client { name, days: *days })
        }
    };
    let written = make(&common.dir, &request, common.force).map_err(|e| anyhow::anyhow!(e))?;
    for path in written {
        println!("wrote {}", path.display());
    }
    Ok(ExitCode::SUCCESS)
}

fn init_logging(level: &str, format: &str, audit_file: Option<&Path>) -> anyhow::Result<()> {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let mut spec = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| level.to_string());
    // openraft warns about a peer that is down on every heartbeat (ten times a
    // second); `/api/v1/status/cluster` and `odin_raft_*` say it once. Its errors
    // still show, and RUST_LOG can name it to see more.
    if !spec.contains("openraft") {
        spec.push_str(",openraft=error");
    }
    // With an audit file, the audit events go there only.
    if audit_file.is_some() {
        spec.push_str(",odin::audit=off");
    }
    let filter = tracing_subscriber::EnvFilter::try_new(&spec)
        .with_context(|| format!("invalid --log.level {level:?}"))?;
    let main = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    let main = match format {
        "json" => main.json().with_filter(filter).boxed(),
        "logfmt" => main.with_filter(filter).boxed(),
        other => bail!("invalid --log.format {other:?}: use logfmt or json"),
    };
    let audit = match audit_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .with_context(|| format!("--audit.log-file {}", path.display()))?;
            let only_audit = tracing_subscriber::filter::Targets::new()
                .with_target(odin::security::auth::AUDIT, tracing::Level::INFO);
            Some(
                tracing_subscriber::fmt::layer()
                    .json()
                    .with_writer(std::sync::Mutex::new(file))
                    .with_filter(only_audit),
            )
        }
        None => None,
    };
    tracing_subscriber::registry().with(main).with(audit).init();
    Ok(())
}

/// Stack of the runtime's threads, its blocking pool's included, where shallow
/// queries are evaluated: stated rather than left to `RUST_MIN_STACK`.
const RUNTIME_STACK_BYTES: usize = 2 << 20;
const _: () = assert!(RUNTIME_STACK_BYTES >= odin::promql::SHALLOW_QUERY_STACK_BYTES);

fn run(flags: RunFlags) -> anyhow::Result<ExitCode> {
    init_logging(
        &flags.log_level,
        &flags.log_format,
        flags.audit_log_file.as_deref(),
    )?;
    let opts = run_options(flags)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("odin-worker")
        .thread_stack_size(RUNTIME_STACK_BYTES)
        .build()
        .context("start async runtime")?;
    let outcome = runtime.block_on(app::run(opts));
    // A blocking task that is still running (a query that has not yet seen its
    // cancellation) must not hold the exit up: the data is closed by now.
    runtime.shutdown_timeout(Duration::from_secs(5));
    outcome?;
    Ok(ExitCode::SUCCESS)
}

/// Merges flags, the config file and the defaults: a flag given wins over the file.
fn run_options(flags: RunFlags) -> anyhow::Result<RunOptions> {
    let config = match &flags.config_file {
        Some(p) => Config::load(p)?,
        None => Config::embedded_default()?,
    };
    let t = &config.storage.tsdb;
    let data_dir = flags
        .tsdb_path
        .clone()
        .or_else(|| t.path.as_ref().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("./data"));
    let retention_ms = match &flags.retention_time {
        Some(s) => parse_duration_ms(s)
            .map_err(|e| anyhow::anyhow!("--storage.tsdb.retention.time: {e}"))?,
        None => t.retention_time.map(|d| d.0).unwrap_or(7 * 86_400_000),
    };
    let logs_retention_ms = flags
        .logs_retention_time
        .as_deref()
        .map(parse_duration_ms)
        .transpose()
        .map_err(|e| anyhow::anyhow!("--logs.retention.time: {e}"))?;
    let retention_bytes = match &flags.retention_size {
        Some(s) => {
            parse_bytes(s).map_err(|e| anyhow::anyhow!("--storage.tsdb.retention.size: {e}"))?
        }
        None => t.retention_size.map(|b| b.0).unwrap_or(0),
    };
    let min_block_ms = parse_duration_ms(&flags.min_block_duration)
        .map_err(|e| anyhow::anyhow!("--storage.tsdb.min-block-duration: {e}"))?;
    if min_block_ms <= 0 {
        bail!("--storage.tsdb.min-block-duration must be greater than 0");
    }
    let max_block_ms = match &flags.max_block_duration {
        Some(s) => parse_duration_ms(s)
            .map_err(|e| anyhow::anyhow!("--storage.tsdb.max-block-duration: {e}"))?,
        // Prometheus: 10% of the retention time, at least the min block duration.
        None if retention_ms > 0 => (retention_ms / 10).max(min_block_ms),
        None => 31 * 86_400_000,
    };
    let web = match &flags.web_config_file {
        Some(path) => odin::security::web_config::WebConfig::load(path)?,
        None => odin::security::web_config::WebConfig::default(),
    };
    let too_far_in_future_ms = parse_duration_ms(&flags.too_far_in_future)
        .map_err(|e| anyhow::anyhow!("--storage.tsdb.too-far-in-future.time-window: {e}"))?;
    let listen: SocketAddr = flags
        .listen_address
        .parse()
        .with_context(|| format!("--web.listen-address {:?}", flags.listen_address))?;
    let grpc_listen = odin::storeapi::parse_grpc_address(&flags.grpc_address)
        .map_err(|e| anyhow::anyhow!("--grpc-address: {e}"))?;
    let web_read_timeout_ms = positive_duration_ms("web.read-timeout", &flags.web_read_timeout)?;
    let web_read_header_timeout_ms =
        positive_duration_ms("web.read-header-timeout", &flags.web_read_header_timeout)?;
    let grpc_max_connection_idle_ms =
        positive_duration_ms("grpc.max-connection-idle", &flags.grpc_max_connection_idle)?;
    let query_timeout_ms = parse_duration_ms(&flags.query_timeout)
        .map_err(|e| anyhow::anyhow!("--query.timeout: {e}"))?;
    if query_timeout_ms <= 0 {
        bail!("--query.timeout must be greater than 0");
    }
    let lookback_delta_ms = parse_duration_ms(&flags.query_lookback_delta)
        .map_err(|e| anyhow::anyhow!("--query.lookback-delta: {e}"))?;
    if lookback_delta_ms <= 0 {
        bail!("--query.lookback-delta must be greater than 0");
    }
    let object_store = match &flags.objstore_config_file {
        Some(p) => Some(odin::shipper::ObjectStoreConfig::load(p)?),
        None => config.storage.object_store.clone(),
    };
    if object_store.is_some() {
        odin::config::check_external_labels_for_shipping(&config.global.external_labels)
            .map_err(|e| anyhow::anyhow!("global.external_labels: {e}"))?;
    }
    let positive_ms = |flag: &str, v: &str| -> anyhow::Result<Duration> {
        let ms = parse_duration_ms(v).map_err(|e| anyhow::anyhow!("--{flag}: {e}"))?;
        if ms <= 0 {
            bail!("--{flag} must be greater than 0");
        }
        Ok(Duration::from_millis(ms as u64))
    };
    let shipper = odin::shipper::ShipperOptions {
        interval: positive_ms("shipper.upload-interval", &flags.shipper_interval)?,
        backoff_min: positive_ms("shipper.retry-backoff-min", &flags.shipper_backoff_min)?,
        backoff_max: positive_ms("shipper.retry-backoff-max", &flags.shipper_backoff_max)?,
    };
    let store = odin::bucketstore::BucketStoreOptions {
        cache_bytes: parse_bytes(&flags.store_cache_size)
            .map_err(|e| anyhow::anyhow!("--store.cache-size: {e}"))?,
        sync_interval: positive_ms("store.sync-interval", &flags.store_sync_interval)?,
        external_labels: config.global.external_labels.clone(),
    };
    let cluster = cluster_options(&flags, config.cluster.as_ref())?;
    let external_url = match &flags.web_external_url {
        Some(url) => url.clone(),
        None => {
            let host = odin::app::hostname();
            let port = listen.port();
            format!("http://{host}:{port}/")
        }
    };
    let alerting = odin::rules::AlertSettings {
        external_labels: std::sync::Arc::new(config.global.external_labels.clone()),
        external_url: std::sync::Arc::from(external_url.trim_end_matches('/')),
        resend_delay_ms: positive_ms("rules.alert.resend-delay", &flags.rules_resend_delay)?
            .as_millis() as i64,
        restore: odin::rules::alerting::RestoreOptions {
            outage_tolerance_ms: positive_ms(
                "rules.alert.for-outage-tolerance",
                &flags.rules_for_outage_tolerance,
            )?
            .as_millis() as i64,
            grace_period_ms: positive_ms(
                "rules.alert.for-grace-period",
                &flags.rules_for_grace_period,
            )?
            .as_millis() as i64,
        },
        sink: None,
    };
    let config_yaml = match &flags.config_file {
        Some(p) => std::fs::read_to_string(p).unwrap_or_default(),
        None => odin::config::EMBEDDED_DEFAULT.to_string(),
    };
    // What /api/v1/status/flags lists: every flag with its effective value.
    let flag_values: std::collections::BTreeMap<String, String> = [
        (
            "config.file",
            flags
                .config_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        ("storage.tsdb.path", data_dir.display().to_string()),
        (
            "storage.tsdb.retention.time",
            format_duration_ms(retention_ms),
        ),
        (
            "storage.tsdb.retention.size",
            flags.retention_size.clone().unwrap_or_else(|| "0B".into()),
        ),
        (
            "logs.retention.time",
            format_duration_ms(logs_retention_ms.unwrap_or(retention_ms)),
        ),
        (
            "logs.ingestion-rate-mb",
            flags.logs_ingestion_rate_mb.to_string(),
        ),
        (
            "logs.ingestion-burst-size-mb",
            flags.logs_ingestion_burst_size_mb.to_string(),
        ),
        (
            "logs.max-streams-per-tenant",
            flags.logs_max_streams_per_tenant.to_string(),
        ),
        ("web.external-url", external_url.clone()),
        (
            "rules.alert.for-outage-tolerance",
            flags.rules_for_outage_tolerance.clone(),
        ),
        (
            "rules.alert.for-grace-period",
            flags.rules_for_grace_period.clone(),
        ),
        ("rules.alert.resend-delay", flags.rules_resend_delay.clone()),
        (
            "alertmanager.notification-queue-capacity",
            flags.notification_queue_capacity.to_string(),
        ),
        (
            "storage.tsdb.min-block-duration",
            format_duration_ms(min_block_ms),
        ),
        (
            "storage.tsdb.max-block-duration",
            format_duration_ms(max_block_ms),
        ),
        (
            "storage.tsdb.too-far-in-future.time-window",
            format_duration_ms(too_far_in_future_ms),
        ),
        (
            "objstore.config-file",
            flags
                .objstore_config_file
                .as_ref()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
        ),
        ("shipper.upload-interval", flags.shipper_interval.clone()),
        ("store.cache-size", flags.store_cache_size.clone()),
        ("store.sync-interval", flags.store_sync_interval.clone()),
        (
            "shipper.retry-backoff-min",
            flags.shipper_backoff_min.clone(),
        ),
        (
            "shipper.retry-backoff-max",
            flags.shipper_backoff_max.clone(),
        ),
        ("web.listen-address", flags.listen_address.clone()),
        ("web.max-connections", flags.web_max_connections.to_string()),
        ("web.read-timeout", format_duration_ms(web_read_timeout_ms)),
        (
            "web.read-header-timeout",
            format_duration_ms(web_read_header_timeout_ms),
        ),
        ("grpc-address", flags.grpc_address.clone()),
        (
            "grpc.max-connections",
            flags.grpc_max_connections.to_string(),
        ),
        (
            "grpc.max-connection-idle",
            format_duration_ms(grpc_max_connection_idle_ms),
        ),
        (
            "store.grpc.series-max-concurrency",
            flags.series_max_concurrency.to_string(),
        ),
        (
            "cluster.node-id",
            cluster
                .as_ref()
                .map(|c| c.node_id.to_string())
                .unwrap_or_default(),
        ),
        (
            "cluster.listen-address",
            cluster
                .as_ref()
                .map(|c| c.listen.to_string())
                .unwrap_or_default(),
        ),
        (
            "cluster.advertise-address",
            cluster
                .as_ref()
                .map(|c| c.advertise.clone())
                .unwrap_or_default(),
        ),
        (
            "cluster.peers",
            cluster
                .as_ref()
                .map(|c| {
                    c.initial_members
                        .iter()
                        .map(|(id, a)| format!("{id}@{a}"))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default(),
        ),
        (
            "cluster.log-entries-kept",
            flags.cluster_log_entries_kept.to_string(),
        ),
        ("web.enable-admin-api", flags.enable_admin_api.to_string()),
        ("web.enable-lifecycle", flags.enable_lifecycle.to_string()),
        ("web.cors.origin", flags.web_cors_origin.clone()),
        ("log.level", flags.log_level.clone()),
        ("log.format", flags.log_format.clone()),
        ("query.max-samples", flags.query_max_samples.to_string()),
        (
            "query.stream-above-samples",
            flags.query_stream_above_samples.to_string(),
        ),
        ("query.timeout", format_duration_ms(query_timeout_ms)),
        (
            "query.max-concurrency",
            flags.query_max_concurrency.to_string(),
        ),
        (
            "query.lookback-delta",
            format_duration_ms(lookback_delta_ms),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (name, mb) in [
        ("--logs.ingestion-rate-mb", flags.logs_ingestion_rate_mb),
        (
            "--logs.ingestion-burst-size-mb",
            flags.logs_ingestion_burst_size_mb,
        ),
    ] {
        if !(mb.is_finite() && mb > 0.0) {
            anyhow::bail!("{name}: must be a positive number of MB, got {mb}");
        }
    }
    let log_limits = odin::logs::push::PushLimits {
        ingestion_rate_mb: flags.logs_ingestion_rate_mb,
        ingestion_burst_size_mb: flags.logs_ingestion_burst_size_mb,
        max_streams_per_tenant: flags.logs_max_streams_per_tenant,
        ..Default::default()
    };
    let cors_origin = odin::api::CorsOrigin::new(&flags.web_cors_origin)
        .map_err(|e| anyhow::anyhow!("--web.cors.origin: {e}"))?;
    Ok(RunOptions {
        cors_origin,
        log_limits,
        alerting,
        notification_queue_capacity: flags.notification_queue_capacity,
        config,
        config_file: flags.config_file,
        data_dir,
        listen,
        grpc_listen,
        storeapi: odin::storeapi::StoreApiOptions {
            series_max_concurrency: flags.series_max_concurrency,
            ..Default::default()
        },
        db: DbOptions {
            retention_ms,
            retention_bytes,
            logs_retention_ms,
            min_block_ms,
            max_block_ms,
            too_far_in_future_ms,
            ..DbOptions::default()
        },
        enable_admin_api: flags.enable_admin_api,
        enable_lifecycle: flags.enable_lifecycle,
        remote_write_receiver: flags.enable_remote_write_receiver,
        web,
        web_config_file: flags.web_config_file.clone(),
        serve: odin::api::ServeOptions {
            max_connections: flags.web_max_connections.max(1),
            read_timeout: Duration::from_millis(web_read_timeout_ms as u64),
            read_header_timeout: Duration::from_millis(web_read_header_timeout_ms as u64),
            ..odin::api::ServeOptions::default()
        },
        grpc_max_connections: flags.grpc_max_connections.max(1),
        grpc_max_connection_idle: Duration::from_millis(grpc_max_connection_idle_ms as u64),
        maintenance_interval: Duration::from_secs(60),
        engine: EngineOptions {
            max_samples: flags.query_max_samples,
            stream_above_samples: flags.query_stream_above_samples,
            timeout: Duration::from_millis(query_timeout_ms as u64),
            lookback_delta_ms,
            ..EngineOptions::default()
        },
        query_max_concurrency: flags.query_max_concurrency.max(1),
        flag_values,
        config_yaml,
        object_store,
        shipper,
        store,
        cluster,
    })
}

/// The cluster settings from the `--cluster.*` flags over the config's `cluster:`
/// section; `None` (a single node) when neither names a node id.
fn cluster_options(
    flags: &RunFlags,
    file: Option<&odin::config::ClusterConfig>,
) -> anyhow::Result<Option<odin::replication::node::ClusterOptions>> {
    let from_file = |f: fn(&odin::config::ClusterConfig) -> Option<String>| file.and_then(f);
    let node_id = flags.cluster_node_id.or(file.and_then(|c| c.node_id));
    let listen = flags
        .cluster_listen_address
        .clone()
        .or_else(|| from_file(|c| c.listen_address.clone()));
    let advertise = flags
        .cluster_advertise_address
        .clone()
        .or_else(|| from_file(|c| c.advertise_address.clone()));
    let peers = flags.cluster_peers.clone().or_else(|| {
        file.filter(|c| !c.peers.is_empty())
            .map(|c| c.peers.join(","))
    });
    let Some(node_id) = node_id else {
        if listen.is_some() || advertise.is_some() || peers.is_some() {
            bail!("cluster: the node id (--cluster.node-id) is missing");
        }
        return Ok(None);
    };
    let listen =
        listen.context("cluster: the listen address (--cluster.listen-address) is missing")?;
    let listen: SocketAddr = listen
        .parse()
        .with_context(|| format!("--cluster.listen-address {listen:?}"))?;
    if let Some(a) = &advertise {
        odin::replication::node::check_address(a)
            .map_err(|e| anyhow::anyhow!("--cluster.advertise-address: {e}"))?;
    }
    let peers = peers.context("cluster: the peers (--cluster.peers) are missing")?;
    let peers = odin::replication::node::parse_peers(&peers)
        .map_err(|e| anyhow::anyhow!("--cluster.peers: {e}"))?;
    let mut opts = odin::replication::node::ClusterOptions::new(node_id, listen, advertise, peers)
        .map_err(|e| anyhow::anyhow!("cluster: {e}"))?;
    opts.log_entries_kept = flags.cluster_log_entries_kept;
    Ok(Some(opts))
}

fn check_config(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    if files.is_empty() {
        bail!("no configuration file given");
    }
    let mut failed = false;
    for f in files {
        println!("Checking {}", f.display());
        match Config::load(f) {
            Ok(c) => {
                for w in c.warnings() {
                    println!("  WARNING: {w}");
                }
                let base = f.parent().unwrap_or(std::path::Path::new("."));
                let mut rule_files = Vec::new();
                for pattern in &c.rule_files {
                    let full = base.join(pattern);
                    match odin::scrape::discovery::glob(&full) {
                        Ok(found) => rule_files.extend(found),
                        Err(e) => {
                            println!("  FAILED: rule_files {pattern:?}: {e}");
                            failed = true;
                        }
                    }
                }
                if !rule_files.is_empty() {
                    println!("  SUCCESS: {} rule files found", rule_files.len());
                }
                println!("  SUCCESS: {} is valid", f.display());
                println!();
                failed |= !check_rule_files(&rule_files);
            }
            Err(e) => {
                println!("  FAILED: {e}");
                failed = true;
            }
        }
    }
    Ok(if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

fn test_rules(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    if files.is_empty() {
        bail!("no test file given");
    }
    let mut ok = true;
    for f in files {
        match odin::rules::unittest::run_file(f) {
            Ok(passed) => ok &= passed,
            Err(e) => {
                println!("  FAILED:\n{e}\n");
                ok = false;
            }
        }
    }
    Ok(if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn check_rules(files: &[PathBuf]) -> anyhow::Result<ExitCode> {
    if files.is_empty() {
        bail!("no rule file given");
    }
    Ok(if check_rule_files(files) {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Checks each rule file as promtool does, printing what it finds; true when all
/// are valid.
fn check_rule_files(files: &[PathBuf]) -> bool {
    let mut ok = true;
    for f in files {
        println!("Checking {}", f.display());
        let name = f.display().to_string();
        let parsed = std::fs::read_to_string(f)
            .map_err(|e| vec![format!("{name}: {e}")])
            .and_then(|text| odin::rules::file::parse(&text, &name));
        match parsed {
            Ok(file) => {
                let rules = file.groups.iter().map(|g| g.rules.len()).sum::<usize>();
                println!("  SUCCESS: {rules} rules found");
            }
            Err(errors) => {
                println!("  FAILED:");
                for e in errors {
                    println!("{e}");
                }
                ok = false;
            }
        }
        println!();
    }
    ok
}

fn tsdb_check(path: &std::path::Path) -> anyhow::Result<ExitCode> {
    let report = odin::tsdb::check::check(path)?;
    for line in &report.info {
        println!("{line}");
    }
    for p in &report.problems {
        println!("PROBLEM: {p}");
    }
    if report.problems.is_empty() {
        println!("no problems found");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("{} problems found", report.problems.len());
        Ok(ExitCode::FAILURE)
    }
}

fn dump(
    path: &std::path::Path,
    min: Option<&str>,
    max: Option<&str>,
    selector: &str,
) -> anyhow::Result<ExitCode> {
    let parse = |s: Option<&str>, default: i64| -> anyhow::Result<i64> {
        match s {
            None => Ok(default),
            Some(s) => parse_time_ms(s).map_err(|e| anyhow::anyhow!(e)),
        }
    };
    let (min_t, max_t) = (parse(min, i64::MIN)?, parse(max, i64::MAX)?);
    let matchers: Vec<Matcher> = odin::api::parse_selector_matchers(selector)
        .map_err(|e| anyhow::anyhow!("--match: {e}"))?;
    // Opening replays the WAL (and cuts off a torn tail, as `odin run` would).
    let db = Db::open(
        path,
        DbOptions::default(),
        TsdbMetrics::default(),
        odin::log::wal::WalLog::in_data_dir(path),
    )?;
    let q = db.querier(min_t, max_t)?;
    let hints = SelectHints {
        start_ms: min_t,
        end_ms: max_t,
        series_only: false,
        sorted: true,
    };
    let set = q.select(&hints, &matchers)?;
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    for series in set {
        let series = series?;
        for s in &series.samples {
            writeln!(out, "{} {} {}", series.labels, format_go_g(s.v), s.t)?;
        }
    }
    out.flush()?;
    db.close()?;
    Ok(ExitCode::SUCCESS)
}

fn bucket_store(
    flags: &BucketFlags,
) -> anyhow::Result<std::sync::Arc<dyn object_store::ObjectStore>> {
    let cfg = match (&flags.objstore_config_file, &flags.config_file) {
        (Some(p), _) => odin::shipper::ObjectStoreConfig::load(p)?,
        (None, Some(p)) => Config::load(p)?
            .storage
            .object_store
            .with_context(|| format!("{}: no storage.object_store", p.display()))?,
        (None, None) => bail!("give --objstore.config-file or --config.file"),
    };
    Ok(cfg.build(odin::shipper::ClientTuning::default())?)
}

fn rfc3339(ms: i64) -> String {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| ms.to_string())
}

fn bucket_tool(cmd: BucketCommand) -> anyhow::Result<ExitCode> {
    use odin::shipper::bucket;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start async runtime")?;
    runtime.block_on(async move {
        match cmd {
            BucketCommand::Ls { bucket, logs: true } => {
                let store = bucket_store(&bucket)?;
                let segments = bucket::list_log_segments(&store).await?;
                println!("SEGMENT\tFROM\tUNTIL\tSTREAMS\tLINES\tLABELS\tSIZE_BYTES");
                let ms = |ns: i64| rfc3339(ns.div_euclid(1_000_000));
                for s in &segments {
                    match &s.meta {
                        Some(m) => {
                            let labels: Vec<String> = m
                                .external_labels
                                .iter()
                                .map(|(k, v)| format!("{k}={v:?}"))
                                .collect();
                            println!(
                                "{}\t{}\t{}\t{}\t{}\t{{{}}}\t{}",
                                s.name,
                                ms(m.min_time),
                                ms(m.max_time),
                                m.streams,
                                m.lines,
                                labels.join(","),
                                s.size_bytes
                            );
                        }
                        None => println!(
                            "{}\t-\t-\t-\t-\t-\t{}\t{}",
                            s.name,
                            s.size_bytes,
                            s.meta_error.as_deref().unwrap_or("")
                        ),
                    }
                }
                eprintln!("{} log segments", segments.len());
                Ok(ExitCode::SUCCESS)
            }
            BucketCommand::Ls {
                bucket,
                logs: false,
            } => {
                let store = bucket_store(&bucket)?;
                let blocks = bucket::list_blocks(&store).await?;
                println!("ULID\tFROM\tUNTIL\tLABELS\tSIZE_BYTES\tLEVEL\tSOURCE");
                for b in &blocks {
                    match &b.meta {
                        Some(m) => {
                            let t = b.thanos().unwrap_or_default();
                            let labels: Vec<String> =
                                t.labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
                            println!(
                                "{}\t{}\t{}\t{{{}}}\t{}\t{}\t{}",
                                b.ulid,
                                rfc3339(m.min_time),
                                rfc3339(m.max_time),
                                labels.join(","),
                                b.size_bytes(),
                                m.compaction.level,
                                t.source
                            );
                        }
                        None => println!(
                            "{}\t-\t-\t-\t{}\t-\t{}",
                            b.ulid,
                            b.size_bytes(),
                            b.meta_error
                                .as_deref()
                                .unwrap_or("incomplete: no meta.json")
                        ),
                    }
                }
                eprintln!("{} blocks", blocks.len());
                Ok(ExitCode::SUCCESS)
            }
            BucketCommand::Inspect { bucket, id } => {
                let store = bucket_store(&bucket)?;
                let b = bucket::read_block(&store, &id).await?;
                if b.objects.is_empty() {
                    bail!("no block {id} in the bucket");
                }
                match &b.meta {
                    Some(m) => println!(
                        "{}",
                        String::from_utf8_lossy(&odin::tsdb::block::meta::encode_meta(m)?)
                    ),
                    None => println!(
                        "meta.json: {}",
                        b.meta_error.as_deref().unwrap_or("missing")
                    ),
                }
                println!("files:");
                for (rel, size) in &b.objects {
                    println!("  {rel}\t{size}");
                }
                Ok(ExitCode::SUCCESS)
            }
            BucketCommand::Verify { bucket, id } => {
                let store = bucket_store(&bucket)?;
                let blocks = match id {
                    Some(id) => vec![bucket::read_block(&store, &id).await?],
                    None => bucket::list_blocks(&store).await?,
                };
                let scratch = tempfile_dir()?;
                let mut bad = 0;
                for b in &blocks {
                    let problems = bucket::verify_block(&store, b, &scratch).await?;
                    if problems.is_empty() {
                        println!("{}\tOK", b.ulid);
                    } else {
                        bad += 1;
                        for p in problems {
                            println!("{}\tPROBLEM\t{p}", b.ulid);
                        }
                    }
                }
                let _ = std::fs::remove_dir_all(&scratch);
                println!("{} blocks checked, {bad} with problems", blocks.len());
                Ok(if bad > 0 {
                    ExitCode::FAILURE
                } else {
                    ExitCode::SUCCESS
                })
            }
        }
    })
}

/// A fresh scratch directory for downloads (removed by the caller).
fn tempfile_dir() -> anyhow::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "odin-bucket-verify-{}-{:x}",
        std::process::id(),
        rand::random::<u64>()
    ));
    std::fs::create_dir_all(&dir).with_context(|| format!("create {}", dir.display()))?;
    Ok(dir)
}

/// A duration flag that must be greater than zero, in milliseconds.
fn positive_duration_ms(flag: &str, v: &str) -> anyhow::Result<i64> {
    let ms = parse_duration_ms(v).map_err(|e| anyhow::anyhow!("--{flag}: {e}"))?;
    if ms <= 0 {
        bail!("--{flag} must be greater than 0");
    }
    Ok(ms)
}

/// `odin cluster …`: one call to a node's HTTP API; prints the cluster status it
/// answers as indented JSON, or its error.
fn cluster_tool(what: ClusterCommand) -> anyhow::Result<ExitCode> {
    let (request, url) = match what {
        ClusterCommand::Status { url } => (
            None,
            format!("{}/api/v1/status/cluster", url.trim_end_matches('/')),
        ),
        ClusterCommand::Add { url, id, address } => (
            Some(vec![("id", id.to_string()), ("address", address)]),
            format!("{}/api/v1/admin/cluster/add", url.trim_end_matches('/')),
        ),
        ClusterCommand::Remove { url, id } => (
            Some(vec![("id", id.to_string())]),
            format!("{}/api/v1/admin/cluster/remove", url.trim_end_matches('/')),
        ),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start async runtime")?;
    let (status, body) = runtime
        .block_on(async {
            // Adding a member waits for it to catch up with the log.
            let client = reqwest::Client::builder()
                .timeout(Duration::from_secs(90))
                .build()?;
            let response = match request {
                None => client.get(&url).send().await?,
                Some(form) => client.post(&url).form(&form).send().await?,
            };
            let status = response.status();
            let body = response.text().await?;
            Ok::<_, reqwest::Error>((status, body))
        })
        .with_context(|| format!("call {url}"))?;
    let parsed: Option<serde_json::Value> = serde_json::from_str(&body).ok();
    match parsed {
        Some(v) if v["status"] == "success" => {
            println!("{}", serde_json::to_string_pretty(&v["data"])?);
            Ok(ExitCode::SUCCESS)
        }
        Some(v) => bail!(
            "{url} answered {status}: {}",
            v["error"].as_str().unwrap_or(&body)
        ),
        None => bail!("{url} answered {status}: {}", body.trim()),
    }
}
