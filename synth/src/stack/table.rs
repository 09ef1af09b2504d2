//! The DynamoDB table of live connections.

use wsstack_routes::table::{PARTITION_KEY, TTL_ATTRIBUTE};

use super::{checks, ids, stateful_removal_policy};
use crate::cfn::resources::dynamodb::{
    AttributeDefinition, AttributeType, BillingMode as CfnBillingMode, KeySchema, KeyType,
    PointInTimeRecoverySpecification, ProvisionedThroughput, SseSpecification, SseType, Table,
    TimeToLiveSpecification,
};
use crate::cfn::{Resource, Template};
use crate::stage::{BillingMode, Stage};

/// Adds the connections table: keyed by connection ID, TTL on `expiresAt`, KMS encryption, and
/// billing, recovery and removal as the stage says.
pub fn add(t: &mut Template, stage: &Stage) {
    let settings = &stage.table;
    let table = Table {
        attribute_definitions: vec![AttributeDefinition {
            attribute_name: PARTITION_KEY.to_owned(),
            attribute_type: AttributeType::S,
        }],
        key_schema: vec![KeySchema {
            attribute_name: PARTITION_KEY.to_owned(),
            key_type: KeyType::Hash,
        }],
        billing_mode: match settings.billing_mode {
            BillingMode::PayPerRequest => CfnBillingMode::PayPerRequest,
            BillingMode::Provisioned => CfnBillingMode::Provisioned,
        },
        provisioned_throughput: settings
            .capacity
            .map(|(read, write)| ProvisionedThroughput {
                read_capacity_units: read,
                write_capacity_units: write,
            }),
        time_to_live_specification: Some(TimeToLiveSpecification {
            attribute_name: TTL_ATTRIBUTE.to_owned(),
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
    };
    let mut skips = vec![checks::TABLE_CMK];
    if !settings.point_in_time_recovery {
        skips.push(checks::TABLE_PITR_OFF);
    }
    let resource = Resource::new(table).removal_policy(stateful_removal_policy(stage));
    t.add(ids::TABLE, checks::skip(resource, &skips));
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
    }
}
