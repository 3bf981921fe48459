//! The TSDB's error type.

use crate::log::LogError;
use crate::storage::StorageError;
use crate::tsdb::block::BlockError;

#[derive(Debug, thiserror::Error)]
pub enum TsdbError {
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    #[error("log: {0}")]
    Log(#[from] LogError),
    #[error("block: {0}")]
    Block(#[from] BlockError),
    #[error("data directory {0} is locked by another process")]
    Locked(String),
    #[error("{0}")]
    Internal(String),
}

impl TsdbError {
    pub fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        TsdbError::Io {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, TsdbError>;

impl From<crate::log::wal::WalError> for TsdbError {
    fn from(e: crate::log::wal::WalError) -> Self {
        TsdbError::Log(e.into())
    }
}

impl From<TsdbError> for StorageError {
    fn from(e: TsdbError) -> Self {
        StorageError::internal("tsdb", e)
    }
}
