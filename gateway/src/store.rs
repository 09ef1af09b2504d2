//! The connection store behind the handlers: the embedded in-memory one, or DynamoDB (the same
//! code as in Lambda) against dynalite, DynamoDB Local or AWS.

use std::sync::Arc;

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
    match options {
        StoreOptions::Memory => Ok(Arc::new(MemoryStore::new())),
        StoreOptions::DynamoDb { endpoint, table } => {
            let sdk = match endpoint {
                Some(url) => wsstack_handlers::local_sdk_config(Some(url)).await,
                None => wsstack_handlers::aws_sdk_config().await,
            };
            let store = DynamoDbStore::new(aws_sdk_dynamodb::Client::new(&sdk), table.clone());
            store
                .get("wsstack-local-startup-probe")
                .await
                .map_err(|source| StoreSetupError::Unreachable {
                    table: table.clone(),
                    endpoint: endpoint.clone().unwrap_or_else(|| "AWS".to_owned()),
                    source,
                })?;
            Ok(Arc::new(store))
        }
    }
}
