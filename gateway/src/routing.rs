//! Route selection and the frames API Gateway sends on its own, as API Gateway does them.
//!
//! A message's route is picked by `$request.body.action` (the routes crate's
//! [`ROUTE_SELECTION_FIELD`]): the value, stringified as API Gateway stringifies it, must equal a
//! route key exactly. Anything else (no JSON, no object, no `action`, no match) goes to
//! `$default`; without a `$default` route the client gets the `Forbidden` frame. Binary frames
//! never reach routing: API Gateway refuses them (the session closes with 1003).

use serde::Deserialize;
use serde_json::Value;
use wsstack_routes::{CONNECT, DEFAULT, DISCONNECT, Handler, ROUTE_SELECTION_FIELD, Route};

/// The routes a gateway serves: the API's own table ([`wsstack_routes::ROUTES`]) or, in tests,
/// another one (e.g. without `$default`), plus the app's forwarded actions: two-way routes of
/// the `forward` handler, whose response the client receives as a frame.
#[derive(Debug, Clone)]
pub struct RouteTable {
    routes: Vec<Route>,
    forwarded: Vec<String>,
}

/// The route a message was routed to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Selected<'a> {
    pub key: &'a str,
    pub handler: Handler,
    /// A route with a route response: the handler's response `body` goes to the client.
    pub two_way: bool,
}

impl<'a> From<&'a Route> for Selected<'a> {
    fn from(route: &'a Route) -> Self {
        Selected {
            key: route.key,
            handler: route.handler,
            two_way: false,
        }
    }
}

impl Default for RouteTable {
    fn default() -> Self {
        RouteTable::new(wsstack_routes::ROUTES.to_vec())
    }
}

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> Self {
        RouteTable {
            routes,
            forwarded: Vec::new(),
        }
    }

    /// Adds a two-way route per forwarded action, each behind the `forward` handler (the
    /// handler refuses built-in names; a built-in route keeps its key).
    pub fn with_forwarded(mut self, actions: impl IntoIterator<Item = String>) -> Self {
        self.forwarded.extend(actions);
        self
    }

    fn find(&self, key: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.key == key)
    }

    /// The `$connect` route, if the API has one (without one every handshake is accepted).
    pub fn connect(&self) -> Option<&Route> {
        self.find(CONNECT)
    }

    pub fn disconnect(&self) -> Option<&Route> {
        self.find(DISCONNECT)
    }

    /// The route of a text message.
    pub fn select(&self, text: &str) -> Option<Selected<'_>> {
        let matched = selection_value(text).and_then(|key| {
            // A client cannot name the handshake routes; they belong to the gateway.
            if key == CONNECT || key == DISCONNECT {
                None
            } else {
                self.find(&key).map(Selected::from).or_else(|| {
                    let forwarded = self.forwarded.iter().find(|a| **a == key)?;
                    Some(Selected {
                        key: forwarded,
                        handler: Handler::Forward,
                        two_way: true,
                    })
                })
            }
        });
        matched.or_else(|| self.find(DEFAULT).map(Selected::from))
    }
}

/// The value of `$request.body.action`, stringified; `None` when the body is not a JSON object
/// or has no (or a null) `action`.
fn selection_value(body: &str) -> Option<String> {
    #[derive(Deserialize)]
    struct Selection {
        // Only the selection field is kept; serde skips the rest without building it.
        #[serde(rename = "action")]
        value: Option<Value>,
    }
    debug_assert_eq!(ROUTE_SELECTION_FIELD, "action");
    // serde would also read a struct from a JSON array; only an object has fields.
    if !body
        .trim_start_matches([' ', '\t', '\n', '\r'])
        .starts_with('{')
    {
        return None;
    }
    let selection: Selection = serde_json::from_str(body).ok()?;
    match selection.value? {
        Value::Null => None,
        value => Some(stringify(&value)),
    }
}

/// A selected value as API Gateway stringifies it: "if your JSONPath expression returns an
/// array with two elements, it will be presented as the string `[item1, item2]`"
/// (<https://docs.aws.amazon.com/apigateway/latest/developerguide/websocket-api-develop-routes.html>,
/// Route selection expressions): strings unquoted, elements joined by `, `. Objects are not
/// documented; they keep their JSON text.
fn stringify(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(stringify).collect();
            format!("[{}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

/// The frame API Gateway sends when no route matches and there is no `$default`.
pub fn forbidden_frame(connection_id: &str, request_id: &str) -> String {
    status_frame("Forbidden", connection_id, request_id)
}

/// The frame API Gateway sends when the integration failed.
pub fn internal_error_frame(connection_id: &str, request_id: &str) -> String {
    status_frame("Internal server error", connection_id, request_id)
}

/// The frame API Gateway sends when the integration did not answer within its timeout
/// (<https://repost.aws/questions/QUFXpcneknSgmhseduEh18dw/api-gateway-websocket-api-30s-timeout>).
pub fn timed_out_frame(connection_id: &str, request_id: &str) -> String {
    status_frame("Endpoint request timed out", connection_id, request_id)
}

fn status_frame(message: &str, connection_id: &str, request_id: &str) -> String {
    serde_json::json!({
        "message": message,
        "connectionId": connection_id,
        "requestId": request_id,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    use wsstack_routes::Handler;

    fn key<'a>(table: &'a RouteTable, text: &str) -> Option<&'a str> {
        table.select(text).map(|r| r.key)
    }

    #[test]
    fn selection_is_exact_and_falls_back_to_default() {
        let t = RouteTable::default();
        assert_eq!(
            key(&t, r#"{"action":"sendMessage","data":"x"}"#),
            Some("sendMessage")
        );
        for body in [
            r#"{"action":"sendmessage"}"#,
            r#"{"action":"SendMessage"}"#,
            r#"{"action":" sendMessage"}"#,
            r#"{"action":"$connect"}"#,
            r#"{"action":"$disconnect"}"#,
            r#"{"action":null}"#,
            r#"{"data":"x"}"#,
            r#"["sendMessage"]"#,
            r#""sendMessage""#,
            "sendMessage",
            "",
        ] {
            assert_eq!(key(&t, body), Some("$default"), "{body}");
        }
    }

    #[test]
    fn non_string_actions_are_stringified() {
        let t = RouteTable::new(vec![
            Route {
                key: "7",
                handler: Handler::SendMessage,
            },
            Route {
                key: "true",
                handler: Handler::SendMessage,
            },
            Route {
                key: "[a, b]",
                handler: Handler::SendMessage,
            },
        ]);
        assert_eq!(key(&t, r#"{"action":7}"#), Some("7"));
        assert_eq!(key(&t, r#"{"action":true}"#), Some("true"));
        assert_eq!(key(&t, r#"{"action":["a","b"]}"#), Some("[a, b]"));
        // No $default in this table: no route at all.
        assert_eq!(key(&t, r#"{"action":"x"}"#), None);
        assert!(t.connect().is_none());
    }

    #[test]
    fn forwarded_actions_are_two_way_routes_of_the_forward_handler() {
        let t = RouteTable::default().with_forwarded(["doThing".to_owned()]);
        let selected = t.select(r#"{"action":"doThing","data":1}"#).unwrap();
        assert_eq!(
            selected,
            Selected {
                key: "doThing",
                handler: Handler::Forward,
                two_way: true
            }
        );
        let built_in = t.select(r#"{"action":"join"}"#).unwrap();
        assert!(!built_in.two_way);
        assert_eq!(key(&t, r#"{"action":"dothing"}"#), Some("$default"));
    }

    #[test]
    fn status_frames_have_api_gateways_shape() {
        assert_eq!(
            forbidden_frame("L0SM9cOFvHcCIhw=", "L0SM9dOFvHcFq2g="),
            r#"{"message":"Forbidden","connectionId":"L0SM9cOFvHcCIhw=","requestId":"L0SM9dOFvHcFq2g="}"#
        );
        assert!(
            internal_error_frame("a", "b").starts_with(r#"{"message":"Internal server error""#)
        );
    }
}
