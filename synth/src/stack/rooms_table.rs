//! The DynamoDB table of room memberships: one item per (room, connection), so a room's
//! members are one Query, read page by page; TTL on the member's `expiresAt` as the backstop
//! when neither `$disconnect` nor a 410 cleaned up. Encryption, recovery, deletion protection
//! and removal follow the stage's `[table]`, like the connections table.

use wsstack_routes::rooms_table::{PARTITION_KEY, SORT_KEY, TTL_ATTRIBUTE};

use super::table::stateful_table;
use super::{checks, ids};
use crate::cfn::Template;
use crate::cfn::resources::dynamodb::KeyType;
use crate::stage::Stage;

/// Adds the rooms table.
pub fn add(t: &mut Template, stage: &Stage) {
    let resource = stateful_table(
        stage,
        &[(PARTITION_KEY, KeyType::Hash), (SORT_KEY, KeyType::Range)],
        TTL_ATTRIBUTE,
        &[],
        &[checks::ROOMS_TABLE_CMK, checks::ROOMS_TABLE_PITR_OFF],
    );
    t.add(ids::ROOMS_TABLE, resource);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::test_stage;

    fn table_json(stage_toml: &str) -> serde_json::Value {
        let mut t = Template::new("test");
        add(&mut t, &test_stage(stage_toml));
        serde_json::to_value(&t).expect("serializes")["Resources"][ids::ROOMS_TABLE].clone()
    }

    #[test]
    fn keyed_by_room_then_connection_with_ttl_and_kms() {
        let r = table_json("");
        assert_eq!(r["Type"], "AWS::DynamoDB::Table");
        let keys = &r["Properties"]["KeySchema"];
        assert_eq!(keys[0]["AttributeName"], "room");
        assert_eq!(keys[0]["KeyType"], "HASH");
        assert_eq!(keys[1]["AttributeName"], "connectionId");
        assert_eq!(keys[1]["KeyType"], "RANGE");
        assert_eq!(
            r["Properties"]["TimeToLiveSpecification"]["AttributeName"],
            "expiresAt"
        );
        assert_eq!(r["Properties"]["SSESpecification"]["SSEType"], "KMS");
        assert_eq!(r["DeletionPolicy"], "Delete");
        let skipped: Vec<&str> = r["Metadata"]["checkov"]["skip"]
            .as_array()
            .expect("skips")
            .iter()
            .filter_map(|s| s["id"].as_str())
            .collect();
        assert_eq!(skipped, ["CKV_AWS_119", "CKV_AWS_28"]);
    }

    #[test]
    fn recovery_retention_and_protection_follow_the_stage() {
        let r = table_json(
            "[table]\nretain = true\npoint_in_time_recovery = true\ndeletion_protection = true\n",
        );
        assert_eq!(r["DeletionPolicy"], "Retain");
        assert_eq!(r["UpdateReplacePolicy"], "Retain");
        assert_eq!(
            r["Properties"]["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"],
            true
        );
        assert_eq!(r["Properties"]["DeletionProtectionEnabled"], true);
        let skipped: Vec<&str> = r["Metadata"]["checkov"]["skip"]
            .as_array()
            .expect("skips")
            .iter()
            .filter_map(|s| s["id"].as_str())
            .collect();
        assert_eq!(skipped, ["CKV_AWS_119"]);
    }
}
