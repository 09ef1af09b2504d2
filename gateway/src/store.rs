//! The connection store behind the handlers: the embedded in-memory one, or DynamoDB (the same
//! code as in Lambda) against dynalite, DynamoDB Local or AWS.

use std::sync::Arc;

use wsstack_handlers::audience::AudienceSource;
use wsstack_handlers::membership::{
    DynamoDbMembershipStore, MembershipStore, MemoryMembershipStore,
};
use wsstack_handlers::rooms::RoomName;
use wsstack_handlers::store::{ConnectionStore, DynamoDbStore, MemoryStore, StoreError};

/// Which store to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreOptions {
    Memory,
    DynamoDb {
        /// `None`: AWS, with the usual credentials and region; `Some(url)`: a local server,
        /// with dummy credentials.
        endpoint: Option<String>,
        table: String,
        /// The rooms table, next to the connections table.
        rooms_table: String,
    },
}

/// Why the store could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum StoreSetupError {
    #[error(
        "cannot use table {table:?} at {endpoint}: {source} (is the server running and the table created?)"
    )]
    Unreachable {
        table: String,
        endpoint: String,
        #[source]
        source: StoreError,
    },
}

/// Opens the store; a DynamoDB table is probed with one GetItem so a wrong endpoint or a missing
/// table fails at start, not at the first client.
pub async fn open_store(
    options: &StoreOptions,
) -> Result<Arc<dyn ConnectionStore>, StoreSetupError> {
    Ok(open_store_and_audience(options).await?.0)
}

/// [`open_store`], and the same store as the audience source queue-mode fan-out lists
/// connections from (one store: the memory store's records are the audience).
pub async fn open_store_and_audience(
    options: &StoreOptions,
) -> Result<(Arc<dyn ConnectionStore>, Arc<dyn AudienceSource>), StoreSetupError> {
    match options {
        StoreOptions::Memory => {
            let store = Arc::new(MemoryStore::new());
            Ok((store.clone(), store))
        }
        StoreOptions::DynamoDb {
            endpoint, table, ..
        } => {
            let store =
                DynamoDbStore::new(dynamodb_client(endpoint.as_deref()).await, table.clone());
            store
                .get("wsstack-local-startup-probe")
                .await
                .map_err(|source| StoreSetupError::Unreachable {
                    table: table.clone(),
                    endpoint: endpoint.clone().unwrap_or_else(|| "AWS".to_owned()),
                    source,
                })?;
            let store = Arc::new(store);
            Ok((store.clone(), store))
        }
    }
}

async fn dynamodb_client(endpoint: Option<&str>) -> aws_sdk_dynamodb::Client {
    let sdk = match endpoint {
        Some(url) => wsstack_handlers::local_sdk_config(Some(url)).await,
        None => wsstack_handlers::aws_sdk_config().await,
    };
    aws_sdk_dynamodb::Client::new(&sdk)
}

/// Opens the room memberships store that goes with [`open_store`]'s: in memory, or the rooms
/// table (probed with one GetItem, so a missing table fails at start and is named).
pub async fn open_memberships(
    options: &StoreOptions,
) -> Result<Arc<dyn MembershipStore>, StoreSetupError> {
    match options {
        StoreOptions::Memory => Ok(Arc::new(MemoryMembershipStore::new())),
        StoreOptions::DynamoDb {
            endpoint,
            table,
            rooms_table,
        } => {
            let store = DynamoDbMembershipStore::new(
                dynamodb_client(endpoint.as_deref()).await,
                rooms_table.clone(),
                table.clone(),
            );
            let probe = RoomName::parse("wsstack-local-startup-probe").map_err(|e| {
                StoreSetupError::Unreachable {
                    table: rooms_table.clone(),
                    endpoint: "(probe)".to_owned(),
                    source: StoreError::Backend(e.to_string()),
                }
            })?;
            store
                .is_member(&probe, "wsstack-local-startup-probe")
                .await
                .map_err(|source| StoreSetupError::Unreachable {
                    table: rooms_table.clone(),
                    endpoint: endpoint.clone().unwrap_or_else(|| "AWS".to_owned()),
                    source,
                })?;
            Ok(Arc::new(store))
        }
    }
}
