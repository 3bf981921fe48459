//! Errors of the bucket store.

use crate::storage::StorageError;
use crate::tsdb::index::IndexError;

#[derive(Debug, thiserror::Error)]
pub enum BucketStoreError {
    /// The object store failed (unreachable, denied, object gone).
    #[error("{context}: {source}")]
    Store {
        context: String,
        #[source]
        source: object_store::Error,
    },
    /// A block in the bucket does not follow the format.
    #[error("{0}")]
    Index(#[from] IndexError),
    #[error("corrupt bucket block: {0}")]
    Corrupt(String),
    /// The runtime that performs the reads is gone (shutting down).
    #[error("bucket reads are shutting down")]
    ShuttingDown,
}

impl BucketStoreError {
    pub(crate) fn store(context: impl Into<String>, source: object_store::Error) -> Self {
        BucketStoreError::Store {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, BucketStoreError>;

impl From<BucketStoreError> for StorageError {
    fn from(e: BucketStoreError) -> Self {
        match e {
            BucketStoreError::Store { .. } | BucketStoreError::ShuttingDown => {
                StorageError::Unavailable(e.to_string())
            }
            other => StorageError::internal("read bucket block", other),
        }
    }
}
