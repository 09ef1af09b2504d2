//! `leave`: ends the sender's membership of a room.

use super::prelude::*;

impl App {
    pub(crate) async fn leave(
        &self,
        connection_id: &str,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        let endpoint = self.callback_endpoint(event)?;
        if let Err(e) = self.admit(connection_id, event).await? {
            return self.reply_error(&endpoint, connection_id, e).await;
        }
        let room = match domain::parse_room_request(event.body.as_deref(), event.is_base64_encoded)
        {
            Ok(r) => r,
            Err(e) => return self.reply_error(&endpoint, connection_id, e).await,
        };
        if !self.memberships.leave(&room, connection_id).await? {
            let err = InputError::NotAMember(room.to_string());
            return self.reply_error(&endpoint, connection_id, err).await;
        }
        tracing::info!(%room, "left");
        let frame = Frame::Left {
            room: room.to_string(),
        };
        self.reply(&endpoint, connection_id, Bytes::from(frame.to_json()))
            .await
    }
}
