//! Wiring and lifecycle: builds every component from the flags and the config file,
//! runs them, and shuts them down together on SIGTERM/SIGINT or `/-/quit`.
//!
//! This is the only module that names the concrete TSDB type.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

mod sources;
pub use sources::hostname;

use crate::api::{
    self, ApiOptions, ApiShared, Backends, HttpMetrics, QueryMetrics, ReloadRequest, StatusInfo,
};
use crate::bucketstore::{BucketStore, BucketStoreOptions, LongTermQueryable};
use crate::collect::process::ProcessCollector;
use crate::config::Config;
use crate::promql::{Engine, EngineOptions};
use crate::remote::WriteLimits;
use crate::replication::commit_log::RaftCommitLog;
use crate::replication::control::ClusterControl;
use crate::replication::network::PeerNetwork;
use crate::replication::node::ClusterLog;
use crate::scrape::ScrapeManager;
use crate::shipper::{ClientTuning, Shipper, ShipperMetrics, ShipperOptions};
use crate::storeapi::{StoreApi, StoreApiMetrics, StoreApiOptions, StoreBackends};
use crate::supervise::{Supervisor, TaskHealth, TaskMetrics, run_guarded};
use crate::tsdb::{Db, DbMachine, DbOptions, TsdbMetrics};
use sources::Sources;

/// Everything `odin run` needs, after flags and config file are merged.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config: Config,
    pub config_file: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    /// Where the Thanos StoreAPI (gRPC) listens; `None` turns it off.
    pub grpc_listen: Option<SocketAddr>,
    pub storeapi: StoreApiOptions,
    pub db: DbOptions,
    pub enable_admin_api: bool,
    pub enable_lifecycle: bool,
    /// `--web.cors.origin`.
    pub cors_origin: api::CorsOrigin,
    /// Whether `/api/v1/write` takes samples (`--web.enable-remote-write-receiver`).
    pub remote_write_receiver: bool,
    /// `--web.config.file`: TLS and users; the default is plain HTTP for anyone.
    pub web: crate::security::web_config::WebConfig,
    /// Where `web` came from, to read it again on reload.
    pub web_config_file: Option<PathBuf>,
    /// The HTTP listener's connection limit and timeouts.
    pub serve: api::ServeOptions,
    /// `--grpc.max-connections`: the StoreAPI listener's connection limit.
    pub grpc_max_connections: usize,
    /// `--grpc.max-connection-idle`: a StoreAPI connection idle this long is closed.
    pub grpc_max_connection_idle: Duration,
    /// How often maintenance (head cut, compaction, retention) runs when nothing
    /// triggers it earlier.
    pub maintenance_interval: Duration,
    pub engine: EngineOptions,
    pub query_max_concurrency: usize,
    /// Flag names and effective values, for `/api/v1/status/flags`.
    pub flag_values: BTreeMap<String, String>,
    /// The configuration text, for `/api/v1/status/config`.
    pub config_yaml: String,
    /// Where finished blocks ship (`--objstore.config-file` or
    /// `storage.object_store`); `None`: nothing ships.
    pub object_store: Option<crate::shipper::ObjectStoreConfig>,
    pub shipper: ShipperOptions,
    /// How blocks that live only in the bucket are read (when a bucket is configured).
    pub store: BucketStoreOptions,
    /// This node's part in a Raft cluster; `None`: a single node on its WAL.
    pub cluster: Option<crate::replication::node::ClusterOptions>,
    /// Loki's per-tenant push limits (`--logs.ingestion-rate-mb`, …).
    pub log_limits: crate::logs::push::PushLimits,
    /// External labels and URL, resend delay and `for` restoring for alerting rules.
    pub alerting: crate::rules::AlertSettings,
    /// `--alertmanager.notification-queue-capacity`.
    pub notification_queue_capacity: usize,
}

/// How often the WAL writer is checked for an unexpected stop.
const WRITE_PATH_CHECK_INTERVAL: Duration = Duration::from_secs(1);

/// How long shutdown waits for gRPC calls in flight.
const GRPC_DRAIN_TIMEOUT: Duration = Duration::from_secs(10);

/// How long shutdown waits for the cluster port's calls in flight (peers keep
/// streams open; a write in flight is answered by the leader either way).
const CLUSTER_DRAIN_TIMEOUT: Duration = Duration::from_secs(1);

/// Runs the appliance until a signal or `/-/quit`; returns once everything has shut
/// down cleanly.
pub async fn run(opts: RunOptions) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let tsdb_metrics = TsdbMetrics::new(&mut registry);
    let http_metrics = HttpMetrics::new(&mut registry);
    let query_metrics = QueryMetrics::new(&mut registry, opts.query_max_concurrency);
    let task_metrics = TaskMetrics::new(&mut registry);
    let mut scrape_metrics = crate::scrape::metrics::ScrapeMetrics::new(&mut registry);
    scrape_metrics.tasks = task_metrics.clone();
    let storeapi_metrics = StoreApiMetrics::new(&mut registry);
    let shipper_metrics = opts
        .object_store
        .as_ref()
        .map(|_| ShipperMetrics::new(&mut registry));
    let raft_metrics = opts
        .cluster
        .as_ref()
        .map(|_| crate::replication::metrics::RaftMetrics::new(&mut registry));
    let rule_metrics = crate::rules::RuleMetrics::new(&mut registry);
    let notifier = crate::rules::notifier::Notifier::new(
        opts.notification_queue_capacity,
        &opts.alerting.external_url,
        crate::rules::notifier::NotifierMetrics::new(&mut registry),
    );
    // Alertmanagers that cannot be set up (a missing certificate) stop the start.
    notifier
        .apply(&opts.config.alerting, &opts.config.global.external_labels)
        .map_err(|e| anyhow::anyhow!("alerting: {e}"))?;
    registry.register_collector(Box::new(ProcessCollector));
    let registry = Arc::new(registry);
    for w in opts.config.warnings() {
        tracing::warn!("{w}");
    }
    // Rule files that do not load stop the start, as in Prometheus.
    let rule_files = load_rules(&opts.config, opts.config_file.as_deref())
        .map_err(|e| anyhow::anyhow!("rule_files: {e}"))?;

    let shutdown = CancellationToken::new();
    let task_health = Arc::new(TaskHealth::default());
    let supervisor = Supervisor::new(task_metrics, task_health.clone(), shutdown.clone());
    let (reload_tx, reload_rx) = tokio::sync::mpsc::channel::<ReloadRequest>(4);
    let backends: Arc<OnceLock<Backends>> = Arc::new(OnceLock::new());
    let cluster_control: Arc<OnceLock<Arc<dyn ClusterControl>>> = Arc::new(OnceLock::new());
    let write_limits = WriteLimits::default();
    let auth = crate::security::auth::Authenticator::new(&opts.web);
    let web_auth = auth.clone();
    {
        let (auth, stop) = (auth.clone(), shutdown.clone());
        supervisor.spawn("oidc-keys", move || {
            let (auth, stop) = (auth.clone(), stop.clone());
            async move {
                auth.refresh_oidc_keys(stop).await;
                Ok(())
            }
        });
    }
    let http_tls = match &opts.web.tls_server_config {
        Some(tls) => {
            let http2 = opts.web.http_server_config.http2.unwrap_or(true);
            let tls = crate::security::tls::ServerTls::new(tls.clone(), http2)
                .map_err(|e| anyhow::anyhow!("--web.config.file: {e}"))?;
            tls.spawn_reloader(shutdown.clone());
            Some(tls)
        }
        None => None,
    };
    if !auth.required() && !opts.listen.ip().is_loopback() {
        tracing::warn!(
            address = %opts.listen,
            "listening beyond loopback without authentication: anyone who reaches this port can read and write every series (set basic_auth_users in --web.config.file)"
        );
    }
    let response_headers = opts
        .web
        .http_server_config
        .headers
        .iter()
        .map(|(name, value)| {
            Ok((
                axum::http::HeaderName::try_from(name.as_str())?,
                axum::http::HeaderValue::try_from(value.as_str())?,
            ))
        })
        .collect::<Result<Vec<_>, axum::http::Error>>()
        .map_err(|e| anyhow::anyhow!("--web.config.file: http_server_config.headers: {e}"))?;
    let state = ApiShared {
        backends: backends.clone(),
        registry: registry.clone(),
        options: ApiOptions {
            enable_admin_api: opts.enable_admin_api,
            enable_lifecycle: opts.enable_lifecycle,
            cors_origin: opts.cors_origin.clone(),
            remote_write_receiver: opts.remote_write_receiver,
            write_limits,
            external_labels: opts.config.global.external_labels.clone(),
            clustered: opts.cluster.is_some(),
            log_limits: opts.log_limits.clone(),
        },
        http_metrics,
        shutdown: shutdown.clone(),
        write_permits: Arc::new(tokio::sync::Semaphore::new(write_limits.max_concurrent)),
        engine: Arc::new(Engine::new(opts.engine.clone())),
        query_permits: Arc::new(tokio::sync::Semaphore::new(opts.query_max_concurrency)),
        query_metrics,
        status: Arc::new(StatusInfo {
            start_time_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            config_yaml: parking_lot::RwLock::new(shown_config(&opts.config_yaml)),
            storage_retention: retention_text(&opts.db),
            flags: opts.flag_values.clone(),
        }),
        reload: Some(reload_tx),
        tasks: task_health,
        cluster: cluster_control.clone(),
        auth,
        response_headers,
    };
    let status = state.status.clone();

    // Serve health checks while the WAL replays; readiness follows the replay.
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("listen on {}", opts.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, "http server listening");
    // Without its HTTP server the appliance cannot go on: a failure stops it.
    let server_shutdown = shutdown.clone();
    let serve_opts = opts.serve;
    let http_tls_for_reload = http_tls.clone();
    // The StoreAPI port takes the web config's TLS and credentials too.
    let grpc_security = crate::storeapi::GrpcSecurity {
        tls: http_tls.clone(),
        auth: state.auth.clone(),
        listen: crate::security::listen::ListenOptions {
            max_connections: opts.grpc_max_connections,
            first_bytes_timeout: opts.serve.read_header_timeout,
            idle_timeout: Some(opts.grpc_max_connection_idle),
        },
    };
    let mut serving = Some((listener, api::router(state)));
    let server = supervisor.spawn_critical("http_server", move || {
        let serving = serving.take();
        let stop = server_shutdown.clone();
        let tls = http_tls.clone();
        async move {
            let (listener, router) = serving.ok_or("the listener is gone")?;
            api::serve(listener, router, serve_opts, tls, stop)
                .await
                .map_err(|e| e.to_string())
        }
    });

    // The StoreAPI starts with the HTTP server and answers `Unavailable` until
    // storage is ready.
    let store_backends: Arc<OnceLock<StoreBackends>> = Arc::new(OnceLock::new());
    let grpc = match opts.grpc_listen {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("listen on {addr} (--grpc-address)"))?;
            tracing::info!(address = %listener.local_addr()?, "grpc server listening");
            let api = StoreApi::new(
                store_backends.clone(),
                opts.config.global.external_labels.clone(),
                opts.storeapi.clone(),
                storeapi_metrics.clone(),
                shutdown.clone(),
            );
            let grpc_shutdown = shutdown.clone();
            let mut serving = Some((listener, api));
            Some(supervisor.spawn_critical("grpc_server", move || {
                let serving = serving.take();
                let stop = grpc_shutdown.clone();
                let security = grpc_security.clone();
                async move {
                    let (listener, api) = serving.ok_or("the listener is gone")?;
                    crate::storeapi::serve(listener, api, security, stop)
                        .await
                        .map_err(|e| e.to_string())
                }
            }))
        }
        None => None,
    };

    spawn_signal_handler(shutdown.clone());

    // The shipper's state is loaded before the database opens: compaction and
    // retention ask it which blocks have shipped from the first round on.
    let mut db_opts = opts.db.clone();
    db_opts.external_labels = opts.config.global.external_labels.clone();
    let mut bucket: Option<Arc<BucketStore>> = None;
    let shipper = match (&opts.object_store, shipper_metrics) {
        (Some(cfg), Some(metrics)) => {
            let labels = opts.config.global.external_labels.clone();
            crate::config::check_external_labels_for_shipping(&labels)
                .map_err(|e| anyhow::anyhow!("global.external_labels: {e}"))?;
            let store = cfg
                .build(ClientTuning::default())
                .context("object storage")?;
            bucket = Some(BucketStore::new(
                store.clone(),
                tokio::runtime::Handle::current(),
                opts.store.clone(),
            ));
            let shipper = Shipper::new(&opts.data_dir, store, labels, opts.shipper, metrics)
                .context("start shipper")?;
            tracing::info!(store = %cfg.describe(), "shipping blocks to object storage");
            db_opts.shipping = Some(shipper.hook());
            Some(shipper)
        }
        _ => None,
    };
    let dir = opts.data_dir.clone();
    // One durable record: a single node's WAL, or in a cluster the Raft log, never
    // both.
    let raft_log: Arc<OnceLock<RaftCommitLog<DbMachine>>> = Arc::new(OnceLock::new());
    // Cluster peers talk mutual TLS whenever TLS is configured: the server side
    // (rotated with its files) and this node's client identity.
    let cluster_tls = match (&opts.cluster, opts.web.cluster_tls()) {
        (None, _) => None,
        (Some(_), Err(e)) => anyhow::bail!("--web.config.file: {e}"),
        (Some(_), Ok(None)) => None,
        (Some(_), Ok(Some(c))) => {
            let server = crate::security::tls::cluster_server(&c)
                .map_err(|e| anyhow::anyhow!("cluster TLS: {e}"))?;
            server.spawn_reloader(shutdown.clone());
            let client = crate::security::tls::PeerClientTls::load(&c)
                .map_err(|e| anyhow::anyhow!("cluster TLS: {e}"))?;
            client.spawn_reloader(shutdown.clone());
            tracing::info!(cert_file = %c.cert_file.display(), "cluster peers talk mutual TLS");
            Some((server, client))
        }
    };
    let opening = match &opts.cluster {
        None => {
            let log = crate::log::wal::WalLog::in_data_dir(&dir);
            tokio::task::spawn_blocking(move || Db::open(&dir, db_opts, tsdb_metrics, log))
        }
        Some(cluster) => {
            tracing::info!(
                node_id = cluster.node_id,
                listen = %cluster.listen,
                advertise = %cluster.advertise,
                "running as a cluster node"
            );
            let counters = raft_metrics
                .as_ref()
                .map(|m| m.counters.clone())
                .unwrap_or_default();
            let peers = match &cluster_tls {
                Some((_, client)) => PeerNetwork::with_tls(client.clone()),
                None => PeerNetwork::default(),
            };
            let log =
                ClusterLog::in_data_dir(&dir, cluster.clone(), peers, counters, raft_log.clone());
            tokio::task::spawn_blocking(move || Db::open(&dir, db_opts, tsdb_metrics, log))
        }
    };
    let db = opening
        .await
        .context("open tsdb task")?
        .with_context(|| format!("open tsdb in {}", opts.data_dir.display()))?;
    tracing::info!(data_dir = %opts.data_dir.display(), "storage ready");
    let cluster_server = match (&opts.cluster, raft_log.get()) {
        (Some(cluster), Some(log)) => {
            let listener = tokio::net::TcpListener::bind(cluster.listen)
                .await
                .with_context(|| {
                    format!("listen on {} (--cluster.listen-address)", cluster.listen)
                })?;
            tracing::info!(address = %listener.local_addr()?, "cluster server listening");
            let _ = cluster_control.set(Arc::new(log.clone()));
            if let Some(m) = &raft_metrics {
                m.watch(log, shutdown.clone());
            }
            let stop = shutdown.clone();
            let mut serving = Some((listener, log.clone()));
            let server_tls = cluster_tls.as_ref().map(|(server, _)| server.clone());
            Some(supervisor.spawn_critical("cluster_server", move || {
                let serving = serving.take();
                let stop = stop.clone();
                let tls = server_tls.clone();
                async move {
                    let (listener, log) = serving.ok_or("the listener is gone")?;
                    crate::replication::network::serve(listener, log, tls, stop)
                        .await
                        .map_err(|e| e.to_string())
                }
            }))
        }
        (Some(_), None) => anyhow::bail!("the cluster's log did not start"),
        _ => None,
    };

    // Scraping starts once storage is ready; collectors are scrape sources.
    let manager = Arc::new(ScrapeManager::new(Arc::new(db.clone()), scrape_metrics));
    if cluster_control.get().is_some() {
        // Until the leadership watch says otherwise, another node is the leader.
        manager.set_scrapes_targets(false).await;
        if let Some(s) = &shipper {
            s.set_uploads(false);
        }
    }
    // In a cluster every node's own metrics are committed to the one log: the
    // instance names the node as its peers know it.
    let self_instance = match &opts.cluster {
        Some(c) => {
            let host = c
                .advertise
                .rsplit_once(':')
                .map_or(&*c.advertise, |(h, _)| h);
            format!("{host}:{}", local.port())
        }
        None => format!("localhost:{}", local.port()),
    };
    let origin = match &opts.cluster {
        Some(c) => format!("node-{}", c.node_id),
        None => "local".to_string(),
    };
    let mut sources = Sources::new(registry.clone(), self_instance, &origin);
    manager
        .apply(
            sources.jobs(&opts.config),
            config_dir(opts.config_file.as_deref()),
        )
        .await;
    // In a cluster the leader scrapes the configured targets; every node runs its
    // own collectors. The watch hands them over (by reapplying the jobs the manager
    // holds), so it starts once the manager holds the configured ones.
    // Rules read and write this node's storage; in a cluster only the leader
    // evaluates (the watch below hands it over), so nothing is recorded twice.
    let rules = crate::rules::RuleManager::new(
        crate::rules::Evaluator {
            engine: Arc::new(Engine::new(opts.engine.clone())),
            queryable: Arc::new(db.clone()),
            appendable: Arc::new(db.clone()),
            alerting: crate::rules::AlertSettings {
                sink: Some(notifier.clone()),
                ..opts.alerting.clone()
            },
        },
        rule_metrics,
        shutdown.clone(),
    );
    rules.set_active(opts.cluster.is_none());
    rules.update(rule_files, opts.config.global.evaluation_interval.0);
    {
        let (notifier, stop) = (notifier.clone(), shutdown.clone());
        supervisor.spawn("notifier", move || notifier.clone().run(stop.clone()));
    }
    let leadership = cluster_control.get().map(|control| {
        spawn_leadership_watch(
            control.clone(),
            manager.clone(),
            shipper.clone(),
            rules.clone(),
            shutdown.clone(),
        )
    });
    // With a bucket, queries (PromQL, series and labels, remote read) read the
    // blocks that live only there too; the StoreAPI stays local (see
    // `bucketstore`'s docs: Thanos reads the bucket through its own store gateway).
    // Log segments likewise: those that live only in the bucket stay queryable.
    let logs: Arc<dyn crate::logs::LogStorage> = match &bucket {
        Some(b) => {
            let cached = b
                .logs(&opts.data_dir.join("bucket-cache").join("logs"))
                .context("bucket log segment cache")?;
            Arc::new(crate::bucketstore::logs::LongTermLogs::new(
                Arc::new(db.clone()),
                cached,
            ))
        }
        None => Arc::new(db.clone()),
    };
    let bucket_sync = bucket.as_ref().map(|b| b.spawn(&supervisor));
    let (queryable, chunks): (
        Arc<dyn crate::storage::Queryable>,
        Arc<dyn crate::storage::ChunkQueryable>,
    ) = match &bucket {
        Some(b) => {
            let q = Arc::new(LongTermQueryable::new(
                Arc::new(db.clone()),
                Arc::new(db.clone()),
                b.clone(),
            ));
            (q.clone(), q)
        }
        None => (Arc::new(db.clone()), Arc::new(db.clone())),
    };
    let _ = backends.set(Backends {
        appendable: Arc::new(db.clone()),
        queryable,
        admin: Arc::new(db.clone()),
        logs,
        chunks,
        scrape: Some(manager.clone()),
        rules: Some(rules.clone()),
    });
    let _ = store_backends.set(StoreBackends {
        queryable: Arc::new(db.clone()),
        chunks: Arc::new(db.clone()),
    });
    // The log sources: each round's lines go through the commit seam with the
    // positions after them; a new source resumes where the store says.
    let (log_sources, log_db, prefix) = (sources.logs.clone(), db.clone(), format!("{origin}/"));
    let sources_stop = shutdown.clone();
    let log_sources_task = supervisor.spawn("log_sources", move || {
        let positions_db = log_db.clone();
        let prefix = prefix.clone();
        crate::logs::sources::run(
            Arc::new(log_db.clone()),
            log_sources.clone(),
            move || crate::logs::LogStorage::positions(&positions_db, &prefix),
            sources_stop.clone(),
        )
    });
    let journald_task = opts.config.collectors.journald.clone().map(|cfg| {
        let (db, stop, source) = (db.clone(), shutdown.clone(), format!("{origin}/journald"));
        supervisor.spawn("journald", move || {
            crate::logs::sources::journald::run(
                Arc::new(db.clone()),
                cfg.clone(),
                source.clone(),
                stop.clone(),
            )
        })
    });
    let reloading = Arc::new(tokio::sync::Mutex::new((sources, reload_rx)));
    let config_file = opts.config_file.clone();
    let (reload_manager, reload_alerting, reload_shutdown) = (
        manager.clone(),
        RulesAndNotifier {
            rules: rules.clone(),
            notifier: notifier.clone(),
        },
        shutdown.clone(),
    );
    let web_tls: Vec<_> = http_tls_for_reload
        .into_iter()
        .chain(cluster_tls.as_ref().map(|(server, _)| server.clone()))
        .collect();
    let web_reload = opts.web_config_file.clone().map(|path| WebReload {
        path,
        auth: web_auth.clone(),
        tls: web_tls,
        peer_client: cluster_tls.as_ref().map(|(_, client)| client.clone()),
    });
    let reloader = supervisor.spawn("reload", move || {
        reload_loop(
            config_file.clone(),
            web_reload.clone(),
            reloading.clone(),
            reload_manager.clone(),
            reload_alerting.clone(),
            status.clone(),
            reload_shutdown.clone(),
        )
    });

    // Without its WAL writer nothing can be stored: stop, so that a supervisor
    // (systemd, Kubernetes) restarts the process, and replay recovers the data.
    let (watched, watch_stop) = (db.clone(), shutdown.clone());
    let write_path = supervisor.spawn_critical("wal_writer", move || {
        let (db, stop) = (watched.clone(), watch_stop.clone());
        async move {
            loop {
                if let Some(failure) = db.write_path_failure() {
                    return Err(failure);
                }
                tokio::select! {
                    _ = stop.cancelled() => return Ok(()),
                    _ = tokio::time::sleep(WRITE_PATH_CHECK_INTERVAL) => {}
                }
            }
        }
    });

    let maintenance = spawn_maintenance(
        db.clone(),
        opts.maintenance_interval,
        supervisor.metrics().clone(),
    );
    let shipping = shipper.as_ref().map(|s| s.spawn(db.clone(), &supervisor));

    shutdown.cancelled().await;
    tracing::info!("shutting down");
    if let Err(e) = reloader.await {
        tracing::error!(error = %e, "reload task failed");
    }
    // A round in flight finishes its push before the log closes.
    if let Err(e) = log_sources_task.await {
        tracing::error!(error = %e, "log sources task failed");
    }
    if let Some(task) = journald_task
        && let Err(e) = task.await
    {
        tracing::error!(error = %e, "journald task failed");
    }
    if let Some(task) = leadership {
        let _ = task.await;
    }
    manager.stop().await;
    // In-flight requests (and their commits) finish before the server task ends.
    if let Err(e) = server.await {
        tracing::error!(error = %e, "http server task failed");
    }
    if let Some(server) = cluster_server {
        // The leader keeps its append stream to this node open: the server stops
        // taking calls at once, and what is in flight gets a moment only.
        match tokio::time::timeout(CLUSTER_DRAIN_TIMEOUT, server).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "cluster server task failed"),
            Err(_) => tracing::debug!("cluster server connections closed at shutdown"),
        }
    }
    if let Some(grpc) = grpc {
        // In-flight streams see the cancellation and end with `Unavailable`; a client
        // that stops reading does not hold the shutdown up for long.
        match tokio::time::timeout(GRPC_DRAIN_TIMEOUT, grpc).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::error!(error = %e, "grpc server task failed"),
            Err(_) => tracing::warn!("grpc server did not drain in time; closing anyway"),
        }
    }
    if let Err(e) = write_path.await {
        tracing::error!(error = %e, "wal writer watch task failed");
    }
    if let Some(task) = bucket_sync {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "bucket store task failed");
        }
    }
    if let Some(task) = shipping {
        if let Err(e) = task.await {
            tracing::error!(error = %e, "shipper task failed");
        }
    }
    let closing = db.clone();
    tokio::task::spawn_blocking(move || closing.close())
        .await
        .context("close tsdb task")?
        .context("close tsdb")?;
    if maintenance.join().is_err() {
        tracing::error!("maintenance thread panicked");
    }
    if let Some(fatal) = supervisor.fatal_error() {
        tracing::error!(error = %fatal, "shutdown complete after a critical failure");
        anyhow::bail!("{fatal}");
    }
    tracing::info!("shutdown complete");
    Ok(())
}

/// The directory relative file_sd paths are resolved against.
/// The configuration's rule files, loaded.
fn load_rules(
    config: &Config,
    config_file: Option<&std::path::Path>,
) -> Result<Vec<(String, crate::rules::file::RuleFile)>, String> {
    crate::rules::load_files(&config.rule_files, &config_dir(config_file))
}

fn config_dir(config_file: Option<&std::path::Path>) -> PathBuf {
    config_file
        .and_then(|p| p.parent())
        .filter(|d| !d.as_os_str().is_empty())
        .map_or_else(|| PathBuf::from("."), PathBuf::from)
}

/// What a reload hands the rule files and the `alerting` section to.
#[derive(Clone)]
struct RulesAndNotifier {
    rules: Arc<crate::rules::RuleManager>,
    notifier: Arc<crate::rules::notifier::Notifier>,
}

/// Reloads the configuration on SIGHUP and on `POST /-/reload`. A configuration
/// that does not load leaves the running one in place, and the error goes to the
/// log and to the caller.
///
/// Its state lives behind a mutex so that the supervisor can start the loop again
/// after a panic with the same sources and request channel.
async fn reload_loop(
    config_file: Option<PathBuf>,
    web: Option<WebReload>,
    state: Arc<tokio::sync::Mutex<(Sources, tokio::sync::mpsc::Receiver<ReloadRequest>)>>,
    manager: Arc<ScrapeManager>,
    alerting: RulesAndNotifier,
    status: Arc<StatusInfo>,
    shutdown: CancellationToken,
) -> Result<(), String> {
    let mut state = state.lock().await;
    let (sources, requests) = &mut *state;
    use tokio::signal::unix::{SignalKind, signal};
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "cannot install the SIGHUP handler");
            None
        }
    };
    loop {
        let reply = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = requests.recv() => match r {
                Some(reply) => Some(reply),
                None => return Ok(()),
            },
            Some(()) = async {
                match hangup.as_mut() {
                    Some(h) => h.recv().await,
                    None => std::future::pending().await,
                }
            } => None,
        };
        let mut outcome = reload(
            config_file.as_deref(),
            sources,
            &manager,
            &alerting,
            &status,
        )
        .await;
        if let Some(web) = &web {
            let reloaded = web.reload().await;
            if outcome.is_ok() {
                outcome = reloaded;
            }
        }
        tracing::info!(
            target: crate::security::auth::AUDIT,
            event = "reload",
            by = if reply.is_some() { "POST /-/reload" } else { "SIGHUP" },
            outcome = match &outcome {
                Ok(()) => "applied".to_string(),
                Err(e) => format!("refused: {e}"),
            },
        );
        match &outcome {
            Ok(()) => tracing::info!("completed loading of configuration file"),
            Err(e) => {
                tracing::error!(error = %e, "error reloading config; the running configuration stays")
            }
        }
        if let Some(reply) = reply {
            let _ = reply.send(outcome);
        }
    }
}

async fn reload(
    config_file: Option<&std::path::Path>,
    sources: &mut Sources,
    manager: &ScrapeManager,
    alerting: &RulesAndNotifier,
    status: &StatusInfo,
) -> Result<(), String> {
    let RulesAndNotifier { rules, notifier } = alerting;
    let Some(path) = config_file else {
        // The embedded default cannot change.
        return Ok(());
    };
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("read {}: {e}", path.display()))?;
    let config = Config::parse(&text, &path.display().to_string()).map_err(|e| e.to_string())?;
    for w in config.warnings() {
        tracing::warn!("{w}");
    }
    // Rules that do not load refuse the whole reload: nothing of it is applied.
    let rule_files = load_rules(&config, Some(path)).map_err(|e| format!("rule_files: {e}"))?;
    notifier
        .apply(&config.alerting, &config.global.external_labels)
        .map_err(|e| format!("alerting: {e}"))?;
    manager
        .apply(sources.jobs(&config), config_dir(Some(path)))
        .await;
    rules.update(rule_files, config.global.evaluation_interval.0);
    *status.config_yaml.write() = shown_config(&text);
    Ok(())
}

/// The configuration as `/api/v1/status/config` shows it: secrets as `<secret>`.
fn shown_config(text: &str) -> String {
    crate::config::redact_config_text(text).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "the configuration is not shown at /api/v1/status/config");
        String::new()
    })
}

/// How often a cluster node checks whether it leads (for leader-only work).
const LEADERSHIP_CHECK_INTERVAL: Duration = Duration::from_millis(100);

/// Hands the leader-only work to this node while it leads, and takes it away when
/// it stops leading: scraping the configured targets, uploading blocks, evaluating
/// rules.
fn spawn_leadership_watch(
    control: Arc<dyn ClusterControl>,
    manager: Arc<ScrapeManager>,
    shipper: Option<Shipper>,
    rules: Arc<crate::rules::RuleManager>,
    stop: CancellationToken,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut leads = false;
        loop {
            let now = control.is_leader();
            if now != leads {
                leads = now;
                manager.set_scrapes_targets(leads).await;
                if let Some(s) = &shipper {
                    s.set_uploads(leads);
                }
                rules.set_active(leads);
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(LEADERSHIP_CHECK_INTERVAL) => {}
            }
        }
    })
}

/// What a reload re-reads of `--web.config.file`: the users and tokens (replaced
/// whole), and the certificates, the cluster's client identity among them (also
/// re-read on their own when they change). The
/// certificate paths and TLS settings themselves are read at start.
#[derive(Clone)]
struct WebReload {
    path: PathBuf,
    auth: Arc<crate::security::auth::Authenticator>,
    tls: Vec<Arc<crate::security::tls::ServerTls>>,
    /// The cluster's calling side (its client identity).
    peer_client: Option<Arc<crate::security::tls::PeerClientTls>>,
}

impl WebReload {
    async fn reload(&self) -> Result<(), String> {
        let this = self.clone();
        tokio::task::spawn_blocking(move || {
            let cfg = crate::security::web_config::WebConfig::load(&this.path)
                .map_err(|e| e.to_string())?;
            this.auth.replace(&cfg);
            for tls in &this.tls {
                tls.reload();
            }
            if let Some(client) = &this.peer_client {
                client.reload();
            }
            Ok(())
        })
        .await
        .map_err(|e| format!("web config reload: {e}"))?
    }
}

/// Cancels `shutdown` on SIGTERM or SIGINT.
fn spawn_signal_handler(shutdown: CancellationToken) {
    tokio::spawn(async move {
        use tokio::signal::unix::{SignalKind, signal};
        let (Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            tracing::error!("cannot install signal handlers");
            return;
        };
        tokio::select! {
            _ = term.recv() => tracing::info!("received SIGTERM"),
            _ = int.recv() => tracing::info!("received SIGINT"),
            _ = shutdown.cancelled() => return,
        }
        shutdown.cancel();
    });
}

/// Head cuts, compaction and retention run on their own thread (they are blocking
/// disk work), woken when the head becomes compactable or every `interval`. A round
/// that panics is counted as a failure of the `maintenance` task and the thread
/// goes on with the next round (a failed round leaves the database as it was:
/// blocks are written under temporary names and swapped in whole).
fn spawn_maintenance(
    db: Db,
    interval: Duration,
    tasks: TaskMetrics,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("odin-maintenance".into())
        .spawn(move || {
            loop {
                run_guarded("maintenance", &tasks, || {
                    if let Err(e) = db.compact() {
                        tracing::error!(error = %e, "compaction failed");
                    }
                    if let Err(e) = db.take_head_image_if_due() {
                        tracing::error!(error = %e, "head image failed");
                    }
                });
                if !db.wait_for_maintenance(interval) {
                    break;
                }
            }
        })
        .unwrap_or_else(|e| {
            tracing::error!(error = %e, "cannot start maintenance thread");
            std::thread::spawn(|| {})
        })
}

/// Retention as Prometheus's runtimeinfo shows it: `7d`, `10GiB`, or `7d or 10GiB`.
fn retention_text(db: &DbOptions) -> String {
    let time = (db.retention_ms > 0).then(|| crate::model::format_duration_ms(db.retention_ms));
    let size = (db.retention_bytes > 0).then(|| format!("{}B", db.retention_bytes));
    match (time, size) {
        (Some(t), Some(s)) => format!("{t} or {s}"),
        (Some(t), None) => t,
        (None, Some(s)) => s,
        (None, None) => String::new(),
    }
}
