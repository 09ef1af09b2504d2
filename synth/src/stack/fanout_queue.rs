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
use crate::cfn::resources::lambda::{EventSourceMapping, FunctionResponseType};
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

/// The SQS actions a handler calls on the fan-out queue; synth grants exactly these, on that
/// queue only.
pub const fn queue_actions(h: Handler) -> &'static [&'static str] {
    match h {
        // Enqueues the jobs of a broadcast (queue mode) or what its deadline left (inline).
        Handler::SendMessage => &["sqs:SendMessage"],
        // Polled by its event source mapping, which needs these three on the function's role
        // (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-configure.html); sends the
        // continuation of a job its deadline cut.
        Handler::FanoutWorker => &[
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
            "sqs:SendMessage",
        ],
        _ => &[],
    }
}

/// The handler's grant on the fan-out queue, if it uses it.
pub fn queue_policy(h: Handler) -> Option<InlinePolicy> {
    let actions = queue_actions(h);
    (!actions.is_empty()).then(|| InlinePolicy {
        policy_name: QUEUE_POLICY.to_owned(),
        policy_document: PolicyDocument::new(vec![Statement::allow(
            actions.iter().copied(),
            vec![Expr::get_att(ids::FANOUT_QUEUE, "Arn")],
        )]),
    })
}

/// The fan-out variables of the handler's function (the handlers' `config.rs` reads them).
pub fn environment(stage: &Stage, h: Handler) -> Vec<(&'static str, Expr)> {
    if queue_actions(h).is_empty() {
        return Vec::new();
    }
    // `Ref` of a queue is its URL.
    let mut vars = vec![
        ("FANOUT_MODE", Expr::from(stage.fanout.mode.as_str())),
        ("FANOUT_QUEUE_URL", Expr::r#ref(ids::FANOUT_QUEUE)),
        // The worker drops jobs older than this; sendMessage's jobs carry their enqueue time.
        (
            "FANOUT_MAX_JOB_AGE_SECONDS",
            Expr::from(stage.fanout.max_job_age_seconds.to_string()),
        ),
    ];
    if h == Handler::SendMessage {
        vars.push((
            "FANOUT_SEGMENTS",
            Expr::from(stage.fanout.segments.to_string()),
        ));
    }
    vars
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

    #[test]
    fn only_send_message_and_the_worker_touch_the_queue_and_only_the_worker_receives() {
        for h in Handler::ALL {
            let actions = queue_actions(h);
            match h {
                Handler::SendMessage => assert_eq!(actions, ["sqs:SendMessage"]),
                Handler::FanoutWorker => assert!(actions.contains(&"sqs:ReceiveMessage")),
                _ => assert!(actions.is_empty(), "{h:?}"),
            }
            assert_eq!(queue_policy(h).is_some(), !actions.is_empty(), "{h:?}");
        }
    }

    #[test]
    fn send_message_learns_the_mode_the_queue_and_the_segments() {
        let stage = test_stage("[fanout]\nmode = \"queue\"\nsegments = 16\n");
        let names =
            |h| -> Vec<&str> { environment(&stage, h).into_iter().map(|(n, _)| n).collect() };
        assert_eq!(
            names(Handler::SendMessage),
            [
                "FANOUT_MODE",
                "FANOUT_QUEUE_URL",
                "FANOUT_MAX_JOB_AGE_SECONDS",
                "FANOUT_SEGMENTS"
            ]
        );
        assert_eq!(
            names(Handler::FanoutWorker),
            [
                "FANOUT_MODE",
                "FANOUT_QUEUE_URL",
                "FANOUT_MAX_JOB_AGE_SECONDS"
            ]
        );
        assert!(names(Handler::Connect).is_empty());
        let vars = environment(&stage, Handler::SendMessage);
        assert_eq!(
            serde_json::to_value(&vars[3].1).expect("json"),
            serde_json::json!("16")
        );
        assert_eq!(
            serde_json::to_value(&vars[2].1).expect("json"),
            serde_json::json!("900"),
            "the default maximum job age"
        );
        let aged = test_stage("[fanout]\nmax_job_age_seconds = 120\n");
        let worker_vars = environment(&aged, Handler::FanoutWorker);
        assert_eq!(
            serde_json::to_value(&worker_vars[2].1).expect("json"),
            serde_json::json!("120")
        );
        assert_eq!(
            serde_json::to_value(&vars[0].1).expect("json"),
            serde_json::json!("queue")
        );
    }
}
