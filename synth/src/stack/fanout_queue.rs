//! The fan-out queue: the SQS queue of fan-out jobs, its dead-letter queue, and the event
//! source mapping that runs the worker (the `fanout-worker` handler, whose function, role and
//! log group `functions` adds like any handler's) on its messages.
//!
//! Both queues exist in every stage, whatever `[fanout] mode` says: in queue mode `sendMessage`
//! enqueues one job per Scan segment; in inline mode it posts itself and hands to the worker,
//! through the same queue, what its deadline leaves.

use wsstack_routes::Handler;

use super::{checks, ids};
use crate::cfn::policy::{PolicyDocument, Statement};
use crate::cfn::resources::iam::InlinePolicy;
use crate::cfn::resources::lambda::{EventSourceMapping, FunctionResponseType, ScalingConfig};
use crate::cfn::resources::sqs::{Queue, RedrivePolicy};
use crate::cfn::{Expr, RemovalPolicy, Resource, Template};
use crate::stage::Stage;

/// Lambda's advice for an SQS event source: the queue's visibility timeout at least six times
/// the function's timeout, so a batch retried after throttling is not handed out twice
/// (<https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html>).
pub const VISIBILITY_TIMEOUT_FACTOR: u32 = 6;
/// How long the dead-letter queue keeps a job: SQS's maximum, 14 days, time enough to look.
/// Longer than the queue's own: a message keeps its first enqueue time when it is moved
/// (<https://docs.aws.amazon.com/AWSSimpleQueueService/latest/SQSDeveloperGuide/sqs-dead-letter-queues.html>).
pub const DEAD_LETTER_RETENTION_SECONDS: u32 = 14 * 24 * 60 * 60;
/// How long the queue keeps a job not yet done: a day. A chat broadcast later than that is
/// worth nothing, and a job that keeps failing reaches the dead-letter queue long before.
pub const QUEUE_RETENTION_SECONDS: u32 = 24 * 60 * 60;

/// The inline policy that grants a handler its actions on the fan-out queue.
pub const QUEUE_POLICY: &str = "FanoutQueue";

/// The handler's grant on the fan-out queue, if it uses it.
pub fn queue_policy(h: Handler) -> Option<InlinePolicy> {
    let actions = h.queue_actions();
    (!actions.is_empty()).then(|| InlinePolicy {
        policy_name: QUEUE_POLICY.to_owned(),
        policy_document: PolicyDocument::new(vec![Statement::allow(
            actions.iter().map(|a| a.iam_action()),
            vec![Expr::get_att(ids::FANOUT_QUEUE, "Arn")],
        )]),
    })
}

/// Adds the queue, its dead-letter queue and the worker's event source mapping.
pub fn add(t: &mut Template, stage: &Stage) {
    // Jobs are work in flight, not data: deleting the stack deletes the queues, in every stage.
    let queue_resource = |q: Queue| {
        checks::skip(Resource::new(q), &[checks::QUEUE_SQS_MANAGED_SSE])
            .removal_policy(RemovalPolicy::Delete)
    };
    let dead_letter = t.add(
        ids::FANOUT_DEAD_LETTER_QUEUE,
        queue_resource(Queue {
            message_retention_period: Some(DEAD_LETTER_RETENTION_SECONDS),
            sqs_managed_sse_enabled: Some(true),
            ..Queue::default()
        }),
    );
    let worker_timeout = stage.function(Handler::FanoutWorker).timeout_seconds;
    let queue = t.add(
        ids::FANOUT_QUEUE,
        queue_resource(Queue {
            visibility_timeout: Some(VISIBILITY_TIMEOUT_FACTOR * worker_timeout),
            redrive_policy: Some(RedrivePolicy {
                dead_letter_target_arn: Expr::get_att(&dead_letter, "Arn"),
                max_receive_count: stage.fanout.max_receive_count,
            }),
            message_retention_period: Some(QUEUE_RETENTION_SECONDS),
            sqs_managed_sse_enabled: Some(true),
        }),
    );
    t.add(
        ids::FANOUT_EVENT_SOURCE,
        Resource::new(EventSourceMapping {
            event_source_arn: Expr::get_att(&queue, "Arn"),
            function_name: Expr::r#ref(ids::function(Handler::FanoutWorker)),
            batch_size: stage.fanout.batch_size,
            enabled: true,
            function_response_types: vec![FunctionResponseType::ReportBatchItemFailures],
            // At most the worker's reserved concurrency: the event source does not respect it.
            scaling_config: stage
                .fanout
                .max_concurrency
                .map(|maximum_concurrency| ScalingConfig {
                    maximum_concurrency,
                }),
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::test_stage;

    fn added(stage_toml: &str) -> serde_json::Value {
        let mut t = Template::new("test");
        add(&mut t, &test_stage(stage_toml));
        serde_json::to_value(&t).expect("serializes")
    }

    #[test]
    fn the_queue_hides_a_job_six_worker_timeouts_and_dead_letters_it_after_the_receives() {
        let t = added(
            "[lambda.fanout-worker]\ntimeout_seconds = 60\n[fanout]\nmax_receive_count = 3\n",
        );
        let q = &t["Resources"]["FanoutQueue"]["Properties"];
        assert_eq!(q["VisibilityTimeout"], 360);
        assert_eq!(q["SqsManagedSseEnabled"], true);
        assert_eq!(q["RedrivePolicy"]["maxReceiveCount"], 3);
        assert_eq!(
            q["RedrivePolicy"]["deadLetterTargetArn"]["Fn::GetAtt"][0],
            "FanoutDeadLetterQueue"
        );
        let dlq = &t["Resources"]["FanoutDeadLetterQueue"]["Properties"];
        assert_eq!(dlq["SqsManagedSseEnabled"], true);
        assert_eq!(dlq["MessageRetentionPeriod"], 1_209_600);
    }

    #[test]
    fn the_event_source_reports_partial_batch_failures_with_the_stage_batch_size() {
        let t = added("[fanout]\nbatch_size = 4\n");
        let m = &t["Resources"]["FanoutWorkerEventSource"];
        assert_eq!(m["Type"], "AWS::Lambda::EventSourceMapping");
        let p = &m["Properties"];
        assert_eq!(p["BatchSize"], 4);
        assert_eq!(p["FunctionName"]["Ref"], "FanoutWorkerFunction");
        assert_eq!(
            p["FunctionResponseTypes"],
            serde_json::json!(["ReportBatchItemFailures"])
        );
    }

    /// Issue 18, item 9a: SQS event sources do not respect reserved concurrency; without
    /// `ScalingConfig.MaximumConcurrency` Lambda throttles past the reservation and the jobs
    /// come back counting toward `maxReceiveCount`
    /// (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html).
    #[test]
    fn the_event_source_stays_within_the_workers_reserved_concurrency() {
        let scaling = |toml: &str| {
            added(toml)["Resources"]["FanoutWorkerEventSource"]["Properties"]["ScalingConfig"]
                .clone()
        };
        assert_eq!(
            scaling("[lambda.fanout-worker]\nreserved_concurrency = 200\n"),
            serde_json::json!({"MaximumConcurrency": 200})
        );
        assert_eq!(
            scaling("[lambda]\nreserved_concurrency = 50\n"),
            serde_json::json!({"MaximumConcurrency": 50})
        );
        assert_eq!(
            scaling(
                "[lambda.fanout-worker]\nreserved_concurrency = 200\n[fanout]\nmax_concurrency = 20\n"
            ),
            serde_json::json!({"MaximumConcurrency": 20})
        );
        assert_eq!(
            scaling("[fanout]\nmax_concurrency = 5\n"),
            serde_json::json!({"MaximumConcurrency": 5})
        );
        // No reservation, or one under the event source's minimum of 2: unset.
        assert!(scaling("").is_null());
        assert!(scaling("[lambda.fanout-worker]\nreserved_concurrency = 1\n").is_null());
    }

    #[test]
    fn only_the_worker_receives_and_the_others_only_send() {
        for h in Handler::ALL {
            let actions: Vec<&str> = h.queue_actions().iter().map(|a| a.iam_action()).collect();
            match h {
                Handler::FanoutWorker => assert!(actions.contains(&"sqs:ReceiveMessage")),
                // What starts a fan-out (sendMessage, the push API) only enqueues.
                _ => assert!(
                    actions.is_empty() || actions == ["sqs:SendMessage"],
                    "{h:?}: {actions:?}"
                ),
            }
            assert_eq!(queue_policy(h).is_some(), !actions.is_empty(), "{h:?}");
        }
        assert_eq!(
            Handler::SendMessage.queue_actions(),
            [wsstack_routes::QueueAction::SendMessage]
        );
    }
}
