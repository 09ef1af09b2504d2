//! `$disconnect`: deletes the connection's record, then the memberships it listed.

use super::prelude::*;

impl App {
    pub(crate) async fn disconnect(
        &self,
        connection_id: &str,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        // The record first, in one step that answers with the rooms it listed: once it is gone
        // no join can add a room (a join needs the record, and checks it again after writing
        // its membership), so the rooms it listed are all the memberships there are. If
        // deleting those fails, the memberships' TTL is the backstop.
        let listed = match self.store.remove(connection_id, None).await? {
            store::Removal::Removed { rooms } => rooms,
            store::Removal::Absent | store::Removal::Young => Vec::new(),
        };
        let rooms = self
            .memberships
            .forget_listed(connection_id, &listed)
            .await?;
        tracing::info!(
            rooms,
            status_code = event.request_context.disconnect_status_code,
            reason = event
                .request_context
                .disconnect_reason
                .as_deref()
                .unwrap_or(""),
            "disconnected"
        );
        Ok(ok())
    }
}
