//! The node collector's error type. Errors never leave the collector as values: each
//! sub-collector's failure is logged at debug level and shows as
//! `node_scrape_collector_success{collector="…"} 0`, as node_exporter does.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    /// A file or directory could not be read (missing on this kernel, permissions).
    #[error("read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A file was read but its contents were not what the kernel documents.
    #[error("parse {}: {what}", path.display())]
    Parse { path: PathBuf, what: String },
    /// A system call failed.
    #[error("{call}: {source}")]
    Syscall {
        call: &'static str,
        source: std::io::Error,
    },
    /// A node_exporter flag (`collectors.node.flags`) ODIN does not take, or a value
    /// node_exporter would refuse.
    #[error("node_exporter flag --{flag}: {reason}")]
    Flag { flag: String, reason: String },
    /// A sub-collector was asked for by a name no collector has.
    #[error("unknown node collector {0:?}")]
    UnknownCollector(String),
}

pub type Result<T> = std::result::Result<T, NodeError>;
