//! The `push-api` function's Lambda side: HTTP API events (payload format 2.0) through
//! `lambda_http`, each answered by the library's [`PushApi::answer`], which knows nothing of
//! Lambda (the local gateway serves the same function on its push port).

use wsstack_handlers::fanout::Deadline;
use wsstack_handlers::push_api::{PushApi, PushResponse};

/// The `push-api` function's loop: HTTP API events (payload format 2.0) through `lambda_http`.
pub(crate) async fn serve_lambda(push_api: PushApi) -> Result<(), crate::RunError> {
    lambda_http::run(lambda_http::service_fn(
        move |request: lambda_http::Request| {
            let push_api = push_api.clone();
            async move {
                use lambda_http::RequestExt;
                let context = request.lambda_context();
                let deadline = Deadline::from_lambda_deadline(
                    context.deadline,
                    wsstack_handlers::management::ATTEMPT_TIMEOUT,
                );
                let reference = context.request_id.clone();
                let path = request.raw_http_path().to_owned();
                let answer = push_api
                    .answer(
                        request.method().as_str(),
                        &path,
                        request.body().as_ref(),
                        &reference,
                        Some(deadline),
                    )
                    .await;
                Ok::<_, std::convert::Infallible>(http_response(answer))
            }
        },
    ))
    .await
    .map_err(|e| crate::RunError::Runtime(e.to_string()))
}

/// The answer as an HTTP response.
fn http_response(answer: PushResponse) -> lambda_http::Response<lambda_http::Body> {
    let mut builder = lambda_http::Response::builder().status(answer.status);
    if !answer.body.is_empty() {
        builder = builder.header("content-type", "application/json");
    }
    if let Some(allow) = &answer.allow {
        builder = builder.header("allow", allow);
    }
    let body = if answer.body.is_empty() {
        lambda_http::Body::Empty
    } else {
        lambda_http::Body::Text(answer.body)
    };
    builder.body(body).unwrap_or_else(|e| {
        // A status from this module and static header names: cannot fail; answer 500 if it did.
        tracing::error!(error = %e, "building the response failed");
        let mut r = lambda_http::Response::new(lambda_http::Body::Empty);
        *r.status_mut() = lambda_http::http::StatusCode::INTERNAL_SERVER_ERROR;
        r
    })
}
