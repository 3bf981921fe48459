//! Errors at the storage seam. Each carries a kind so that `api/` and `storeapi/` can map
//! it to an HTTP status or a gRPC code in one place.

/// What sort of failure this is, for the outside world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller sent something that can never be stored or answered.
    BadData,
    /// The storage is shutting down or cannot take writes now.
    Unavailable,
    /// Anything else: I/O failure, corruption. Details are logged, not sent.
    Internal,
}

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("{0}")]
    BadData(String),
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    #[error("{context}: {source}")]
    Internal {
        context: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl StorageError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            StorageError::BadData(_) => ErrorKind::BadData,
            StorageError::Unavailable(_) => ErrorKind::Unavailable,
            StorageError::Internal { .. } => ErrorKind::Internal,
        }
    }

    pub fn internal(
        context: impl Into<String>,
        source: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> Self {
        StorageError::Internal {
            context: context.into(),
            source: source.into(),
        }
    }
}

pub type Result<T> = std::result::Result<T, StorageError>;

/// Why one sample could not even be buffered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("invalid label set: {0}")]
    InvalidLabels(String),
}
