//! `join`: makes the sender a member of a room.

use super::prelude::*;

impl App {
    pub(crate) async fn join(
        &self,
        connection_id: &str,
        event: &ApiGatewayWebsocketProxyRequest,
    ) -> Result<ApiGatewayProxyResponse, HandlerError> {
        let endpoint = self.callback_endpoint(event)?;
        // The sender's record and its rate limits in one step (as for sendMessage).
        let sender = match self.admit(connection_id, event).await? {
            Ok(Some(sender)) => sender,
            Ok(None) => {
                return self
                    .reply_error(&endpoint, connection_id, InputError::UnknownSender)
                    .await;
            }
            Err(e) => return self.reply_error(&endpoint, connection_id, e).await,
        };
        let room = match domain::parse_room_request(event.body.as_deref(), event.is_base64_encoded)
        {
            Ok(r) => r,
            Err(e) => return self.reply_error(&endpoint, connection_id, e).await,
        };
        // The membership lives as long as the connection's record may.
        let outcome = self
            .memberships
            .join(
                &room,
                connection_id,
                sender.expires_at,
                MAX_ROOMS_PER_CONNECTION,
            )
            .await?;
        let mut err = match outcome {
            JoinOutcome::Joined | JoinOutcome::AlreadyMember => None,
            JoinOutcome::TooManyRooms => Some(InputError::TooManyRooms),
            JoinOutcome::UnknownConnection => Some(InputError::UnknownSender),
        };
        // A `$disconnect` may have run since the lookup above: it deletes the record, then the
        // memberships it knew of, possibly before this one was written. Once the record is gone
        // no later join can pass the lookup, so reading it again after the write closes the
        // gap: gone now, this membership goes too.
        if err.is_none() && self.store.get(connection_id).await?.is_none() {
            self.memberships.remove_member(&room, connection_id).await?;
            tracing::info!(%room, "the connection left while joining: membership deleted again");
            err = Some(InputError::UnknownSender);
        }
        if let Some(e) = err {
            return self.reply_error(&endpoint, connection_id, e).await;
        }
        tracing::info!(%room, ?outcome, "joined");
        let frame = Frame::Joined {
            room: room.to_string(),
        };
        self.reply(&endpoint, connection_id, Bytes::from(frame.to_json()))
            .await
    }
}
