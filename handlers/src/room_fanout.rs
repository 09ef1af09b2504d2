//! Delivery of one frame to a room's members, page by page.
//!
//! The members are read one Query page at a time (the cursor is the last connection ID of the
//! page, so a fan-out job can say "room R, the page after C") and each page is posted with
//! bounded concurrency. A member that answers 410 Gone is forgotten everywhere: its other
//! memberships, this one (even when its record, which lists its rooms, is gone already), and
//! its record; the fan-out goes on.

use bytes::Bytes;
use futures::StreamExt;

use crate::fanout::FanOutReport;
use crate::management::{ManagementApi, ManagementError};
use crate::membership::MembershipStore;
use crate::rooms::RoomName;
use crate::store::ConnectionStore;

/// Where a room's fan-out stands: which room, and after which member to go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoomCursor {
    pub room: RoomName,
    /// `None`: from the first member.
    pub after: Option<String>,
}

/// The stores and the API a room fan-out uses.
#[derive(Clone, Copy)]
pub struct RoomDelivery<'a> {
    pub store: &'a dyn ConnectionStore,
    pub memberships: &'a dyn MembershipStore,
    pub api: &'a dyn ManagementApi,
    pub endpoint: &'a str,
    pub concurrency: usize,
}

impl RoomDelivery<'_> {
    /// Posts `frame` to every member of `room`, page after page, and tallies the outcome.
    pub async fn send_to_room(&self, room: &RoomName, frame: Bytes) -> FanOutReport {
        let mut report = FanOutReport::default();
        let mut cursor = Some(RoomCursor {
            room: room.clone(),
            after: None,
        });
        while let Some(at) = cursor {
            cursor = self.send_page(&at, frame.clone(), &mut report).await;
            if report.list_error.is_some() {
                break;
            }
        }
        report
    }

    /// Posts `frame` to one page of members, from `at`; returns where the next page starts.
    pub async fn send_page(
        &self,
        at: &RoomCursor,
        frame: Bytes,
        report: &mut FanOutReport,
    ) -> Option<RoomCursor> {
        let page = match self
            .memberships
            .members_page(&at.room, at.after.as_deref())
            .await
        {
            Ok(page) => page,
            Err(e) => {
                tracing::error!(room = %at.room, error = %e, "listing the room's members failed");
                report.list_error = Some(e);
                return None;
            }
        };
        let frame = &frame;
        let outcomes: Vec<Result<(), ManagementError>> =
            futures::stream::iter(page.connection_ids)
                .map(|id| async move {
                    let result = self
                        .api
                        .post_to_connection(self.endpoint, &id, frame.clone())
                        .await;
                    if let Err(ManagementError::Gone) = result {
                        self.forget_gone(&at.room, &id).await;
                    } else if let Err(e) = &result {
                        tracing::warn!(connection_id = id, room = %at.room, error = %e, "delivery failed");
                    }
                    result
                })
                .buffer_unordered(self.concurrency.max(1))
                .collect()
                .await;
        for outcome in outcomes {
            match outcome {
                Ok(()) => report.delivered += 1,
                Err(ManagementError::Gone) => report.gone += 1,
                Err(_) => report.failed += 1,
            }
        }
        page.next.map(|after| RoomCursor {
            room: at.room.clone(),
            after: Some(after),
        })
    }

    /// Cleans up after a member that is gone: its record and the memberships it listed (see
    /// [`crate::fanout::forget_gone`], which keeps a record younger than the handshake), and
    /// this membership even when the record, which lists the rooms, is gone already. Each step
    /// is logged when it fails and never stops the fan-out: the TTL removes whatever stays.
    async fn forget_gone(&self, room: &RoomName, connection_id: &str) {
        if !crate::fanout::forget_gone(self.store, Some(self.memberships), connection_id).await {
            return;
        }
        if let Err(e) = self.memberships.remove_member(room, connection_id).await {
            tracing::warn!(connection_id, %room, error = %e, "could not delete a gone member");
        }
    }
}
