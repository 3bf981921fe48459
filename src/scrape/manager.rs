//! The scrape manager: one pool per job, each turning its discovered target groups
//! into running loops, and the state `/api/v1/targets` reads.
//!
//! A job is either a `scrape_configs` entry (targets from `static_configs` and
//! `file_sd_configs`, scraped over HTTP) or an in-process source (the built-in
//! collectors, ODIN's own metrics), which is one target scraped through the same loop.
//! Applying a new set of jobs keeps the pools whose job is unchanged, restarts the
//! changed ones without staleness (as Prometheus's reload does) and stops the removed
//! ones with stale markers.
//!
//! In a cluster only the leader scrapes the `scrape_configs` targets (every node runs
//! its own collectors): [`ScrapeManager::set_scrapes_targets`] hands those pools over
//! when leadership moves, stopping them *without* stale markers, since the new
//! leader goes on with the same series.

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use parking_lot::{Mutex, RwLock};
use tokio::task::JoinHandle;

use crate::supervise::Supervisor;
use tokio_util::sync::CancellationToken;

use crate::model::Labels;
use crate::scrape::append::{Limits, Metadata};
use crate::scrape::client::{Fetcher, HttpFetcher, LocalSource, build_client};
use crate::scrape::config::ScrapeConfig;
use crate::scrape::discovery::{
    TargetGroup, glob, read_file_sd, resolve_pattern, static_target_groups,
};
use crate::scrape::metrics::ScrapeMetrics;
use crate::scrape::scrape_loop::{LoopHandle, LoopSpec, TargetHealth};
use crate::scrape::target::{Target, TargetOutcome, targets_from_group};
use crate::storage::Appendable;

/// How often file_sd files are checked for changes (their contents are compared, so a
/// check that finds nothing new costs a few reads).
const FILE_SD_POLL: Duration = Duration::from_secs(5);

/// An in-process source run as a job of one target.
#[derive(Clone)]
pub struct LocalJob {
    pub job_name: String,
    /// The `instance` label (the host name for the node collector).
    pub instance: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub source: Arc<dyn LocalSource>,
}

/// A job as the manager runs it.
#[derive(Clone)]
pub enum Job {
    Config(Box<ScrapeConfig>),
    Local(LocalJob),
}

impl Job {
    pub fn name(&self) -> &str {
        match self {
            Job::Config(c) => &c.job_name,
            Job::Local(l) => &l.job_name,
        }
    }

    /// Whether two jobs would run the same way (a reload keeps such a pool).
    fn same_as(&self, other: &Job) -> bool {
        match (self, other) {
            (Job::Config(a), Job::Config(b)) => a == b,
            (Job::Local(a), Job::Local(b)) => {
                a.job_name == b.job_name
                    && a.instance == b.instance
                    && a.interval == b.interval
                    && a.timeout == b.timeout
                    && Arc::ptr_eq(&a.source, &b.source)
            }
            _ => false,
        }
    }
}

/// One active target as the API shows it.
#[derive(Clone)]
pub struct ActiveTarget {
    pub discovered_labels: Labels,
    pub labels: Labels,
    pub scrape_pool: String,
    pub scrape_url: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub health: Arc<Mutex<TargetHealth>>,
    pub metadata: Arc<Mutex<HashMap<String, Metadata>>>,
}

/// The targets of one pool.
#[derive(Clone, Default)]
pub struct PoolStatus {
    pub active: Vec<ActiveTarget>,
    pub dropped: Vec<Labels>,
    /// Discovery errors (unreadable file_sd files, bad targets), newest set.
    pub errors: Vec<String>,
}

struct RunningPool {
    job: Job,
    cancel: CancellationToken,
    /// Set before cancelling: whether the pool's loops write stale markers.
    stale_on_stop: Arc<std::sync::atomic::AtomicBool>,
    task: JoinHandle<()>,
}

pub struct ScrapeManager {
    appendable: Arc<dyn Appendable>,
    metrics: ScrapeMetrics,
    /// Where relative file_sd paths are resolved (the config file's directory).
    config_dir: RwLock<PathBuf>,
    pools: tokio::sync::Mutex<BTreeMap<String, RunningPool>>,
    status: Arc<RwLock<BTreeMap<String, PoolStatus>>>,
    /// The jobs last applied, all of them, whether they run here or not.
    wanted: tokio::sync::Mutex<Vec<Job>>,
    /// Whether the `scrape_configs` jobs run here (false on a cluster's followers).
    scrapes_targets: std::sync::atomic::AtomicBool,
}

impl ScrapeManager {
    pub fn new(appendable: Arc<dyn Appendable>, metrics: ScrapeMetrics) -> Self {
        Self {
            appendable,
            metrics,
            config_dir: RwLock::new(PathBuf::from(".")),
            pools: tokio::sync::Mutex::new(BTreeMap::new()),
            status: Arc::new(RwLock::new(BTreeMap::new())),
            wanted: tokio::sync::Mutex::new(Vec::new()),
            scrapes_targets: std::sync::atomic::AtomicBool::new(true),
        }
    }

    /// Whether the `scrape_configs` jobs run here: a cluster's leader scrapes them,
    /// its followers do not. Turning them off stops their pools without stale
    /// markers (another node takes them over); turning them on starts them.
    pub async fn set_scrapes_targets(&self, on: bool) {
        use std::sync::atomic::Ordering;
        if self.scrapes_targets.swap(on, Ordering::AcqRel) == on {
            return;
        }
        tracing::info!(
            scrapes_targets = on,
            "scrape targets {}",
            if on { "taken over" } else { "handed over" }
        );
        let jobs = self.wanted.lock().await.clone();
        let dir = self.config_dir.read().clone();
        self.apply(jobs, dir).await;
    }

    /// Runs exactly `jobs` from now on (see the module documentation).
    pub async fn apply(&self, jobs: Vec<Job>, config_dir: PathBuf) {
        *self.config_dir.write() = config_dir.clone();
        let mut wanted_all = self.wanted.lock().await;
        *wanted_all = jobs.clone();
        let mut pools = self.pools.lock().await;
        drop(wanted_all);
        let targets_here = self
            .scrapes_targets
            .load(std::sync::atomic::Ordering::Acquire);
        // Jobs that run on another node: their pools stop here without staleness.
        let elsewhere: std::collections::BTreeSet<String> = jobs
            .iter()
            .filter(|j| matches!(j, Job::Config(_)) && !targets_here)
            .map(|j| j.name().to_string())
            .collect();
        let wanted: BTreeMap<String, Job> = jobs
            .into_iter()
            .filter(|j| !elsewhere.contains(j.name()))
            .map(|j| (j.name().to_string(), j))
            .collect();
        let names: Vec<String> = pools.keys().cloned().collect();
        for name in names {
            let keep = wanted
                .get(&name)
                .is_some_and(|j| pools.get(&name).is_some_and(|p| p.job.same_as(j)));
            if keep {
                continue;
            }
            if let Some(pool) = pools.remove(&name) {
                let removed = !wanted.contains_key(&name);
                stop_pool(pool, removed && !elsewhere.contains(&name)).await;
                if removed {
                    self.status.write().remove(&name);
                }
            }
        }
        for (name, job) in wanted {
            if pools.contains_key(&name) {
                continue;
            }
            let cancel = CancellationToken::new();
            let stale_on_stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
            // A pool that panics drops its loops (which ends them) and starts again,
            // re-creating them from discovery.
            let supervisor =
                Supervisor::new(self.metrics.tasks.clone(), Arc::default(), cancel.clone());
            let (pool_job, appendable, metrics, dir, status, token, stale) = (
                job.clone(),
                self.appendable.clone(),
                self.metrics.clone(),
                config_dir.clone(),
                self.status.clone(),
                cancel.clone(),
                stale_on_stop.clone(),
            );
            let task = supervisor.spawn("scrape_pool", move || {
                let pool = run_pool(
                    pool_job.clone(),
                    appendable.clone(),
                    metrics.clone(),
                    dir.clone(),
                    status.clone(),
                    token.clone(),
                    stale.clone(),
                );
                async move {
                    pool.await;
                    Ok(())
                }
            });
            pools.insert(
                name,
                RunningPool {
                    job,
                    cancel,
                    stale_on_stop,
                    task,
                },
            );
        }
    }

    /// Stops every loop without stale markers (shutdown: the data stays as it was).
    pub async fn stop(&self) {
        let mut pools = self.pools.lock().await;
        for (_, pool) in std::mem::take(&mut *pools) {
            stop_pool(pool, false).await;
        }
    }

    /// Every pool's targets, by job name.
    pub fn status(&self) -> BTreeMap<String, PoolStatus> {
        self.status.read().clone()
    }
}

async fn stop_pool(pool: RunningPool, mark_stale: bool) {
    pool.stale_on_stop
        .store(mark_stale, std::sync::atomic::Ordering::Release);
    pool.cancel.cancel();
    if let Err(e) = pool.task.await {
        tracing::error!(error = %e, "scrape pool task failed");
    }
}

/// A target's identity within its pool: a target whose labels or URL change is a
/// new target.
fn target_key(labels: &Labels, url: &str) -> u64 {
    let mut h = xxhash_rust::xxh3::Xxh3::new();
    h.update(&labels.stable_hash().to_le_bytes());
    h.update(url.as_bytes());
    h.digest()
}

/// The pool task: discovers targets (now and whenever file_sd files change), keeps one
/// loop per target, and stops them all when cancelled.
async fn run_pool(
    job: Job,
    appendable: Arc<dyn Appendable>,
    metrics: ScrapeMetrics,
    config_dir: PathBuf,
    status: Arc<RwLock<BTreeMap<String, PoolStatus>>>,
    cancel: CancellationToken,
    stale_on_stop: Arc<std::sync::atomic::AtomicBool>,
) {
    let name = job.name().to_string();
    let client = match &job {
        Job::Config(cfg) => match build_client(cfg) {
            Ok(c) => Some(c),
            Err(e) => {
                tracing::error!(job = %name, error = %e, "cannot build the job's http client");
                status.write().insert(
                    name.clone(),
                    PoolStatus {
                        errors: vec![e],
                        ..PoolStatus::default()
                    },
                );
                cancel.cancelled().await;
                return;
            }
        },
        Job::Local(_) => None,
    };
    let mut loops: HashMap<u64, LoopHandle> = HashMap::new();
    let mut last_groups: Option<Vec<TargetGroup>> = None;
    loop {
        let (groups, errors) = discover(&job, &config_dir).await;
        if last_groups.as_ref() != Some(&groups) {
            let mut st = sync_targets(
                &job,
                client.as_ref(),
                &groups,
                &mut loops,
                &appendable,
                &metrics,
            )
            .await;
            metrics.set_targets(&name, st.active.len(), st.dropped.len());
            st.errors.extend(errors);
            status.write().insert(name.clone(), st);
            last_groups = Some(groups);
        }
        let poll = match &job {
            Job::Config(cfg) if !cfg.file_sd_configs.is_empty() => FILE_SD_POLL,
            // Nothing to rediscover: wait for cancellation.
            _ => Duration::MAX,
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            _ = tokio::time::sleep(poll.min(Duration::from_secs(86_400))) => {}
        }
    }
    let mark_stale = stale_on_stop.load(std::sync::atomic::Ordering::Acquire);
    for (_, l) in loops.drain() {
        l.stop(mark_stale).await;
    }
}

/// The job's target groups: static ones, then each file_sd file's.
async fn discover(job: &Job, config_dir: &std::path::Path) -> (Vec<TargetGroup>, Vec<String>) {
    let Job::Config(cfg) = job else {
        return (Vec::new(), Vec::new());
    };
    let mut groups = static_target_groups(&cfg.static_configs);
    if cfg.file_sd_configs.is_empty() {
        return (groups, Vec::new());
    }
    let patterns: Vec<PathBuf> = cfg
        .file_sd_configs
        .iter()
        .flat_map(|f| f.files.iter())
        .map(|p| resolve_pattern(config_dir, p))
        .collect();
    let read = tokio::task::spawn_blocking(move || {
        let mut groups = Vec::new();
        let mut errors = Vec::new();
        for pattern in patterns {
            match glob(&pattern) {
                Ok(files) => {
                    for f in files {
                        match read_file_sd(&f) {
                            Ok(g) => groups.extend(g),
                            Err(e) => errors.push(e.to_string()),
                        }
                    }
                }
                Err(e) => errors.push(e.to_string()),
            }
        }
        (groups, errors)
    })
    .await;
    match read {
        Ok((file_groups, errors)) => {
            for e in &errors {
                tracing::warn!(job = %cfg.job_name, error = %e, "file_sd");
            }
            groups.extend(file_groups);
            (groups, errors)
        }
        Err(e) => (groups, vec![format!("file_sd task failed: {e}")]),
    }
}

/// Starts loops for new targets and stops those of targets that went away (with
/// stale markers); returns the pool's status.
async fn sync_targets(
    job: &Job,
    client: Option<&reqwest::Client>,
    groups: &[TargetGroup],
    loops: &mut HashMap<u64, LoopHandle>,
    appendable: &Arc<dyn Appendable>,
    metrics: &ScrapeMetrics,
) -> PoolStatus {
    let mut status = PoolStatus::default();
    let mut wanted: HashMap<u64, (LoopSpec, ActiveTarget)> = HashMap::new();
    match job {
        Job::Local(local) => {
            let labels = Labels::from_pairs([
                ("job", local.job_name.as_str()),
                ("instance", local.instance.as_str()),
            ]);
            let discovered = Labels::from_pairs([
                ("__address__", local.instance.as_str()),
                ("job", local.job_name.as_str()),
            ]);
            let url = format!("internal://{}/metrics", local.job_name);
            let key = target_key(&labels, &url);
            let spec = LoopSpec {
                public_labels: labels.clone(),
                fetcher: Fetcher::Local(local.source.clone()),
                interval: local.interval,
                timeout: local.timeout,
                honor_labels: false,
                honor_timestamps: true,
                metric_relabel: Arc::new(Vec::new()),
                limits: Limits::default(),
                hash: key,
                job: local.job_name.clone(),
                metrics: metrics.clone(),
            };
            wanted.insert(
                key,
                (
                    spec,
                    active_target(
                        &local.job_name,
                        discovered,
                        labels,
                        url,
                        local.interval,
                        local.timeout,
                    ),
                ),
            );
        }
        Job::Config(cfg) => {
            let metric_relabel = Arc::new(cfg.metric_relabel_configs.clone());
            let limits = Limits {
                sample_limit: cfg.sample_limit.unwrap_or(0),
                label_limit: cfg.label_limit.unwrap_or(0),
                label_name_length_limit: cfg.label_name_length_limit.unwrap_or(0),
                label_value_length_limit: cfg.label_value_length_limit.unwrap_or(0),
            };
            let body_limit = cfg.body_size_limit.map_or(0, |b| b.0);
            for group in groups {
                let (outcomes, errors) = targets_from_group(group, cfg);
                status.errors.extend(errors);
                for outcome in outcomes {
                    let target: Target = match outcome {
                        TargetOutcome::Active(t) => t,
                        TargetOutcome::Dropped { discovered_labels } => {
                            status.dropped.push(discovered_labels);
                            continue;
                        }
                    };
                    let url = target.url();
                    let labels = target.public_labels();
                    let key = target_key(&target.labels, &url);
                    if wanted.contains_key(&key) {
                        continue;
                    }
                    let interval = Duration::from_millis(target.scrape_interval_ms().max(1) as u64);
                    let timeout = Duration::from_millis(target.scrape_timeout_ms().max(1) as u64);
                    let Some(client) = client else {
                        continue;
                    };
                    let spec = LoopSpec {
                        public_labels: labels.clone(),
                        fetcher: Fetcher::Http(HttpFetcher::new(
                            client.clone(),
                            url.clone(),
                            body_limit,
                        )),
                        interval,
                        timeout,
                        honor_labels: cfg.honor_labels,
                        honor_timestamps: cfg.honor_timestamps,
                        metric_relabel: metric_relabel.clone(),
                        limits,
                        hash: key,
                        job: cfg.job_name.clone(),
                        metrics: metrics.clone(),
                    };
                    let active = active_target(
                        &cfg.job_name,
                        target.discovered_labels.clone(),
                        labels,
                        url,
                        interval,
                        timeout,
                    );
                    wanted.insert(key, (spec, active));
                }
            }
        }
    }
    // Over the job's target_limit, as Prometheus: no target of the pool is scraped,
    // and each shows why.
    let target_limit = match job {
        Job::Config(cfg) => cfg.target_limit.unwrap_or(0),
        Job::Local(_) => 0,
    };
    if target_limit > 0 && wanted.len() as u64 > target_limit {
        for (_, l) in loops.drain() {
            l.stop(true).await;
        }
        let error = format!(
            "target_limit exceeded (number of targets: {}, limit: {target_limit})",
            wanted.len()
        );
        for (_, (_, active)) in wanted {
            *active.health.lock() = TargetHealth {
                health: crate::scrape::scrape_loop::Health::Down,
                last_error: error.clone(),
                ..TargetHealth::default()
            };
            status.active.push(active);
        }
        status.active.sort_by(|a, b| a.labels.cmp(&b.labels));
        status.errors.push(error);
        return status;
    }
    // Targets that went away: their series go stale.
    let gone: Vec<u64> = loops
        .keys()
        .filter(|k| !wanted.contains_key(k))
        .copied()
        .collect();
    for k in gone {
        if let Some(l) = loops.remove(&k) {
            l.stop(true).await;
        }
    }
    for (key, (spec, mut active)) in wanted {
        let handle = match loops.remove(&key) {
            Some(existing) => existing,
            None => LoopHandle::start(spec, appendable.clone(), &metrics.tasks),
        };
        active.health = handle.health.clone();
        active.metadata = handle.metadata.clone();
        loops.insert(key, handle);
        status.active.push(active);
    }
    status.active.sort_by(|a, b| a.labels.cmp(&b.labels));
    status
}

fn active_target(
    pool: &str,
    discovered_labels: Labels,
    labels: Labels,
    scrape_url: String,
    interval: Duration,
    timeout: Duration,
) -> ActiveTarget {
    ActiveTarget {
        discovered_labels,
        labels,
        scrape_pool: pool.to_string(),
        scrape_url,
        interval,
        timeout,
        health: Arc::new(Mutex::new(TargetHealth::default())),
        metadata: Arc::new(Mutex::new(HashMap::new())),
    }
}

/// The time of a loop's last scrape in RFC 3339 as Prometheus writes it (Go's zero
/// time when it never ran).
pub fn format_last_scrape(t: Option<SystemTime>) -> String {
    match t {
        None => "0001-01-01T00:00:00Z".to_string(),
        Some(t) => {
            let d = t
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or(Duration::ZERO);
            chrono::DateTime::<chrono::Utc>::from_timestamp(d.as_secs() as i64, d.subsec_nanos())
                .map(|dt| dt.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
                .unwrap_or_default()
        }
    }
}
