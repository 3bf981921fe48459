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

use crate::api::{self, ApiOptions, ApiState, Backends, HttpMetrics, StatusInfo};
use crate::collect::process::ProcessCollector;
use crate::config::Config;
use crate::promql::{Engine, EngineOptions};
use crate::remote::WriteLimits;
use crate::tsdb::{Db, DbOptions, TsdbMetrics};

/// Everything `odin run` needs, after flags and config file are merged.
#[derive(Debug, Clone)]
pub struct RunOptions {
    pub config: Config,
    pub config_file: Option<PathBuf>,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub db: DbOptions,
    pub enable_admin_api: bool,
    pub enable_lifecycle: bool,
    /// How often maintenance (head cut, compaction, retention) runs when nothing
    /// triggers it earlier.
    pub maintenance_interval: Duration,
    pub engine: EngineOptions,
    pub query_max_concurrency: usize,
    /// Flag names and effective values, for `/api/v1/status/flags`.
    pub flag_values: BTreeMap<String, String>,
    /// The configuration text, for `/api/v1/status/config`.
    pub config_yaml: String,
}

/// Runs the appliance until a signal or `/-/quit`; returns once everything has shut
/// down cleanly.
pub async fn run(opts: RunOptions) -> anyhow::Result<()> {
    let mut registry = Registry::default();
    let tsdb_metrics = TsdbMetrics::new(&mut registry);
    let http_metrics = HttpMetrics::new(&mut registry);
    registry.register_collector(Box::new(ProcessCollector));

    let shutdown = CancellationToken::new();
    let backends: Arc<OnceLock<Backends>> = Arc::new(OnceLock::new());
    let write_limits = WriteLimits::default();
    let state = ApiState {
        backends: backends.clone(),
        registry: Arc::new(registry),
        options: ApiOptions {
            enable_admin_api: opts.enable_admin_api,
            enable_lifecycle: opts.enable_lifecycle,
            write_limits,
        },
        http_metrics,
        shutdown: shutdown.clone(),
        write_permits: Arc::new(tokio::sync::Semaphore::new(write_limits.max_concurrent)),
        engine: Arc::new(Engine::new(opts.engine.clone())),
        query_permits: Arc::new(tokio::sync::Semaphore::new(opts.query_max_concurrency)),
        status: Arc::new(StatusInfo {
            start_time_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            config_yaml: opts.config_yaml.clone(),
            storage_retention: retention_text(&opts.db),
            flags: opts.flag_values.clone(),
        }),
    };

    // Serve health checks while the WAL replays; readiness follows the replay.
    let listener = tokio::net::TcpListener::bind(opts.listen)
        .await
        .with_context(|| format!("listen on {}", opts.listen))?;
    let local = listener.local_addr()?;
    tracing::info!(address = %local, "http server listening");
    let server_shutdown = shutdown.clone();
    let server = tokio::spawn(async move {
        axum::serve(listener, api::router(state))
            .with_graceful_shutdown(async move { server_shutdown.cancelled().await })
            .await
    });

    spawn_signal_handler(shutdown.clone());

    let dir = opts.data_dir.clone();
    let db_opts = opts.db.clone();
    let db = tokio::task::spawn_blocking(move || Db::open(&dir, db_opts, tsdb_metrics))
        .await
        .context("open tsdb task")?
        .with_context(|| format!("open tsdb in {}", opts.data_dir.display()))?;
    let _ = backends.set(Backends {
        appendable: Arc::new(db.clone()),
        queryable: Arc::new(db.clone()),
        admin: Arc::new(db.clone()),
    });
    tracing::info!(data_dir = %opts.data_dir.display(), "storage ready");

    let maintenance = spawn_maintenance(db.clone(), opts.maintenance_interval);

    shutdown.cancelled().await;
    tracing::info!("shutting down");
    // In-flight requests (and their commits) finish before the server task ends.
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "http server failed"),
        Err(e) => tracing::error!(error = %e, "http server task failed"),
    }
    let closing = db.clone();
    tokio::task::spawn_blocking(move || closing.close())
        .await
        .context("close tsdb task")?
        .context("close tsdb")?;
    if maintenance.join().is_err() {
        tracing::error!("maintenance thread panicked");
    }
    tracing::info!("shutdown complete");
    Ok(())
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
/// disk work), woken when the head becomes compactable or every `interval`.
fn spawn_maintenance(db: Db, interval: Duration) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("odin-maintenance".into())
        .spawn(move || {
            loop {
                if let Err(e) = db.compact() {
                    tracing::error!(error = %e, "compaction failed");
                }
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
