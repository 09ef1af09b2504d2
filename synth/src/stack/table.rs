//! The DynamoDB table of live connections, with its user index.

use wsstack_routes::table::{
    PARTITION_KEY, TTL_ATTRIBUTE, USER_ID_ATTRIBUTE, USER_INDEX, USER_INDEX_ATTRIBUTES,
};

use super::{checks, ids, stateful_removal_policy};
use crate::cfn::resources::dynamodb::{
    AttributeDefinition, AttributeType, BillingMode as CfnBillingMode, GlobalSecondaryIndex,
    KeySchema, KeyType, PointInTimeRecoverySpecification, Projection, ProjectionType,
    ProvisionedThroughput, SseSpecification, SseType, Table, TimeToLiveSpecification,
};
use crate::cfn::{Resource, Template};
use crate::stage::{BillingMode, Stage};

/// A global secondary index of a table: its name, its partition key (a string attribute) and
/// the non-key attributes it carries (`INCLUDE`; none: `KEYS_ONLY`).
#[derive(Debug, Clone, Copy)]
pub struct Index<'a> {
    pub name: &'a str,
    pub partition_key: &'a str,
    pub attributes: &'a [&'a str],
}

/// The connections table's user index: every connection of one user (`userId`), with what
/// `list_by_user` reads and filters on. Adding it to a live table is an in-place update, one
/// GSI per stack update (<https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-resource-dynamodb-table.html>,
/// `GlobalSecondaryIndexes`: "Update requires: No interruption").
pub const USER_INDEX_SPEC: Index<'static> = Index {
    name: USER_INDEX,
    partition_key: USER_ID_ATTRIBUTE,
    attributes: &USER_INDEX_ATTRIBUTES,
};

/// Adds the connections table: keyed by connection ID, TTL on `expiresAt`, KMS encryption,
/// the user index, and billing, recovery and removal as the stage says.
pub fn add(t: &mut Template, stage: &Stage) {
    let resource = stateful_table(
        stage,
        &[(PARTITION_KEY, KeyType::Hash)],
        TTL_ATTRIBUTE,
        &[USER_INDEX_SPEC],
        &[checks::TABLE_CMK, checks::TABLE_PITR_OFF],
    );
    t.add(ids::TABLE, resource);
}

/// A table of the stack keyed by `keys` (string attributes), TTL on `ttl_attribute`, KMS
/// encryption, and billing, recovery, deletion protection and removal as the stage's `[table]`
/// says. `skips` are the table's checkov suppressions: the customer managed key one, then the
/// point-in-time recovery one, which applies only where the stage turns recovery off.
pub(super) fn stateful_table(
    stage: &Stage,
    keys: &[(&str, KeyType)],
    ttl_attribute: &str,
    indexes: &[Index<'_>],
    skips: &[checks::Skip; 2],
) -> Resource {
    let settings = &stage.table;
    let capacity = settings
        .capacity
        .map(|(read, write)| ProvisionedThroughput {
            read_capacity_units: read,
            write_capacity_units: write,
        });
    let table = Table {
        attribute_definitions: attribute_definitions(keys, indexes),
        key_schema: keys
            .iter()
            .map(|(name, key_type)| KeySchema {
                attribute_name: (*name).to_owned(),
                key_type: *key_type,
            })
            .collect(),
        billing_mode: match settings.billing_mode {
            BillingMode::PayPerRequest => CfnBillingMode::PayPerRequest,
            BillingMode::Provisioned => CfnBillingMode::Provisioned,
        },
        provisioned_throughput: capacity.clone(),
        time_to_live_specification: Some(TimeToLiveSpecification {
            attribute_name: ttl_attribute.to_owned(),
            enabled: true,
        }),
        // KMS encryption with the AWS managed key (`SSEEnabled: false` would mean an AWS owned key).
        sse_specification: Some(SseSpecification {
            sse_enabled: true,
            sse_type: Some(SseType::Kms),
        }),
        point_in_time_recovery_specification: Some(PointInTimeRecoverySpecification {
            point_in_time_recovery_enabled: settings.point_in_time_recovery,
        }),
        deletion_protection_enabled: settings.deletion_protection.then_some(true),
        global_secondary_indexes: indexes
            .iter()
            .map(|index| global_secondary_index(index, capacity.clone()))
            .collect(),
    };
    let [cmk, pitr_off] = *skips;
    let mut applied = vec![cmk];
    if !settings.point_in_time_recovery {
        applied.push(pitr_off);
    }
    let resource = Resource::new(table).removal_policy(stateful_removal_policy(stage));
    checks::skip(resource, &applied)
}

/// Every key attribute, of the table and of its indexes, once, as a string.
fn attribute_definitions(
    keys: &[(&str, KeyType)],
    indexes: &[Index<'_>],
) -> Vec<AttributeDefinition> {
    let mut key_attributes: Vec<&str> = keys.iter().map(|(name, _)| *name).collect();
    for index in indexes {
        if !key_attributes.contains(&index.partition_key) {
            key_attributes.push(index.partition_key);
        }
    }
    key_attributes
        .iter()
        .map(|name| AttributeDefinition {
            attribute_name: (*name).to_owned(),
            attribute_type: AttributeType::S,
        })
        .collect()
}

/// An index on one partition key, projecting the keys and `index.attributes`. A provisioned
/// table's index needs capacity of its own: the table's (`capacity`).
fn global_secondary_index(
    index: &Index<'_>,
    capacity: Option<ProvisionedThroughput>,
) -> GlobalSecondaryIndex {
    GlobalSecondaryIndex {
        index_name: index.name.to_owned(),
        key_schema: vec![KeySchema {
            attribute_name: index.partition_key.to_owned(),
            key_type: KeyType::Hash,
        }],
        projection: Projection {
            projection_type: if index.attributes.is_empty() {
                ProjectionType::KeysOnly
            } else {
                ProjectionType::Include
            },
            non_key_attributes: index.attributes.iter().map(|a| (*a).to_owned()).collect(),
        },
        provisioned_throughput: capacity,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::test_stage;

    fn table_json(stage_toml: &str) -> serde_json::Value {
        let mut t = Template::new("test");
        add(&mut t, &test_stage(stage_toml));
        serde_json::to_value(&t).expect("serializes")["Resources"][ids::TABLE].clone()
    }

    #[test]
    fn keyed_by_connection_id_with_ttl_and_kms() {
        let r = table_json("");
        assert_eq!(r["Type"], "AWS::DynamoDB::Table");
        assert_eq!(
            r["Properties"]["KeySchema"][0]["AttributeName"],
            PARTITION_KEY
        );
        assert_eq!(
            r["Properties"]["TimeToLiveSpecification"]["AttributeName"],
            TTL_ATTRIBUTE
        );
        assert_eq!(r["Properties"]["SSESpecification"]["SSEType"], "KMS");
        assert_eq!(r["DeletionPolicy"], "Delete");
    }

    #[test]
    fn retain_and_provisioned_capacity_follow_the_stage() {
        let r = table_json(
            "[table]\nretain = true\nbilling_mode = \"PROVISIONED\"\nread_capacity = 3\nwrite_capacity = 4\n",
        );
        assert_eq!(r["DeletionPolicy"], "Retain");
        assert_eq!(r["UpdateReplacePolicy"], "Retain");
        assert_eq!(r["Properties"]["BillingMode"], "PROVISIONED");
        assert_eq!(
            r["Properties"]["ProvisionedThroughput"]["ReadCapacityUnits"],
            3
        );
        assert_eq!(
            r["Properties"]["GlobalSecondaryIndexes"][0]["ProvisionedThroughput"]["WriteCapacityUnits"],
            4
        );
    }

    /// Issue 17: the user index, keyed by `userId`, carries what `list_by_user` reads and
    /// filters on; its key is a declared attribute, the table's key is unchanged.
    #[test]
    fn the_user_index_is_keyed_by_user_and_carries_what_a_query_reads() {
        let r = table_json("");
        let p = &r["Properties"];
        assert_eq!(
            p["KeySchema"],
            serde_json::json!([{"AttributeName": PARTITION_KEY, "KeyType": "HASH"}])
        );
        assert_eq!(
            p["AttributeDefinitions"],
            serde_json::json!([
                {"AttributeName": PARTITION_KEY, "AttributeType": "S"},
                {"AttributeName": USER_ID_ATTRIBUTE, "AttributeType": "S"}
            ])
        );
        let gsis = p["GlobalSecondaryIndexes"].as_array().expect("indexes");
        assert_eq!(gsis.len(), 1);
        let gsi = &gsis[0];
        assert_eq!(gsi["IndexName"], USER_INDEX);
        assert_eq!(
            gsi["KeySchema"],
            serde_json::json!([{"AttributeName": USER_ID_ATTRIBUTE, "KeyType": "HASH"}])
        );
        assert_eq!(gsi["Projection"]["ProjectionType"], "INCLUDE");
        assert_eq!(
            gsi["Projection"]["NonKeyAttributes"],
            serde_json::json!(USER_INDEX_ATTRIBUTES)
        );
        assert!(gsi.get("ProvisionedThroughput").is_none());
    }
}
