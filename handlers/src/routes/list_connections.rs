//! `listConnections`: one page of the open connections, to the sender.

use super::prelude::*;

impl App {
    /// Answers with one page of the open connections, the asker included, so a person can
    /// name whom to message. Records past their TTL that DynamoDB has not removed yet are left
    /// out (TTL deletes lazily); a malformed record is logged and left out.
    pub(crate) async fn list_connections(
        &self,
        connection_id: &str,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        let endpoint = self.callback_endpoint(event)?;
        // First: a page is the most expensive read a client can ask for.
        if let Err(e) = self.admit(connection_id, event).await? {
            return self.reply_error(&endpoint, connection_id, e).await;
        }
        let request =
            match domain::parse_list_connections(event.body.as_deref(), event.is_base64_encoded) {
                Ok(r) => r,
                Err(e) => return self.reply_error(&endpoint, connection_id, e).await,
            };
        let page = self
            .store
            .page(request.cursor.as_deref(), request.limit)
            .await?;
        let now = event_time(event.request_context.request_time_epoch).timestamp();
        let items = page
            .records
            .into_iter()
            .filter_map(|record| match record {
                Ok(c) if c.expires_at > now => Some(ConnectionSummary {
                    connected_at: domain::iso8601(event_time(c.connected_at)),
                    connection_id: c.connection_id,
                    username: c.username,
                }),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(error = %e, "leaving a malformed record out of the list");
                    None
                }
            })
            .collect();
        let frame = Frame::Connections {
            items,
            next: page.next,
            you: connection_id.to_owned(),
        };
        match frame.to_wire() {
            Ok(json) => {
                self.reply(&endpoint, connection_id, Bytes::from(json))
                    .await
            }
            Err(e) => self.reply_error(&endpoint, connection_id, e).await,
        }
    }
}
