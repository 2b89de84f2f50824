//! The API's one error shape:
//! `{"error": {"code": 400, "status": "INVALID_ARGUMENT", "message": "...", "field": "..."}}`
//! (Google's, with the offending field named).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

/// An error the API answers with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    /// The HTTP status code.
    pub code: u16,
    /// What is wrong.
    pub message: String,
    /// The request's field at fault, as a path (`job.reference.jobId`).
    pub field: Option<String>,
}

/// Every error's body.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    error: ErrorShape,
}

/// An error: its HTTP code, Google's status name, what is wrong, and the
/// request's field at fault when one is.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorShape {
    code: u16,
    status: String,
    message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    field: Option<String>,
}

impl ApiError {
    fn new(code: u16, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            field: None,
        }
    }

    /// 400: `field` is wrong.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: Some(field.into()),
            ..Self::new(400, message)
        }
    }

    /// 404.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(404, message)
    }

    /// 409: the request conflicts with the state of what it names.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(409, message)
    }

    /// 401.
    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::new(401, message)
    }

    /// 500: the server failed (its store, its disk).
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, message)
    }

    /// Google's status name for the code.
    pub fn status_name(&self) -> &'static str {
        match self.code {
            400 => "INVALID_ARGUMENT",
            401 => "UNAUTHENTICATED",
            404 => "NOT_FOUND",
            409 => "FAILED_PRECONDITION",
            403 => "PERMISSION_DENIED",
            413 => "OUT_OF_RANGE",
            415 => "INVALID_ARGUMENT",
            503 => "UNAVAILABLE",
            _ => "INTERNAL",
        }
    }

    /// The error's JSON body.
    pub fn to_json(&self) -> String {
        let body = ErrorBody {
            error: ErrorShape {
                code: self.code,
                status: self.status_name().to_string(),
                message: self.message.clone(),
                field: self.field.clone(),
            },
        };
        serde_json::to_string(&body).unwrap_or_else(|_| "{}".into())
    }

    /// Reads an error body (`None` if `text` is not one).
    pub fn from_json(text: &str) -> Option<Self> {
        let body: ErrorBody = serde_json::from_str(text).ok()?;
        Some(Self {
            code: body.error.code,
            message: body.error.message,
            field: body.error.field,
        })
    }
}

impl From<rusqlite::Error> for ApiError {
    fn from(e: rusqlite::Error) -> Self {
        ApiError::internal(format!("the server's job store failed: {e}"))
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (code, self.to_json()).into_response();
        response.headers_mut().insert(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        );
        if self.code == 401 {
            response.headers_mut().insert(
                axum::http::header::WWW_AUTHENTICATE,
                axum::http::HeaderValue::from_static("Bearer"),
            );
        }
        response
    }
}
