//! The StoreAPI's errors and their one mapping to gRPC status codes.

use crate::storage::{ErrorKind, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum StoreApiError {
    /// The request can never be answered as sent: `InvalidArgument`.
    #[error("{0}")]
    BadRequest(String),
    /// Storage is not open yet or is shutting down: `Unavailable`.
    #[error("{0}")]
    Unavailable(String),
    /// Storage failed; the detail is logged, not sent: `Internal`.
    #[error("{context}: {source}")]
    Storage {
        context: &'static str,
        #[source]
        source: StorageError,
    },
}

pub type Result<T> = std::result::Result<T, StoreApiError>;

impl StoreApiError {
    pub fn storage(context: &'static str, source: StorageError) -> Self {
        StoreApiError::Storage { context, source }
    }
}

impl From<StoreApiError> for tonic::Status {
    fn from(e: StoreApiError) -> Self {
        match e {
            StoreApiError::BadRequest(msg) => tonic::Status::invalid_argument(msg),
            StoreApiError::Unavailable(msg) => tonic::Status::unavailable(msg),
            StoreApiError::Storage { context, source } => match source.kind() {
                ErrorKind::BadData => tonic::Status::invalid_argument(source.to_string()),
                ErrorKind::Unavailable | ErrorKind::InsufficientStorage => {
                    tonic::Status::unavailable(source.to_string())
                }
                ErrorKind::Internal => {
                    tracing::error!(error = %source, "storeapi: {context}");
                    tonic::Status::internal(format!("{context}: internal storage error"))
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_map_to_grpc_codes_and_internal_detail_stays_in_the_log() {
        let s: tonic::Status = StoreApiError::BadRequest("bad matcher".into()).into();
        assert_eq!(s.code(), tonic::Code::InvalidArgument);
        assert_eq!(s.message(), "bad matcher");
        let s: tonic::Status = StoreApiError::Unavailable("starting".into()).into();
        assert_eq!(s.code(), tonic::Code::Unavailable);
        let io = std::io::Error::other("disk on fire at /var/lib/odin");
        let s: tonic::Status =
            StoreApiError::storage("select series", StorageError::internal("read chunk", io))
                .into();
        assert_eq!(s.code(), tonic::Code::Internal);
        assert!(!s.message().contains("/var/lib/odin"), "{}", s.message());
    }
}
