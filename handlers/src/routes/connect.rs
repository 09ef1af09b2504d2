//! `$connect`: negotiates the subprotocol, reads who is connecting (the authorizer's verified
//! identity, or `?username=`), and stores the connection's record.

use super::prelude::*;

impl App {
    pub(crate) async fn connect(
        &self,
        connection_id: &str,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        // API Gateway sends the headers twice: `multiValueHeaders` keeps every line of a
        // repeated header, `headers` one value per name. Read one of them, not both.
        let headers = if event
            .multi_value_headers
            .contains_key(SEC_WEBSOCKET_PROTOCOL)
        {
            &event.multi_value_headers
        } else {
            &event.headers
        };
        let protocol_headers = headers
            .get_all(SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok());
        let subprotocol = match domain::negotiate_subprotocol(protocol_headers) {
            Ok(p) => p,
            Err(e) => {
                tracing::info!(error = %e, "refusing connection: unsupported subprotocol");
                // The status AWS's own example answers with; API Gateway refuses the handshake
                // with it.
                return Ok(response(400, Some(e.to_string())));
            }
        };
        let identity = match self.identity(event) {
            Ok(i) => i,
            Err(e) => {
                tracing::info!(error = %e, "refusing connection: bad username");
                // A non-2xx answer makes API Gateway refuse the handshake with this status.
                let status = match e {
                    domain::UsernameError::NotVerified(_) => 403,
                    _ => 400,
                };
                return Ok(response(status, Some(e.to_string())));
            }
        };
        let connected_at = event_time(event.request_context.connected_at);
        let ttl = i64::try_from(self.config.connection_ttl.as_secs()).unwrap_or(i64::MAX);
        let record = Connection {
            connection_id: connection_id.to_owned(),
            username: identity.username,
            connected_at: connected_at.timestamp_millis(),
            expires_at: connected_at.timestamp().saturating_add(ttl),
            sub: identity.sub,
            token_expires_at: self.connect_token_expiry(event),
        };
        if let Err(e) = self.store.put(&record).await {
            // Never accept a client that has no record: it could neither be reached by a
            // broadcast nor send (its sender lookup would fail).
            tracing::error!(error = %e, "refusing connection: could not store its record");
            return Ok(response(
                500,
                Some("could not register the connection".into()),
            ));
        }
        tracing::info!(username = %record.username, subprotocol, "connected");
        let mut answer = ok();
        if let Some(p) = subprotocol {
            // API Gateway copies this header into its 101 answer to the client.
            answer.headers.insert(
                SEC_WEBSOCKET_PROTOCOL,
                aws_lambda_events::http::HeaderValue::from_static(p),
            );
        }
        Ok(answer)
    }

    /// Who is connecting. With authentication on, the username and `sub` the authorizer
    /// verified (API Gateway passes its `context` as `requestContext.authorizer`); a
    /// `?username=` in the query string is ignored, so nobody can speak as someone else.
    /// Without it, `?username=` (default `anonymous`).
    pub(crate) fn identity(
        &self,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> Result<domain::Identity, domain::UsernameError> {
        if self.config.authenticated {
            let fields = &event.request_context.authorizer.fields;
            let text = |k: &str| fields.get(k).and_then(|v| v.as_str());
            domain::Identity::verified(text(AUTHORIZER_USERNAME), text(AUTHORIZER_SUB))
        } else {
            domain::validate_username(event.query_string_parameters.first(USERNAME_PARAMETER))
                .map(domain::Identity::anonymous_choice)
        }
    }

    /// With authentication on, when the connection's token expires (the token sweep closes it
    /// then); `None` without authentication. An authorizer that gave no readable expiry is
    /// logged: that connection is never swept.
    pub(crate) fn connect_token_expiry(
        &self,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> Option<i64> {
        if !self.config.authenticated {
            return None;
        }
        let expiry = token_expiry(&event.request_context.authorizer.fields);
        if expiry.is_none() {
            tracing::warn!(
                key = AUTHORIZER_TOKEN_EXPIRES_AT,
                "the authorizer's context has no readable token expiry; the token sweep will not close this connection"
            );
        }
        expiry
    }
}
