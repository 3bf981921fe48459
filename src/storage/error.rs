//! Errors at the storage seam. Each carries a kind so that `api/` and `storeapi/` can map
//! it to an HTTP status or a gRPC code in one place.

/// What sort of failure this is, for the outside world.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The caller sent something that can never be stored or answered.
    BadData,
    /// The storage is shutting down or cannot take writes now.
    Unavailable,
    /// The disk (or the quota) is full: the write failed and nothing of it was
    /// kept; the same write can succeed once space returns.
    InsufficientStorage,
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
            StorageError::Internal { source, .. } if is_out_of_space(source.as_ref()) => {
                ErrorKind::InsufficientStorage
            }
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

/// Whether an I/O error anywhere in `e`'s chain says the disk or quota is full.
fn is_out_of_space(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(e);
    while let Some(err) = next {
        // An error shared by the commits of one group arrives in an `Arc`.
        let io = err.downcast_ref::<std::io::Error>().or_else(|| {
            err.downcast_ref::<std::sync::Arc<std::io::Error>>()
                .map(|a| a.as_ref())
        });
        if let Some(io) = io
            && (io.kind() == std::io::ErrorKind::StorageFull
                || matches!(io.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT)))
        {
            return true;
        }
        next = err.source();
    }
    false
}

/// Why one sample could not even be buffered.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AppendError {
    #[error("invalid label set: {0}")]
    InvalidLabels(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("write segment: {0}")]
    struct Wrapped(#[source] std::io::Error);

    #[test]
    fn a_full_disk_anywhere_in_the_chain_is_insufficient_storage() {
        let full = std::io::Error::from_raw_os_error(libc::ENOSPC);
        let e = StorageError::internal("commit to wal", Wrapped(full));
        assert_eq!(e.kind(), ErrorKind::InsufficientStorage);
        let quota = std::io::Error::from_raw_os_error(libc::EDQUOT);
        assert_eq!(
            StorageError::internal("x", quota).kind(),
            ErrorKind::InsufficientStorage
        );
        #[derive(Debug, thiserror::Error)]
        #[error("wal: {0}")]
        struct Shared(#[source] std::sync::Arc<std::io::Error>);
        let shared = std::sync::Arc::new(std::io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(
            StorageError::internal("commit", Shared(shared)).kind(),
            ErrorKind::InsufficientStorage
        );
        let other = std::io::Error::from_raw_os_error(libc::EIO);
        assert_eq!(
            StorageError::internal("x", Wrapped(other)).kind(),
            ErrorKind::Internal
        );
    }
}
