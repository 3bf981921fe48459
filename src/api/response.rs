//! Prometheus's JSON envelope and its error types, in one place: every handler answers
//! through these so status codes and `errorType`s match Prometheus exactly.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::storage::{ErrorKind, StorageError};

/// Prometheus's `errorType` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    BadData,
    Execution,
    Timeout,
    Canceled,
    Internal,
    Unavailable,
    NotFound,
}

impl ErrorType {
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorType::BadData => "bad_data",
            ErrorType::Execution => "execution",
            ErrorType::Timeout => "timeout",
            ErrorType::Canceled => "canceled",
            ErrorType::Internal => "internal",
            ErrorType::Unavailable => "unavailable",
            ErrorType::NotFound => "not_found",
        }
    }

    /// The HTTP status Prometheus's API answers with.
    pub fn status(&self) -> StatusCode {
        match self {
            ErrorType::BadData => StatusCode::BAD_REQUEST,
            ErrorType::Execution => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorType::Timeout | ErrorType::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            // Prometheus answers 499 (client closed request) for canceled queries.
            ErrorType::Canceled => StatusCode::from_u16(499).unwrap_or(StatusCode::BAD_REQUEST),
            ErrorType::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorType::NotFound => StatusCode::NOT_FOUND,
        }
    }
}

#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorType,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorType, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn bad_data(message: impl Into<String>) -> Self {
        Self::new(ErrorType::BadData, message)
    }

    pub fn unavailable(message: impl Into<String>) -> Self {
        Self::new(ErrorType::Unavailable, message)
    }
}

impl From<crate::logs::query::AnswerTooLarge> for ApiError {
    fn from(e: crate::logs::query::AnswerTooLarge) -> Self {
        ApiError::bad_data(e.to_string())
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e.kind() {
            ErrorKind::BadData => ApiError::bad_data(e.to_string()),
            ErrorKind::Unavailable | ErrorKind::InsufficientStorage => {
                ApiError::unavailable(e.to_string())
            }
            ErrorKind::Internal => {
                // The detail goes to the log, not to the client.
                tracing::error!(error = %e, "internal storage error");
                ApiError::new(
                    ErrorType::Internal,
                    "internal storage error; see the server log",
                )
            }
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    status: &'static str,
    #[serde(rename = "errorType")]
    error_type: &'static str,
    error: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            status: "error",
            error_type: self.kind.as_str(),
            error: &self.message,
        };
        (self.kind.status(), Json(body)).into_response()
    }
}

#[derive(Serialize)]
struct SuccessBody<T: Serialize> {
    status: &'static str,
    data: T,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<String>,
}

/// `{"status":"success","data":…}`.
pub fn success<T: Serialize>(data: T) -> Response {
    Json(SuccessBody {
        status: "success",
        data,
        warnings: Vec::new(),
    })
    .into_response()
}
