//! The one error type of the HTTP edge: a status and a message a person can act on, as JSON
//! `{"error": "..."}`. A 500 says nothing more to the client; its cause (ids and paths, never
//! PHI) rides on the response to [`log_failures`], the one place failures are logged.

use std::sync::Arc;

use asepsis_store::StorageError;
use axum::Json;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(&'static str),
    /// A key that was recognised but disabled, and why.
    #[error("{0}")]
    Disabled(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("not found")]
    NotFound,
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Unsupported(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    Unavailable(String),
    #[error("internal error")]
    Internal(#[source] Box<dyn std::error::Error + Send + Sync>),
}

impl ApiError {
    /// A failure of ours (500), keeping its cause for the log.
    pub fn internal(cause: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        ApiError::Internal(cause.into())
    }

    fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized(_) | ApiError::Disabled(_) => StatusCode::UNAUTHORIZED,
            ApiError::Forbidden(_) => StatusCode::FORBIDDEN,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::Conflict(_) => StatusCode::CONFLICT,
            ApiError::TooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unsupported(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ApiError::Invalid(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

impl From<StorageError> for ApiError {
    fn from(e: StorageError) -> Self {
        match e {
            StorageError::Store(_) => ApiError::Unavailable("storage unavailable; retry".into()),
            other => ApiError::internal(other),
        }
    }
}

/// Why a request failed on our side, for [`log_failures`]; never sent to the client.
#[derive(Clone)]
struct Failure {
    cause: Arc<dyn std::error::Error + Send + Sync>,
    unavailable: bool,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = Json(serde_json::json!({ "error": self.to_string() }));
        let mut response = if status == StatusCode::UNAUTHORIZED {
            (status, [(header::WWW_AUTHENTICATE, "Bearer")], body).into_response()
        } else {
            (status, body).into_response()
        };
        let failure = match self {
            ApiError::Internal(cause) => Some(Failure {
                cause: Arc::from(cause),
                unavailable: false,
            }),
            ApiError::Unavailable(why) => Some(Failure {
                cause: Arc::from(Box::<dyn std::error::Error + Send + Sync>::from(why)),
                unavailable: true,
            }),
            _ => None,
        };
        if let Some(failure) = failure {
            response.extensions_mut().insert(failure);
        }
        response
    }
}

/// Log each failed request once, inside its request span, with its cause and the cause's
/// sources.
pub async fn log_failures(response: Response) -> Response {
    if let Some(failure) = response.extensions().get::<Failure>() {
        let mut cause = failure.cause.to_string();
        let mut source = failure.cause.source();
        while let Some(s) = source {
            cause.push_str(": ");
            cause.push_str(&s.to_string());
            source = s.source();
        }
        if failure.unavailable {
            tracing::warn!(why = %cause, "request failed: unavailable");
        } else {
            tracing::error!(%cause, "request failed");
        }
    }
    response
}
