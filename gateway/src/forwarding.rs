//! Forwarded actions locally (issue 17 item 1): the `forward` handler behind a two-way route
//! per action, and a local bus in place of EventBridge. Each event goes to `--backend-url` as
//! the JSON envelope an EventBridge rule delivers (POST, `application/json`), or to the log
//! when no backend is set.
//!
//! The actions are the app manifest's (`wsstack.toml`, read with `wsstack_stage::manifest`, as
//! synth reads it), plus any `--forward-action NAME[=MAX_DATA_BYTES]` given to try one out.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use chrono::{SecondsFormat, Utc};
use http_body_util::Full;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use wsstack_handlers::bus::{BusEntry, BusError, EntryResult, EventBus, MAX_ENTRIES};
use wsstack_handlers::config::{ForwardConfig, check_forwarded_actions};
use wsstack_routes::bridge::{DEFAULT_MAX_DATA_BYTES, ForwardedAction, event_source};

/// The bus name the local `forward` handler is configured with.
pub const LOCAL_BUS: &str = "wsstack-local";
/// The `account` and `region` of the local envelopes.
pub const LOCAL_ACCOUNT: &str = "000000000000";
pub const LOCAL_REGION: &str = "us-east-1";
/// How long a post to the backend may take before it counts as a transient failure.
pub const POST_TIMEOUT: Duration = Duration::from_secs(2);

/// The forwarded actions and where their events go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalForwarding {
    pub actions: Vec<ForwardedAction>,
    /// Where each event's envelope is posted; `None`: logged only.
    pub backend_url: Option<BackendUrl>,
}

impl LocalForwarding {
    /// The `forward` handler's configuration for `stage`.
    pub fn config(&self, stage: &str) -> ForwardConfig {
        ForwardConfig {
            event_bus_name: LOCAL_BUS.to_owned(),
            event_source: event_source(stage),
            actions: self.actions.clone(),
        }
    }

    /// The actions' route keys.
    pub fn route_keys(&self) -> impl Iterator<Item = String> + '_ {
        self.actions.iter().map(|a| a.name.clone())
    }
}

/// The start banner's line: the forwarded actions and where their events go.
pub fn banner_line(forwarding: &LocalForwarding) -> String {
    let names: Vec<&str> = forwarding.actions.iter().map(|a| a.name.as_str()).collect();
    let to = match &forwarding.backend_url {
        Some(url) => format!("POSTed to {}", url.as_str()),
        None => "logged (no --backend-url)".to_owned(),
    };
    format!("  Forwarded     {} -> {to}\n", names.join(", "))
}

/// Parses `--forward-action` values, `NAME` or `NAME=MAX_DATA_BYTES`, with the handler's
/// rules for a list of actions.
pub fn parse_actions(values: &[String]) -> Result<Vec<ForwardedAction>, String> {
    let actions = values
        .iter()
        .map(|v| match v.split_once('=') {
            None => Ok(ForwardedAction {
                name: v.clone(),
                max_data_bytes: DEFAULT_MAX_DATA_BYTES,
            }),
            Some((name, max)) => match max.parse::<u32>() {
                Ok(max_data_bytes) => Ok(ForwardedAction {
                    name: name.to_owned(),
                    max_data_bytes,
                }),
                Err(_) => Err(format!(
                    "--forward-action {v:?}: MAX_DATA_BYTES must be an integer"
                )),
            },
        })
        .collect::<Result<Vec<_>, _>>()?;
    check_forwarded_actions(&actions).map_err(|e| format!("--forward-action: {e}"))?;
    Ok(actions)
}

/// A backend's `http://host[:port]/path` (a local process: no TLS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendUrl {
    uri: http::Uri,
    /// `host:port`, what to connect to.
    address: String,
}

impl BackendUrl {
    pub fn parse(text: &str) -> Result<BackendUrl, String> {
        let bad = || format!("--backend-url must be an http://host[:port]/path URL, got {text:?}");
        let uri: http::Uri = text.parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("http") {
            return Err(bad());
        }
        let authority = uri.authority().ok_or_else(bad)?;
        let address = format!(
            "{}:{}",
            authority.host(),
            authority.port_u16().unwrap_or(80)
        );
        Ok(BackendUrl { uri, address })
    }

    pub fn as_str(&self) -> String {
        self.uri.to_string()
    }
}

/// The local stand-in for EventBridge.
#[derive(Debug, Clone)]
pub struct LocalBus {
    backend: Option<BackendUrl>,
}

impl LocalBus {
    pub fn new(backend: Option<BackendUrl>) -> Self {
        LocalBus { backend }
    }

    /// Delivers one envelope; what the bus answers for its entry.
    async fn deliver(&self, event_id: String, envelope: &Value) -> Result<EntryResult, BusError> {
        let Some(backend) = &self.backend else {
            tracing::info!(event = %envelope, "forwarded action (no --backend-url: logged only)");
            return Ok(EntryResult::Put { event_id });
        };
        let status = tokio::time::timeout(POST_TIMEOUT, post_json(backend, envelope.to_string()))
            .await
            .map_err(|_| {
                transient(format!(
                    "{} did not answer within {POST_TIMEOUT:?}",
                    backend.as_str()
                ))
            })?
            .map_err(transient)?;
        Ok(match status {
            200..=299 => EntryResult::Put { event_id },
            // As EventBridge's retryable entry codes: the handler tries again.
            429 => failed("ThrottlingException", status),
            500..=599 => failed("InternalFailure", status),
            _ => failed("BackendRefused", status),
        })
    }
}

fn transient(reason: String) -> BusError {
    BusError::Call {
        reason,
        retryable: true,
    }
}

fn failed(code: &str, status: u16) -> EntryResult {
    EntryResult::Failed {
        code: code.to_owned(),
        message: format!("the backend answered HTTP {status}"),
    }
}

/// The event as an EventBridge rule delivers it
/// (<https://docs.aws.amazon.com/eventbridge/latest/userguide/eb-events-structure.html>).
pub fn envelope(entry: &BusEntry, event_id: &str, time: chrono::DateTime<Utc>) -> Value {
    let detail: Value = serde_json::from_str(&entry.detail).unwrap_or(Value::Null);
    json!({
        "version": "0",
        "id": event_id,
        "detail-type": entry.detail_type,
        "source": entry.source,
        "account": LOCAL_ACCOUNT,
        "time": time.to_rfc3339_opts(SecondsFormat::Secs, true),
        "region": LOCAL_REGION,
        "resources": [],
        "detail": detail,
    })
}

#[async_trait]
impl EventBus for LocalBus {
    async fn put(&self, entries: &[BusEntry]) -> Result<Vec<EntryResult>, BusError> {
        if entries.is_empty() || entries.len() > MAX_ENTRIES {
            return Err(BusError::EntryCount(entries.len()));
        }
        let mut results = Vec::with_capacity(entries.len());
        for entry in entries {
            if serde_json::from_str::<serde_json::Map<String, Value>>(&entry.detail).is_err() {
                results.push(EntryResult::Failed {
                    code: "MalformedDetail".into(),
                    message: "Detail is malformed.".into(),
                });
                continue;
            }
            let event_id = uuid::Uuid::new_v4().to_string();
            let envelope = envelope(entry, &event_id, Utc::now());
            results.push(self.deliver(event_id, &envelope).await?);
        }
        Ok(results)
    }
}

/// POSTs `body` as JSON to `url`; the answer's status.
async fn post_json(url: &BackendUrl, body: String) -> Result<u16, String> {
    let target = url.as_str();
    let stream = tokio::net::TcpStream::connect(&url.address)
        .await
        .map_err(|e| format!("cannot connect to {target}: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("{target}: {e}"))?;
    // Drives the connection until the answer is in; ends with it.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let path = url
        .uri
        .path_and_query()
        .map_or("/", |p| p.as_str())
        .to_owned();
    let request = http::Request::post(path)
        .header(http::header::HOST, url.address.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| format!("{target}: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("{target}: {e}"))?;
    Ok(response.status().as_u16())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn actions_are_names_with_an_optional_limit_under_the_handlers_rules() {
        let parsed = parse_actions(&["doThing".into(), "big=131072".into()]).unwrap();
        assert_eq!(parsed[0].max_data_bytes, DEFAULT_MAX_DATA_BYTES);
        assert_eq!(parsed[1].max_data_bytes, 131_072);
        for (bad, says) in [
            (vec!["x=lots"], "integer"),
            (vec!["x=0"], "maxDataBytes"),
            (vec!["sendMessage"], "built-in"),
            (vec!["a", "a"], "twice"),
            (vec!["a b"], "printable"),
        ] {
            let values: Vec<String> = bad.iter().map(|s| (*s).to_owned()).collect();
            let err = parse_actions(&values).unwrap_err();
            assert!(
                err.contains("--forward-action") && err.contains(says),
                "{err}"
            );
        }
    }

    #[test]
    fn the_banner_names_the_actions_and_their_destination() {
        let mut f = LocalForwarding {
            actions: parse_actions(&["doThing".into(), "ping".into()]).unwrap(),
            backend_url: None,
        };
        assert_eq!(
            banner_line(&f),
            "  Forwarded     doThing, ping -> logged (no --backend-url)\n"
        );
        f.backend_url = BackendUrl::parse("http://127.0.0.1:9000/e").ok();
        assert_eq!(
            banner_line(&f),
            "  Forwarded     doThing, ping -> POSTed to http://127.0.0.1:9000/e\n"
        );
    }

    #[test]
    fn backend_urls_are_plain_http() {
        let url = BackendUrl::parse("http://127.0.0.1:9000/events?x=1").unwrap();
        assert_eq!(url.address, "127.0.0.1:9000");
        assert_eq!(
            BackendUrl::parse("http://backend/e").unwrap().address,
            "backend:80"
        );
        for bad in ["https://x/e", "127.0.0.1:9000", "ftp://x", ""] {
            assert!(BackendUrl::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_envelope_is_eventbridges() {
        let entry = BusEntry {
            event_bus_name: LOCAL_BUS.into(),
            source: "wsstack.dev".into(),
            detail_type: "doThing".into(),
            detail: r#"{"data":1}"#.into(),
        };
        let at = chrono::DateTime::from_timestamp(1_795_703_229, 0).expect("time");
        assert_eq!(
            envelope(&entry, "ev-1", at),
            json!({
                "version": "0", "id": "ev-1", "detail-type": "doThing", "source": "wsstack.dev",
                "account": LOCAL_ACCOUNT, "time": "2026-11-26T14:27:09Z", "region": LOCAL_REGION,
                "resources": [], "detail": {"data": 1}
            })
        );
    }

    #[tokio::test]
    async fn without_a_backend_events_are_logged_and_accepted() {
        let bus = LocalBus::new(None);
        let entry = BusEntry {
            event_bus_name: LOCAL_BUS.into(),
            source: "wsstack.dev".into(),
            detail_type: "doThing".into(),
            detail: "{}".into(),
        };
        let bad = BusEntry {
            detail: "[]".into(),
            ..entry.clone()
        };
        let results = bus.put(&[entry, bad]).await.unwrap();
        assert!(
            matches!(&results[0], EntryResult::Put { .. }),
            "{results:?}"
        );
        assert!(
            matches!(&results[1], EntryResult::Failed { code, .. } if code == "MalformedDetail")
        );
    }

    #[tokio::test]
    async fn an_unreachable_backend_is_a_transient_failure() {
        // A port nobody listens on: bind one, then free it.
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            l.local_addr().expect("addr").port()
        };
        let url = BackendUrl::parse(&format!("http://127.0.0.1:{port}/e")).unwrap();
        let entry = BusEntry {
            event_bus_name: LOCAL_BUS.into(),
            source: "wsstack.dev".into(),
            detail_type: "doThing".into(),
            detail: "{}".into(),
        };
        let err = LocalBus::new(Some(url)).put(&[entry]).await.unwrap_err();
        assert!(err.retryable(), "{err}");
    }
}
