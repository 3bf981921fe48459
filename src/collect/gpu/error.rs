//! Errors of the GPU collector. A [`FieldError`] is a value, not a failure of the scrape:
//! the series for that field is left out and the error is counted.

/// Why one reading of one device could not be taken.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// The device or driver does not have this field (no memory sensor, ECC off, no
    /// NVLink). Expected on many cards: the series is left out and nothing is counted.
    #[error("not supported")]
    NotSupported,
    /// The GPU has fallen off the bus (`NVML_ERROR_GPU_IS_LOST`): every series of this
    /// GPU stops until ODIN restarts; the other GPUs keep reporting.
    #[error("gpu is lost")]
    GpuLost,
    /// Any other driver error (permission, timeout, unknown): counted per field.
    #[error("nvml: {0}")]
    Driver(String),
}

pub type Result<T> = std::result::Result<T, FieldError>;
