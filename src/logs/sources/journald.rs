//! The systemd journal, read through `journalctl -o json --follow`: each entry a
//! line of the `job` stream of its unit, `MESSAGE` as the text, the priority, the
//! syslog identifier and the boot as structured metadata. The cursor of the last
//! entry is the source's position, committed with the lines (see the module
//! above): a restart asks journalctl for the entries after it.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::io::AsyncBufReadExt;

use crate::config::DurationMs;
use crate::log::record::{LogBatch, LogLine, LogStream};
use crate::logs::LogStorage;
use crate::model::Labels;

/// `collectors.journald:`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JournaldConfig {
    /// Labels of every stream (besides `unit`); `job` defaults to
    /// `systemd-journal`.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// How far back to start when there is no position yet (default 7h, as
    /// Promtail's `max_age`).
    pub max_age: Option<DurationMs>,
    /// A journal directory to read instead of the system's (`journalctl -D`).
    pub path: Option<String>,
    /// The journalctl to run (default `journalctl` on the PATH).
    pub journalctl: Option<String>,
    pub tenant: Option<String>,
}

/// The most entries one log entry carries.
const MAX_BATCH: usize = 1000;
/// How long a batch waits for more entries.
const BATCH_WAIT: Duration = Duration::from_millis(500);

/// One journal entry as journalctl's JSON has it (fields are strings, or arrays of
/// bytes for binary values).
#[derive(Debug, Deserialize)]
struct JournalEntry {
    #[serde(rename = "__CURSOR")]
    cursor: String,
    #[serde(rename = "__REALTIME_TIMESTAMP")]
    realtime_us: String,
    #[serde(rename = "MESSAGE", default)]
    message: Option<serde_json::Value>,
    #[serde(rename = "_SYSTEMD_UNIT", default)]
    unit: Option<String>,
    #[serde(rename = "PRIORITY", default)]
    priority: Option<String>,
    #[serde(rename = "SYSLOG_IDENTIFIER", default)]
    identifier: Option<String>,
    #[serde(rename = "_BOOT_ID", default)]
    boot_id: Option<String>,
}

/// A journal entry as (stream labels, line, cursor); `None` for a line that is
/// not an entry.
fn parse_entry(json: &str, labels: &BTreeMap<String, String>) -> Option<(Labels, LogLine, String)> {
    let e: JournalEntry = serde_json::from_str(json).ok()?;
    let us: i64 = e.realtime_us.parse().ok()?;
    let text = match e.message {
        Some(serde_json::Value::String(s)) => s,
        // Binary messages come as arrays of bytes.
        Some(serde_json::Value::Array(bytes)) => {
            let raw: Vec<u8> = bytes
                .iter()
                .filter_map(|b| b.as_u64().map(|b| b as u8))
                .collect();
            String::from_utf8_lossy(&raw).into_owned()
        }
        _ => String::new(),
    };
    let mut pairs = labels.clone();
    pairs
        .entry("job".into())
        .or_insert_with(|| "systemd-journal".into());
    if let Some(u) = e.unit.filter(|u| !u.is_empty()) {
        pairs.insert("unit".into(), u);
    }
    let mut metadata = Vec::new();
    for (k, v) in [
        ("priority", e.priority),
        ("syslog_identifier", e.identifier),
        ("boot_id", e.boot_id),
    ] {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            metadata.push((k.to_string(), v));
        }
    }
    Some((
        Labels::from_pairs(pairs.iter().map(|(k, v)| (k.as_str(), v.as_str()))),
        LogLine {
            ts_ns: us.saturating_mul(1000),
            text,
            metadata,
        },
        e.cursor,
    ))
}

/// The journalctl command for a start after `cursor` (or `max_age` back).
fn command(cfg: &JournaldConfig, cursor: Option<&str>) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(cfg.journalctl.as_deref().unwrap_or("journalctl"));
    cmd.args(["-o", "json", "--follow", "--no-pager", "--all"]);
    if let Some(dir) = &cfg.path {
        cmd.arg("--directory").arg(dir);
    }
    match cursor {
        Some(c) => {
            cmd.arg(format!("--after-cursor={c}"));
        }
        None => {
            let secs = cfg.max_age.map_or(7 * 3600, |d| d.0 / 1000).max(1);
            cmd.arg(format!("--since=-{secs}s"));
        }
    }
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .stdin(std::process::Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// Follows the journal until `shutdown`: entries are submitted in batches with the
/// cursor after them; a failed submission, or journalctl ending, starts journalctl
/// again after the committed cursor.
pub async fn run(
    storage: Arc<dyn LogStorage>,
    cfg: JournaldConfig,
    source: String,
    shutdown: tokio_util::sync::CancellationToken,
) -> Result<(), String> {
    let tenant = cfg.tenant.clone().unwrap_or_else(|| "fake".into());
    if cfg.path.is_none()
        && cfg.journalctl.is_none()
        && !["/run/systemd/journal", "/var/log/journal"]
            .iter()
            .any(|p| std::path::Path::new(p).exists())
    {
        tracing::info!("journald source: no journal on this host (not systemd); the source is off");
        shutdown.cancelled().await;
        return Ok(());
    }
    let mut backoff = Duration::from_secs(1);
    let mut quiet_restarts = 0u32;
    loop {
        let cursor = storage.positions(&source).remove(&source);
        let mut child = match command(&cfg, cursor.as_deref()).spawn() {
            Ok(c) => c,
            Err(e) => {
                // No journalctl (not a systemd host): said once, then nothing to do.
                tracing::warn!(error = %e, "journald source: cannot run journalctl; the source is off");
                shutdown.cancelled().await;
                return Ok(());
            }
        };
        let Some(stdout) = child.stdout.take() else {
            return Err("journalctl started without its output".into());
        };
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let mut batch: BTreeMap<Labels, Vec<LogLine>> = BTreeMap::new();
        let mut n = 0usize;
        let mut last_cursor: Option<String> = None;
        let ended = loop {
            let next = if n == 0 {
                tokio::select! {
                    _ = shutdown.cancelled() => return Ok(()),
                    l = lines.next_line() => Some(l),
                }
            } else {
                tokio::select! {
                    _ = shutdown.cancelled() => None,
                    l = tokio::time::timeout(BATCH_WAIT, lines.next_line()) => l.ok(),
                }
            };
            // No line: the batch waited long enough, or the appliance stops.
            let idle_or_stopping = next.is_none();
            let done_reading = match next {
                Some(Ok(Some(line))) => {
                    if let Some((labels, entry, c)) = parse_entry(&line, &cfg.labels) {
                        batch.entry(labels).or_default().push(entry);
                        last_cursor = Some(c);
                        n += 1;
                    }
                    false
                }
                Some(Ok(None)) | Some(Err(_)) => true,
                None => false,
            };
            let flush = n >= MAX_BATCH || (n > 0 && (idle_or_stopping || done_reading));
            if flush {
                let entry = LogBatch {
                    tenant: tenant.clone(),
                    streams: std::mem::take(&mut batch)
                        .into_iter()
                        .map(|(labels, lines)| LogStream { labels, lines })
                        .collect(),
                    positions: last_cursor
                        .take()
                        .map(|c| vec![(source.clone(), c)])
                        .unwrap_or_default(),
                };
                n = 0;
                if let Err(e) = storage.push(entry).await {
                    tracing::warn!(error = %e, "journald source: lines not committed; reading them again");
                    break false;
                }
                backoff = Duration::from_secs(1);
                quiet_restarts = 0;
            }
            if shutdown.is_cancelled() {
                return Ok(());
            }
            if done_reading {
                break true;
            }
        };
        let _ = child.kill().await;
        if ended {
            let status = child.wait().await.ok();
            let mut err = String::new();
            if let Some(mut e) = child.stderr.take() {
                use tokio::io::AsyncReadExt;
                let _ =
                    tokio::time::timeout(Duration::from_secs(1), e.read_to_string(&mut err)).await;
            }
            quiet_restarts += 1;
            // Said in full the first times; a journalctl that keeps ending is
            // retried ever more slowly, at debug level.
            if quiet_restarts <= 3 {
                tracing::warn!(
                    ?status,
                    stderr = err.trim(),
                    "journald source: journalctl ended; starting it again"
                );
            } else {
                tracing::debug!(
                    ?status,
                    stderr = err.trim(),
                    "journald source: journalctl ended again"
                );
                backoff = Duration::from_secs(300);
            }
        }
        tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(Duration::from_secs(30));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn journal_entries_become_lines_of_their_unit() {
        let json = r#"{"__CURSOR":"s=1;i=2","__REALTIME_TIMESTAMP":"1700000000123456","MESSAGE":"Started nginx.","_SYSTEMD_UNIT":"nginx.service","PRIORITY":"6","SYSLOG_IDENTIFIER":"systemd","_BOOT_ID":"b1"}"#;
        let (labels, line, cursor) = parse_entry(json, &BTreeMap::new()).unwrap();
        assert_eq!(labels.get("job"), Some("systemd-journal"));
        assert_eq!(labels.get("unit"), Some("nginx.service"));
        assert_eq!(line.ts_ns, 1_700_000_000_123_456_000);
        assert_eq!(line.text, "Started nginx.");
        assert_eq!(line.metadata[0], ("priority".to_string(), "6".to_string()));
        assert_eq!(cursor, "s=1;i=2");
        // A binary message, and a line that is no entry.
        let bin = r#"{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1","MESSAGE":[104,105]}"#;
        assert_eq!(parse_entry(bin, &BTreeMap::new()).unwrap().1.text, "hi");
        assert!(parse_entry("Logs begin at …", &BTreeMap::new()).is_none());
    }
}
