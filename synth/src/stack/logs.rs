//! Log groups: the handlers' and the stage's access logs share their settings.

use super::{checks, stateful_removal_policy};
use crate::cfn::Resource;
use crate::cfn::resources::logs::LogGroup;
use crate::stage::Stage;

/// A log group with the given retention and the stage's removal policy.
pub fn log_group(stage: &Stage, retention_days: u32) -> Resource {
    checks::skip(
        Resource::new(LogGroup {
            log_group_name: None,
            retention_in_days: Some(retention_days),
            kms_key_id: None,
        })
        .removal_policy(stateful_removal_policy(stage)),
        &[checks::LOG_GROUP_CMK],
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::test_stage;

    #[test]
    fn retention_as_given_and_kept_where_the_stage_retains() {
        let v = serde_json::to_value(log_group(&test_stage("[table]\nretain = true\n"), 30))
            .expect("serializes");
        assert_eq!(v["Properties"]["RetentionInDays"], 30);
        assert_eq!(v["DeletionPolicy"], "Retain");
    }
}
