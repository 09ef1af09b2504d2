//! The gateway's HTTP error answers, shaped as API Gateway's: a status, the error type in
//! `x-amzn-ErrorType` (which the SDKs map to typed errors) and a JSON `{"message": ...}` body.

use axum::response::{IntoResponse, Response};
use http::{HeaderValue, StatusCode, header};

use crate::id;

/// An error answer: status, `x-amzn-ErrorType` (when given) and `{"message": ...}`.
pub fn json_error(status: StatusCode, error_type: Option<&str>, message: &str) -> Response {
    let body = serde_json::json!({ "message": message }).to_string();
    let mut response = (status, body).into_response();
    let h = response.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Some(t) = error_type.and_then(|t| HeaderValue::from_str(t).ok()) {
        h.insert("x-amzn-errortype", t);
    }
    response
}

/// API Gateway's answer to a path or stage it does not serve.
pub fn forbidden() -> Response {
    json_error(
        StatusCode::FORBIDDEN,
        Some("ForbiddenException"),
        "Forbidden",
    )
}

/// Adds an `x-amzn-RequestId`, as every API Gateway answer carries one.
pub fn with_request_id(mut response: Response) -> Response {
    if let Ok(v) = HeaderValue::from_str(&id::request_id()) {
        response.headers_mut().insert("x-amzn-requestid", v);
    }
    response
}

/// Anything else on the port.
pub async fn fallback() -> Response {
    with_request_id(forbidden())
}
