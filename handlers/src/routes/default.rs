//! `$default`: whatever matches no route gets `unknown_action` (or `rate_limited`).

use super::prelude::*;

impl App {
    pub(crate) async fn default_route(
        &self,
        connection_id: &str,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        let endpoint = self.callback_endpoint(event)?;
        // A flood of unroutable frames costs an invocation and a post each: it counts.
        if let Err(e) = self.admit(connection_id, event).await? {
            return self.reply_error(&endpoint, connection_id, e).await;
        }
        let action = if event.is_base64_encoded {
            None
        } else {
            domain::requested_action(event.body.as_deref())
        };
        // The built-in actions and the stage's forwarded ones (`FORWARDED_ACTIONS`).
        let forwarded = self.config.forwarded_actions.iter().map(String::as_str);
        let error = InputError::unknown_action(action, forwarded);
        self.reply_error(&endpoint, connection_id, error).await
    }
}
