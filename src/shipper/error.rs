//! The shipper's error type.

#[derive(Debug, thiserror::Error)]
pub enum ShipperError {
    /// The object storage configuration cannot be used.
    #[error("object storage config: {0}")]
    Config(String),
    #[error("{context}: {source}")]
    Io {
        context: String,
        #[source]
        source: std::io::Error,
    },
    /// A request to object storage failed (network, server, permissions).
    #[error("{context}: {source}")]
    ObjectStore {
        context: String,
        #[source]
        source: object_store::Error,
    },
    #[error("block: {0}")]
    Block(#[from] crate::tsdb::block::BlockError),
    /// The shipper state file or a meta.json in the bucket does not parse.
    #[error("{0}")]
    Corrupt(String),
}

impl ShipperError {
    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> Self {
        ShipperError::Io {
            context: context.into(),
            source,
        }
    }

    pub(crate) fn store(context: impl Into<String>, source: object_store::Error) -> Self {
        ShipperError::ObjectStore {
            context: context.into(),
            source,
        }
    }
}

pub type Result<T> = std::result::Result<T, ShipperError>;
