//! The `bootstrap` binary's Lambda side, over the `wsstack-handlers` library: logging, the
//! handler picked by `_HANDLER`, the configuration checked before the first event, SDK clients
//! built once, and each handler's event loop on Lambda's Runtime API (`lambda_runtime`; the
//! push API's through `lambda_http`, in `push_api`). The only crate that links either: the
//! library stays free of them for the gateway, `push` and the tests.

mod push_api;

use std::sync::Arc;

use aws_lambda_events::apigw::ApiGatewayWebsocketProxyRequest;
use wsstack_handlers::config::{self, Config};
use wsstack_handlers::{
    App, HandlerError, aws_sdk_config, bus, fanout, management, membership, queue, store,
    token_sweep, worker,
};
use wsstack_routes::Handler;

/// A handler's function error as Lambda reports it: `errorType` `HandlerError::{kind}` and the
/// error's message (a type of this crate because neither `HandlerError` nor
/// `lambda_runtime::Diagnostic` is).
#[derive(Debug)]
struct FunctionError(HandlerError);

impl From<FunctionError> for lambda_runtime::Diagnostic {
    fn from(FunctionError(err): FunctionError) -> Self {
        lambda_runtime::Diagnostic {
            error_type: format!("HandlerError::{}", err.kind()),
            error_message: err.to_string(),
        }
    }
}

/// The `main` of the `bootstrap` binary every function runs: logging as Lambda's logging config
/// says, the handler picked by the function's `Handler` setting (`_HANDLER`) and the
/// configuration validated before the first event, SDK clients built once and reused by every
/// invocation.
pub async fn run_lambda() -> Result<(), RunError> {
    // Honours AWS_LAMBDA_LOG_FORMAT=JSON and AWS_LAMBDA_LOG_LEVEL (falls back to RUST_LOG).
    lambda_runtime::tracing::init_default_subscriber();
    let env = |name: &str| std::env::var(name).ok();
    let handler = config::handler_from_lookup(env)
        .inspect_err(|e| tracing::error!(error = %e, "bad handler setting"))?;
    if handler == Handler::Authorizer {
        return run_authorizer().await;
    }
    let config = Config::from_lookup(env)
        .inspect_err(|e| tracing::error!(error = %e, "bad configuration"))?;
    let forwarding = forward_config(handler, env)?;
    let sdk = aws_sdk_config().await;
    let dynamodb = aws_sdk_dynamodb::Client::new(&sdk);
    let store = store::DynamoDbStore::new(dynamodb.clone(), config.table_name.clone());
    let api = management::SdkManagementApi::new(&sdk);
    let queue = sqs_queue(&config, &sdk);
    let memberships = membership_store(handler, &config, dynamodb)?;
    if handler == Handler::TokenSweeper {
        // Not a route: EventBridge scheduled events, not WebSocket ones.
        return serve_token_sweeper(Arc::new(store), Arc::new(api), &config).await;
    }
    if handler == Handler::FanoutWorker {
        // Not a route: SQS events, not WebSocket ones.
        return serve_worker(Arc::new(store), memberships, Arc::new(api), queue, &config).await;
    }
    let mut app = App::new(Arc::new(store), Arc::new(api), config.clone());
    if let Some(metrics) = wsstack_handlers::metrics::Metrics::from_lambda_env() {
        app = app.with_metrics(metrics);
    }
    if let Some(m) = memberships {
        app = app.with_memberships(m);
    }
    if let Some(q) = queue {
        app = app.with_queue(Arc::new(q));
    }
    if let Some(f) = forwarding {
        app = app.with_forwarding(Arc::new(bus::SdkEventBus::new(&sdk)), f);
    }
    tracing::debug!(handler = handler.name(), "ready");
    if handler == Handler::PushApi {
        // Not a WebSocket route: HTTP API events (payload format 2.0).
        let push_api = app
            .push_api()
            .inspect_err(|e| tracing::error!(error = %e, "bad configuration"))?;
        return push_api::serve_lambda(push_api).await;
    }
    serve_route(app, handler).await
}

/// The SQS queue this function sends to, if the configuration names one: the fan-out queue in
/// queue mode, or the hand-off queue of an inline fan-out too large for one invocation.
fn sqs_queue(config: &Config, sdk: &aws_config::SdkConfig) -> Option<queue::SqsQueue> {
    let queue_url = match &config.fanout {
        config::Fanout::Queue { queue_url, .. } => Some(queue_url),
        config::Fanout::Inline { handoff_queue_url } => handoff_queue_url.as_ref(),
    };
    queue_url.map(|url| queue::SqsQueue::new(aws_sdk_sqs::Client::new(sdk), url.clone()))
}

/// The rooms table's store, for the handlers the route table lets use it (`None` for the
/// others); a missing `ROOMS_TABLE_NAME` fails the init rather than every request.
fn membership_store(
    handler: Handler,
    config: &Config,
    dynamodb: aws_sdk_dynamodb::Client,
) -> Result<Option<Arc<membership::DynamoDbMembershipStore>>, RunError> {
    if handler
        .table_actions(wsstack_routes::Table::Rooms)
        .is_empty()
    {
        return Ok(None);
    }
    // Synth sets the rooms table on exactly the handlers the route table lets use it.
    let Some(rooms_table) = config.rooms_table_name.clone() else {
        let e = config::ConfigError::Missing {
            name: config::ROOMS_TABLE_NAME,
        };
        tracing::error!(error = %e, "bad configuration");
        return Err(e.into());
    };
    Ok(Some(Arc::new(membership::DynamoDbMembershipStore::new(
        dynamodb,
        rooms_table,
        config.table_name.clone(),
    ))))
}

/// A WebSocket route's Lambda loop: each event handled by `app` against the invocation's
/// deadline, so that a fan-out stops starting posts while there is still time to finish them.
async fn serve_route(app: App, handler: Handler) -> Result<(), RunError> {
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<ApiGatewayWebsocketProxyRequest>| {
            let app = app.clone();
            async move {
                let deadline = fanout::Deadline::from_lambda_deadline(
                    event.context.deadline,
                    management::ATTEMPT_TIMEOUT,
                );
                app.handle_until(handler, event.payload, Some(deadline))
                    .await
                    .map_err(FunctionError)
            }
        },
    ))
    .await
    .map_err(|e| RunError::Runtime(e.to_string()))
}

/// The fan-out worker's Lambda loop (the `fanout-worker` handler): SQS events, each a batch of
/// jobs, answered with the batch's item failures.
async fn serve_worker(
    store: Arc<store::DynamoDbStore>,
    memberships: Option<Arc<membership::DynamoDbMembershipStore>>,
    api: Arc<dyn management::ManagementApi>,
    queue: Option<queue::SqsQueue>,
    config: &Config,
) -> Result<(), RunError> {
    let worker = worker::Worker::from_config(store, memberships, api, queue, config)?;
    tracing::debug!(handler = worker::HANDLER_NAME, "ready");
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<aws_lambda_events::sqs::SqsEvent>| {
            let worker = worker.clone();
            async move {
                let deadline = fanout::Deadline::from_lambda_deadline(
                    event.context.deadline,
                    management::ATTEMPT_TIMEOUT,
                );
                Ok::<_, std::convert::Infallible>(
                    worker.handle_sqs(event.payload, Some(deadline)).await,
                )
            }
        },
    ))
    .await
    .map_err(|e| RunError::Runtime(e.to_string()))
}

/// The token sweeper's Lambda loop (the `token-sweeper` handler): each invocation, an
/// EventBridge scheduled event whose content does not matter, is one sweep bounded by the
/// invocation's deadline.
async fn serve_token_sweeper(
    store: Arc<dyn store::ConnectionStore>,
    api: Arc<dyn management::ManagementApi>,
    config: &Config,
) -> Result<(), RunError> {
    let closer = token_sweep::Closer::from_config(store, api, config)?;
    tracing::debug!(handler = token_sweep::HANDLER_NAME, "ready");
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<serde_json::Value>| {
            let closer = closer.clone();
            async move {
                let deadline = fanout::Deadline::from_lambda_deadline(
                    event.context.deadline,
                    management::ATTEMPT_TIMEOUT,
                );
                let report = closer
                    .sweep(chrono::Utc::now().timestamp(), Some(deadline))
                    .await;
                // The report is the answer (EventBridge ignores it; a manual invoke shows it).
                Ok::<_, std::convert::Infallible>(sweep_answer(&report))
            }
        },
    ))
    .await
    .map_err(|e| RunError::Runtime(e.to_string()))
}

/// A sweep's report as the function's answer.
fn sweep_answer(report: &token_sweep::SweepReport) -> serde_json::Value {
    serde_json::json!({
        "listed": report.listed,
        "closed": report.closed,
        "gone": report.gone,
        "failed": report.failed,
        "unfinished": report.unfinished,
        "listErrors": report.list_errors,
    })
}

/// The bus settings when `EVENT_BUS_NAME` is set; required by the `forward` handler, which
/// fails its init without them instead of every request.
fn forward_config(
    handler: Handler,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<config::ForwardConfig>, config::ConfigError> {
    let forwarding = config::ForwardConfig::from_lookup(env)
        .inspect_err(|e| tracing::error!(error = %e, "bad configuration"))?;
    if forwarding.is_none() && handler == Handler::Forward {
        let e = config::ConfigError::Missing {
            name: config::EVENT_BUS_NAME,
        };
        tracing::error!(error = %e, "bad configuration");
        return Err(e);
    }
    Ok(forwarding)
}

/// The `$connect` authorizer's Lambda loop: settings from the `AUTH_*` variables synth sets,
/// one JWKS cache for the life of the process.
async fn run_authorizer() -> Result<(), RunError> {
    let settings = wsstack_auth::AuthConfig::from_env()
        .inspect_err(|e| tracing::error!(error = %e, "bad configuration"))?;
    let authorizer = Arc::new(settings.http_authorizer().map_err(|e| {
        tracing::error!(error = %e, "bad configuration");
        RunError::AuthSource(e.to_string())
    })?);
    lambda_runtime::run(lambda_runtime::service_fn(
        move |event: lambda_runtime::LambdaEvent<wsstack_auth::AuthorizerRequest>| {
            let authorizer = Arc::clone(&authorizer);
            // Never an error: every failure is a Deny policy (a function error would be a 500,
            // and must not be mistaken for anything but a refusal).
            async move { Ok::<_, std::convert::Infallible>(authorizer.authorize(&event.payload).await) }
        },
    ))
    .await
    .map_err(|e| RunError::Runtime(e.to_string()))
}

/// Why a Lambda binary stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    AuthConfig(#[from] wsstack_auth::config::ConfigError),
    #[error("the authorizer's key source: {0}")]
    AuthSource(String),
    #[error("lambda runtime failed: {0}")]
    Runtime(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Lambda's `errorType` of a function error names the handler's error by its kind, which
    /// alarms and log queries match on; the message is the error's.
    #[test]
    fn a_handler_error_is_reported_by_its_kind() {
        let err = HandlerError::NothingDelivered { failed: 3 };
        let diagnostic = lambda_runtime::Diagnostic::from(FunctionError(err));
        assert_eq!(diagnostic.error_type, "HandlerError::NothingDelivered");
        assert_eq!(
            diagnostic.error_message,
            "the broadcast reached none of its 3 recipients; every post failed"
        );
        let err = HandlerError::MissingField("requestContext.connectionId");
        assert_eq!(
            lambda_runtime::Diagnostic::from(FunctionError(err)).error_type,
            "HandlerError::MissingField"
        );
    }

    #[test]
    fn a_sweep_answers_with_its_counts() {
        let report = token_sweep::SweepReport {
            listed: 5,
            closed: 2,
            gone: 1,
            failed: 1,
            unfinished: 1,
            list_errors: 0,
            ..Default::default()
        };
        assert_eq!(
            sweep_answer(&report),
            serde_json::json!({
                "listed": 5, "closed": 2, "gone": 1, "failed": 1, "unfinished": 1, "listErrors": 0
            })
        );
    }
}
