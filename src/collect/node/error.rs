//! The node collector's error type. Errors never leave the collector as values: each
//! sub-collector's failure shows as `node_scrape_collector_success{collector="…"} 0`,
//! as node_exporter does, and is logged (at debug level where the hardware is
//! absent, as a warning when a collector starts failing otherwise).

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

impl NodeError {
    /// Whether the error says the hardware or kernel module is not there (a file or
    /// directory that does not exist), which node_exporter reports as no data rather
    /// than as a failure.
    pub fn is_absent(&self) -> bool {
        matches!(self, NodeError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

pub type Result<T> = std::result::Result<T, NodeError>;
