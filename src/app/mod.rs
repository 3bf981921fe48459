//! Wiring and lifecycle: builds every component from the flags and the config file,
//! runs them, and shuts them down together on SIGTERM/SIGINT or `/-/quit`.
//!
//! This is the only module that names the concrete TSDB type.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use anyhow::Context;
use prometheus_client::registry::Registry;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiOptions, ApiState, Backends, HttpMetrics};
use crate::collect::process::ProcessCollector;
use crate::config::Config;
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
