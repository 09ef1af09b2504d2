//! Stage files: the real ones load, and every kind of bad file gets an error naming the file,
//! line, column and field.

use std::path::{Path, PathBuf};

use wsstack_auth::TokenSource;
use wsstack_routes::{Handler, Invocation};
use wsstack_synth::stage::{
    self, AlarmSettings, AlarmTarget, Architecture, AuthSettings, BillingMode, IdentityProvider,
    LogLevel, StageError,
};

fn stages_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../stages")
}

/// Every handler's name, as the stage file's errors list them (derived from the route table:
/// a new handler is listed without editing these tests).
fn handler_names() -> String {
    Handler::names().collect::<Vec<_>>().join(", ")
}

fn err(text: &str) -> String {
    match stage::parse(Path::new("stages/test.toml"), "test", text) {
        Ok(s) => panic!("expected an error, got {s:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn the_shipped_stages_load() {
    let stages = stage::load_all(&stages_dir()).expect("stage files are valid");
    let names: Vec<&str> = stages.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["dev", "prod", "staging"]);

    let prod = &stages[1];
    assert_eq!(prod.stack_name, "wsstack-prod");
    assert!(
        prod.table.retain && prod.table.point_in_time_recovery && prod.table.deletion_protection
    );
    assert!(prod.export_outputs);
    let send = prod.function(Handler::SendMessage);
    assert_eq!(
        (
            send.memory_mb,
            send.timeout_seconds,
            send.broadcast_concurrency
        ),
        (1024, 29, 128)
    );
    assert_eq!(send.reserved_concurrency, Some(200));
    // The other handlers keep the [lambda] defaults.
    let connect = prod.function(Handler::Connect);
    assert_eq!(
        (connect.memory_mb, connect.reserved_concurrency),
        (512, Some(100))
    );
    assert_eq!(connect.log_retention_days, 365);

    assert!(prod.termination_protection);

    let dev = &stages[0];
    assert!(!dev.table.retain && !dev.table.point_in_time_recovery);
    assert_eq!(dev.function(Handler::Connect).log_level, LogLevel::Debug);
    assert!(!dev.termination_protection && dev.domain.is_none());
}

/// A new account's concurrency quota is often 10, where any reservation fails the deploy: dev
/// and staging reserve nothing, and no shipped route function outlives API Gateway's 29 s.
#[test]
fn shipped_stages_deploy_on_a_new_account() {
    for s in stage::load_all(&stages_dir()).expect("stage files are valid") {
        for h in Handler::ALL {
            let f = s.function(h);
            // Routes only: the fan-out worker is not behind API Gateway.
            if h.is_route() {
                assert!(f.timeout_seconds <= 29, "{}: {h:?}", s.name);
            }
            if s.name != "prod" {
                assert_eq!(f.reserved_concurrency, None, "{}: {h:?}", s.name);
                assert!(!s.termination_protection, "{}", s.name);
            }
        }
        if s.name != "prod" {
            assert!(!s.api.access_logs || s.name == "staging", "{}", s.name);
        }
    }
}

#[test]
fn a_route_function_times_out_within_api_gateways_29_seconds() {
    insta::assert_snapshot!(err("[lambda.send-message]\ntimeout_seconds = 30\n"), @"stages/test.toml:2:19: lambda.send-message.timeout_seconds: 30 s is too long for the send-message function, a route integration: API Gateway's WebSocket integration timeout quota is 50 ms to 29 s and cannot be raised (https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-execution-service-websocket-limits-table.html); set at most 29");
    // From [lambda], the error names the default's line.
    insta::assert_snapshot!(err("[lambda]\nmemory_mb = 256\ntimeout_seconds = 60\n"), @"stages/test.toml:3:19: lambda.timeout_seconds: 60 s is too long for the connect function, a route integration: API Gateway's WebSocket integration timeout quota is 50 ms to 29 s and cannot be raised (https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-execution-service-websocket-limits-table.html); set at most 29");
    // Issue 17: the forwarded actions' function is behind WebSocket routes too; the push API's
    // behind an HTTP API, whose quota is 30 s.
    insta::assert_snapshot!(err("[lambda.forward]\ntimeout_seconds = 30\n"), @"stages/test.toml:2:19: lambda.forward.timeout_seconds: 30 s is too long for the forward function, a route integration: API Gateway's WebSocket integration timeout quota is 50 ms to 29 s and cannot be raised (https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-execution-service-websocket-limits-table.html); set at most 29");
    insta::assert_snapshot!(err("[lambda.push-api]\ntimeout_seconds = 31\n"), @"stages/test.toml:2:19: lambda.push-api.timeout_seconds: 31 s is too long for the push-api function, the push API's integration: API Gateway's HTTP API integration timeout quota is at most 30 s and cannot be raised (https://docs.aws.amazon.com/apigateway/latest/developerguide/http-api-quotas.html); set at most 30");
    stage::parse(
        Path::new("stages/test.toml"),
        "test",
        "[lambda.push-api]\ntimeout_seconds = 30\n",
    )
    .expect("30 s is the HTTP API's quota");
    let ok = stage::parse(
        Path::new("stages/test.toml"),
        "test",
        "[lambda]\ntimeout_seconds = 29\n",
    )
    .expect("29 s is allowed");
    assert_eq!(ok.function(Handler::SendMessage).timeout_seconds, 29);
}

#[test]
fn reserved_concurrency_fits_an_account() {
    insta::assert_snapshot!(err("[lambda]\nreserved_concurrency = 901\n"), @"stages/test.toml:2:24: lambda.reserved_concurrency: 901 is out of range: allowed 1..=900 concurrent executions (Lambda keeps 100 of the default account quota of 1,000 unreserved: https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html)");
    // Each within bounds, together too much: the error points at the last contributor.
    // The functions of a stage without authentication (the authorizer and the token sweeper
    // exist only with it), each with its reservation, derived from the route table.
    let over = |each: u32, send_message: u32| {
        let parts: Vec<(&str, u32)> = Handler::ALL
            .into_iter()
            .filter(|h| {
                !matches!(
                    h.invocation(),
                    Invocation::ConnectAuthorizer | Invocation::Schedule
                )
            })
            .map(|h| {
                (
                    h.name(),
                    if h == Handler::SendMessage {
                        send_message
                    } else {
                        each
                    },
                )
            })
            .collect();
        let total: u32 = parts.iter().map(|(_, r)| r).sum();
        let list: Vec<String> = parts.iter().map(|(n, r)| format!("{n} {r}")).collect();
        format!(
            "stages/test.toml:2:24: lambda.reserved_concurrency: the functions together reserve {total} concurrent executions ({}); at most 900 fit the default account quota of 1,000, of which Lambda keeps 100 unreserved (https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html)",
            list.join(", ")
        )
    };
    assert!(over(200, 400).contains("(connect 200, disconnect 200, send-message 400, "));
    assert_eq!(
        err(
            "[lambda]\nreserved_concurrency = 200\n[lambda.send-message]\nreserved_concurrency = 400\n"
        ),
        over(200, 400)
    );
    assert_eq!(
        err("[lambda]\nreserved_concurrency = 300\n"),
        over(300, 300)
    );
}

const CERT: &str =
    "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666";

#[test]
fn a_custom_domain() {
    let text = format!(
        "region = \"eu-west-1\"\n[domain]\nname = \"chat.example.com\"\ncertificate_arn = \"{CERT}\"\nbase_path = \"v1\"\n"
    );
    let s = stage::parse(Path::new("stages/test.toml"), "test", &text).expect("valid");
    let d = s.domain.expect("domain");
    assert_eq!(
        (
            d.name.as_str(),
            d.certificate_arn.as_str(),
            d.base_path.as_deref()
        ),
        ("chat.example.com", CERT, Some("v1"))
    );
}

#[test]
fn custom_domain_errors() {
    insta::assert_snapshot!(err(&format!("[domain]\nname = \"Chat_Example\"\ncertificate_arn = \"{CERT}\"\n")), @"stages/test.toml:2:8: domain.name: `Chat_Example` is not a domain name API Gateway accepts: lowercase letters, digits and hyphens in dot-separated labels of 1 to 63 characters (not starting or ending with a hyphen), at least two labels, 253 characters in all");
    insta::assert_snapshot!(err("[domain]\nname = \"chat.example.com\"\ncertificate_arn = \"arn:aws:iam::123456789012:server-certificate/x\"\n"), @"stages/test.toml:3:19: domain.certificate_arn: `arn:aws:iam::123456789012:server-certificate/x` is not an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)");
    insta::assert_snapshot!(err(&format!("region = \"us-east-1\"\n[domain]\nname = \"chat.example.com\"\ncertificate_arn = \"{CERT}\"\n")), @"stages/test.toml:4:19: domain.certificate_arn: the certificate is in eu-west-1, the stage deploys to us-east-1: WebSocket APIs take only Regional custom domains, whose certificate must be in the API's region");
    insta::assert_snapshot!(err(&format!("[domain]\nname = \"chat.example.com\"\ncertificate_arn = \"{CERT}\"\nbase_path = \"a/b\"\n")), @"stages/test.toml:4:13: domain.base_path: `a/b` is not a base path for a WebSocket API: one path segment of letters, digits and `-._~`, at most 128 characters, no `/`");
    insta::assert_snapshot!(err("[domain]\nname = \"chat.example.com\"\n"), @"stages/test.toml:1:1: domain: missing field `certificate_arn`");
}

#[test]
fn alarms_are_off_by_default_and_on_in_staging_and_prod() {
    let s = stage::parse(Path::new("x.toml"), "x", "").expect("empty is valid");
    assert_eq!(s.alarms, AlarmSettings::default());
    assert!(!s.alarms.enabled);
    assert_eq!(s.alarms.notify, AlarmTarget::NewTopic { email: None });
    let shipped: Vec<(String, bool)> = stage::load_all(&stages_dir())
        .expect("stage files are valid")
        .into_iter()
        .map(|s| (s.name, s.alarms.enabled))
        .collect();
    assert_eq!(
        shipped,
        [
            ("dev".to_owned(), false),
            ("prod".to_owned(), true),
            ("staging".to_owned(), true)
        ]
    );
}

#[test]
fn alarm_settings_from_the_file() {
    let s = stage::parse(
        Path::new("x.toml"),
        "x",
        "[alarms]\nenabled = true\nemail = \"ops@example.com\"\nfunction_errors = 3\nfunction_throttles = 4\nintegration_errors = 10\nexecution_errors = 2\noldest_job_age_seconds = 600\nauthorizer_errors = 7\nthrottled_deliveries = 500\ncut_off_deliveries = 20\nforward_failures = 3\n",
    )
    .expect("valid");
    let a = &s.alarms;
    assert!(a.enabled);
    assert_eq!(
        a.notify,
        AlarmTarget::NewTopic {
            email: Some("ops@example.com".to_owned())
        }
    );
    assert_eq!(
        (
            a.function_errors,
            a.function_throttles,
            a.integration_errors,
            a.execution_errors
        ),
        (3, 4, 10, 2)
    );
    assert_eq!(
        (
            a.oldest_job_age_seconds,
            a.authorizer_errors,
            a.throttled_deliveries,
            a.cut_off_deliveries,
            a.forward_failures
        ),
        (600, 7, 500, 20, 3)
    );
    let s = stage::parse(
        Path::new("x.toml"),
        "x",
        "[alarms]\ntopic_arn = \"arn:aws:sns:eu-west-1:123456789012:ops\"\n",
    )
    .expect("valid");
    assert_eq!(
        s.alarms.notify,
        AlarmTarget::ExistingTopic("arn:aws:sns:eu-west-1:123456789012:ops".to_owned())
    );
}

#[test]
fn alarm_errors() {
    insta::assert_snapshot!(err("[alarms]\nemail = \"ops@example.com\"\ntopic_arn = \"arn:aws:sns:eu-west-1:123456789012:ops\"\n"), @"stages/test.toml:3:13: alarms.topic_arn: give either email (the stack creates a topic and subscribes it) or topic_arn (an existing topic), not both");
    insta::assert_snapshot!(err("[alarms]\ntopic_arn = \"arn:aws:sqs:eu-west-1:123456789012:ops\"\n"), @"stages/test.toml:2:13: alarms.topic_arn: `arn:aws:sqs:eu-west-1:123456789012:ops` is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:NAME, the name 1 to 256 letters, digits, `-` and `_`)");
    insta::assert_snapshot!(err("[alarms]\nemail = \"ops at example.com\"\n"), @"stages/test.toml:2:9: alarms.email: `ops at example.com` is not an email address (one `@`, no spaces, a domain with a dot)");
    insta::assert_snapshot!(err("[alarms]\nfunction_errors = 0\n"), @"stages/test.toml:2:19: alarms.function_errors: 0 is out of range: allowed 1..=1000000 per 5 minutes");
    insta::assert_snapshot!(err("[alarms]\nthrottled_deliveries = 1000001\n"), @"stages/test.toml:2:24: alarms.throttled_deliveries: 1000001 is out of range: allowed 1..=1000000 per 5 minutes");
    insta::assert_snapshot!(err("[alarms]\noldest_job_age_seconds = 30\n"), @"stages/test.toml:2:26: alarms.oldest_job_age_seconds: 30 is out of range: allowed 60..=86400 seconds (the fan-out queue keeps a job a day)");
    insta::assert_snapshot!(err("[alarms]\nenabled = \"yes\"\n"), @r#"stages/test.toml:2:11: alarms.enabled: invalid type: string "yes", expected a boolean"#);
    insta::assert_snapshot!(err("[alarms]\nerrors = 3\n"), @"stages/test.toml:2:1: alarms.errors: unknown field `errors`, expected one of `enabled`, `email`, `topic_arn`, `function_errors`, `function_throttles`, `integration_errors`, `execution_errors`, `oldest_job_age_seconds`, `authorizer_errors`, `throttled_deliveries`, `cut_off_deliveries`, `forward_failures`");
    insta::assert_snapshot!(err("[alarms]\nforward_failures = 0\n"), @"stages/test.toml:2:20: alarms.forward_failures: 0 is out of range: allowed 1..=1000000 per 5 minutes");
}

#[test]
fn termination_protection_is_a_boolean() {
    insta::assert_snapshot!(err("termination_protection = \"yes\"\n"), @r#"stages/test.toml:1:26: termination_protection: invalid type: string "yes", expected a boolean"#);
}

#[test]
fn an_empty_file_takes_every_default() {
    let s = stage::parse(Path::new("x.toml"), "x", "").expect("empty is valid");
    assert_eq!(s.stack_name, "wsstack-x");
    assert_eq!(s.account, None);
    for h in Handler::ALL {
        let f = s.function(h);
        assert_eq!(
            (f.memory_mb, f.timeout_seconds, f.architecture),
            (256, 10, Architecture::Arm64)
        );
        assert_eq!(
            (f.log_level, f.log_retention_days, f.reserved_concurrency),
            (LogLevel::Info, 14, None)
        );
        assert_eq!(f.broadcast_concurrency, 64);
    }
    assert_eq!(s.table.billing_mode, BillingMode::PayPerRequest);
    assert_eq!(s.table.capacity, None);
    assert!(!s.export_outputs);
}

#[test]
fn unknown_top_level_key() {
    insta::assert_snapshot!(err("stack_name = \"a\"\nmemroy = 3\n"), @"stages/test.toml:2:1: memroy: unknown field `memroy`, expected one of `stack_name`, `account`, `region`, `lambda`, `table`, `api`, `outputs`, `fanout`, `domain`, `termination_protection`, `auth`, `alarms`, `push_api`, `example_backend`");
}

#[test]
fn unknown_key_in_a_section() {
    assert_eq!(
        err("[lambda]\nmemory = 512\n"),
        format!(
            "stages/test.toml:2:1: lambda.memory: unknown key `memory`: [lambda] takes the settings memory_mb, timeout_seconds, architecture, log_level, log_retention_days, reserved_concurrency, broadcast_concurrency and a [lambda.<handler>] table per handler, one of {handlers}",
            handlers = handler_names()
        )
    );
}

#[test]
fn unknown_handler_override() {
    assert_eq!(
        err("[lambda.sendMessage]\nmemory_mb = 512\n"),
        format!(
            "stages/test.toml:1:9: lambda.sendMessage: unknown key `sendMessage`: [lambda] takes the settings memory_mb, timeout_seconds, architecture, log_level, log_retention_days, reserved_concurrency, broadcast_concurrency and a [lambda.<handler>] table per handler, one of {handlers}",
            handlers = handler_names()
        )
    );
}

/// The handler tables follow from the route table: every handler's name is accepted and
/// reaches that handler's function only.
#[test]
fn every_handler_of_the_route_table_takes_an_override() {
    for (i, h) in Handler::ALL.iter().enumerate() {
        let memory = 512 + 64 * i as u32;
        // With authentication on, so that the authorizer has a function too.
        let text = format!(
            "[auth]\nmode = \"jwt\"\ncreate_user_pool = true\n[lambda]\nmemory_mb = 256\n[lambda.{}]\nmemory_mb = {memory}\n",
            h.name()
        );
        let s = stage::parse(Path::new("stages/test.toml"), "test", &text).expect("valid");
        for other in Handler::ALL {
            let want = if other == *h { memory } else { 256 };
            assert_eq!(
                s.function(other).memory_mb,
                want,
                "[lambda.{}] -> {other:?}",
                h.name()
            );
        }
    }
}

#[test]
fn unknown_key_in_a_handler_table() {
    insta::assert_snapshot!(err("[lambda.connect]\nmemroy_mb = 512\n"), @"stages/test.toml:2:1: lambda.connect.memroy_mb: unknown field `memroy_mb`, expected one of `memory_mb`, `timeout_seconds`, `architecture`, `log_level`, `log_retention_days`, `reserved_concurrency`, `broadcast_concurrency`");
}

#[test]
fn a_handler_override_must_be_a_table() {
    insta::assert_snapshot!(err("[lambda]\nconnect = 5\n"), @"stages/test.toml:2:11: lambda.connect: invalid type: integer `5`, expected a table of function settings");
}

#[test]
fn wrong_type() {
    insta::assert_snapshot!(err("[lambda]\nmemory_mb = \"big\"\n"), @r#"stages/test.toml:2:13: lambda.memory_mb: invalid type: string "big", expected i64"#);
}

#[test]
fn memory_out_of_range() {
    insta::assert_snapshot!(err("[lambda]\nmemory_mb = 64\n"), @"stages/test.toml:2:13: lambda.memory_mb: 64 is out of range: allowed 128..=10240 MiB");
    insta::assert_snapshot!(err("[lambda]\nmemory_mb = 10241\n"), @"stages/test.toml:2:13: lambda.memory_mb: 10241 is out of range: allowed 128..=10240 MiB");
}

#[test]
fn timeout_out_of_range_in_an_override() {
    insta::assert_snapshot!(err("[lambda.send-message]\ntimeout_seconds = 901\n"), @"stages/test.toml:2:19: lambda.send-message.timeout_seconds: 901 is out of range: allowed 1..=900 seconds");
}

#[test]
fn retention_must_be_a_cloudwatch_value() {
    insta::assert_snapshot!(err("[lambda]\nlog_retention_days = 10\n"), @"stages/test.toml:2:22: lambda.log_retention_days: 10 days is not a retention CloudWatch Logs accepts; allowed: 1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653");
}

#[test]
fn log_level_must_be_known() {
    insta::assert_snapshot!(err("[lambda]\nlog_level = \"VERBOSE\"\n"), @"stages/test.toml:2:13: lambda.log_level: unknown variant `VERBOSE`, expected one of `TRACE`, `DEBUG`, `INFO`, `WARN`, `ERROR`, `FATAL`");
}

#[test]
fn architecture_must_be_known() {
    insta::assert_snapshot!(err("[lambda]\narchitecture = \"aarch64\"\n"), @"stages/test.toml:2:16: lambda.architecture: unknown variant `aarch64`, expected `arm64` or `x86_64`");
}

#[test]
fn throttling_out_of_range() {
    insta::assert_snapshot!(err("[api]\nthrottling_burst_limit = 6000\n"), @"stages/test.toml:2:26: api.throttling_burst_limit: 6000 is out of range: allowed 0..=5000 requests (the account's default burst quota)");
    insta::assert_snapshot!(err("[api]\nthrottling_rate_limit = -1.5\n"), @"stages/test.toml:2:25: api.throttling_rate_limit: -1.5 is out of range: allowed 0..=10000 requests per second (the account's default rate quota)");
}

/// `[example_backend]`: off by default and in staging and prod, on in dev; its sizes default
/// to 128 MiB and 30 s, its logs follow `[lambda]`.
#[test]
fn the_example_backend_is_on_in_dev_only() {
    let stages = stage::load_all(&stages_dir()).expect("stage files are valid");
    let on: Vec<&str> = stages
        .iter()
        .filter(|s| s.example_backend.is_some())
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(on, ["dev"]);
    let dev = stages[0].example_backend.clone().expect("dev runs it");
    assert_eq!(
        (
            dev.memory_mb,
            dev.timeout_seconds,
            dev.log_level,
            dev.log_retention_days
        ),
        (128, 30, LogLevel::Debug, 7)
    );
    let parse = |text: &str| {
        stage::parse(Path::new("stages/test.toml"), "test", text)
            .expect("valid")
            .example_backend
    };
    assert_eq!(parse(""), None);
    assert_eq!(parse("[example_backend]\nenabled = false\n"), None);
    let sized =
        parse("[example_backend]\nenabled = true\nmemory_mb = 512\ntimeout_seconds = 900\n")
            .expect("on");
    assert_eq!((sized.memory_mb, sized.timeout_seconds), (512, 900));
    assert_eq!(
        (sized.log_level, sized.log_retention_days),
        (LogLevel::Info, 14)
    );
}

#[test]
fn example_backend_errors_name_the_line_and_field() {
    insta::assert_snapshot!(err("[example_backend]\nenabled = true\nmemory_mb = 64\n"), @"stages/test.toml:3:13: example_backend.memory_mb: 64 is out of range: allowed 128..=10240 MiB");
    insta::assert_snapshot!(err("[example_backend]\nenabled = true\ntimeout_seconds = 0\n"), @"stages/test.toml:3:19: example_backend.timeout_seconds: 0 is out of range: allowed 1..=900 seconds");
    insta::assert_snapshot!(err("[example_backend]\nenabled = \"yes\"\n"), @r#"stages/test.toml:2:11: example_backend.enabled: invalid type: string "yes", expected a boolean"#);
    insta::assert_snapshot!(err("[example_backend]\nenabled = true\nmemory = 256\n"), @"stages/test.toml:3:1: example_backend.memory: unknown field `memory`, expected one of `enabled`, `memory_mb`, `timeout_seconds`");
    // A size for an example that is off would do nothing: an error, not a silent no-op.
    insta::assert_snapshot!(err("[example_backend]\ntimeout_seconds = 60\n"), @"stages/test.toml:2:19: example_backend.timeout_seconds: the example backend is off (it needs enabled = true), so timeout_seconds would do nothing: set enabled = true or remove timeout_seconds");
    insta::assert_snapshot!(err("[example_backend]\nenabled = false\nmemory_mb = 256\n"), @"stages/test.toml:3:13: example_backend.memory_mb: the example backend is off (it needs enabled = true), so memory_mb would do nothing: set enabled = true or remove memory_mb");
}

/// `[push_api]`: the HTTP API's stage throttling, within the account's quota, never 0.
#[test]
fn push_api_throttling_out_of_range() {
    insta::assert_snapshot!(err("[push_api]\nthrottling_burst_limit = 0\n"), @"stages/test.toml:2:26: push_api.throttling_burst_limit: 0 is out of range: allowed 1..=5000 requests at once (0 would refuse every push; 5,000 is the account's default burst quota, shared by every API of the account and Region)");
    insta::assert_snapshot!(err("[push_api]\nthrottling_rate_limit = 20000\n"), @"stages/test.toml:2:25: push_api.throttling_rate_limit: 20000 is out of range: allowed 1..=10000 requests per second (less than 1 refuses pushes most of the time; 10,000 is the account's default rate quota, shared by every API of the account and Region)");
    insta::assert_snapshot!(err("[push_api]\nthrottling = 5\n"), @"stages/test.toml:2:1: push_api.throttling: unknown field `throttling`, expected `throttling_rate_limit` or `throttling_burst_limit`");
}

#[test]
fn concurrency_out_of_range() {
    insta::assert_snapshot!(err("[lambda]\nreserved_concurrency = 0\n"), @"stages/test.toml:2:24: lambda.reserved_concurrency: 0 is out of range: allowed 1..=900 concurrent executions (Lambda keeps 100 of the default account quota of 1,000 unreserved: https://docs.aws.amazon.com/lambda/latest/dg/configuration-concurrency.html)");
    insta::assert_snapshot!(err("[lambda]\nbroadcast_concurrency = 5000\n"), @"stages/test.toml:2:25: lambda.broadcast_concurrency: 5000 is out of range: allowed 1..=480 posts in flight (Lambda's 1,024 file descriptors allow no more)");
}

#[test]
fn provisioned_needs_both_capacities() {
    insta::assert_snapshot!(err("[table]\nbilling_mode = \"PROVISIONED\"\nread_capacity = 5\n"), @r#"stages/test.toml:3:17: table.write_capacity: billing_mode = "PROVISIONED" needs both read_capacity and write_capacity"#);
    insta::assert_snapshot!(err("[table]\nwrite_capacity = 5\n"), @r#"stages/test.toml:2:18: table.write_capacity: capacity is only allowed with billing_mode = "PROVISIONED""#);
    let ok = stage::parse(
        Path::new("x.toml"),
        "x",
        "[table]\nbilling_mode = \"PROVISIONED\"\nread_capacity = 5\nwrite_capacity = 7\n",
    )
    .expect("valid");
    assert_eq!(ok.table.capacity, Some((5, 7)));
}

#[test]
fn syntax_error() {
    insta::assert_snapshot!(err("[lambda\nmemory_mb = 1\n"), @"stages/test.toml:1:8: (syntax): unclosed table, expected `]`");
}

#[test]
fn bad_names() {
    insta::assert_snapshot!(err("stack_name = \"my_stack\"\n"), @"stages/test.toml:1:1: stack_name: `my_stack` is not a CloudFormation stack name: letters, digits and hyphens, starting with a letter, at most 128");
    insta::assert_snapshot!(err("account = \"1234\"\n"), @"stages/test.toml:1:1: account: `1234` is not an AWS account ID (12 digits)");
    insta::assert_snapshot!(err("\n\nregion = \"Mars\"\n"), @"stages/test.toml:3:1: region: `Mars` is not an AWS region name (such as eu-west-1)");
}

#[test]
fn invalid_stage_names() {
    for name in ["Prod", "1dev", "dev_1", "", "dev!"] {
        let e = stage::parse(Path::new("stages/x.toml"), name, "").expect_err(name);
        assert!(matches!(e, StageError::InvalidName { .. }), "{name}: {e}");
    }
    assert!(stage::is_valid_stage_name("eu-prod-2"));
}

#[test]
fn missing_stage_lists_the_stages_there_are() {
    let e = stage::load(&stages_dir(), "qa").expect_err("no qa stage");
    let msg = e.to_string();
    assert!(msg.starts_with("no stage `qa`: "), "{msg}");
    assert!(
        msg.ends_with("qa.toml does not exist (stages found: dev, prod, staging)"),
        "{msg}"
    );
}

#[test]
fn empty_stages_folder() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = stage::load_all(dir.path()).expect_err("no stages");
    assert!(matches!(e, StageError::NoStages { .. }), "{e}");
    let e = stage::load_all(&dir.path().join("nope")).expect_err("no folder");
    assert!(matches!(e, StageError::Read { .. }), "{e}");
}

// ---------------------------------------------------------------------------------- [auth]

#[test]
fn shipped_stages_authenticate_in_staging_and_prod_only() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../stages");
    for (name, jwt) in [("dev", false), ("staging", true), ("prod", true)] {
        let s = stage::load(&dir, name).expect("loads");
        match (&s.auth, jwt) {
            (AuthSettings::None, false) => {}
            (AuthSettings::Jwt(j), true) => {
                assert_eq!(j.provider, IdentityProvider::UserPool, "{name}");
                assert_eq!(j.token_source, TokenSource::Query("token".into()));
            }
            (other, _) => panic!("{name}: {other:?}"),
        }
        // The authorizer's function exists exactly where the stage authenticates.
        let has = s.functions.iter().any(|(h, _)| *h == Handler::Authorizer);
        assert_eq!(has, jwt, "{name}");
    }
}

#[test]
fn an_explicit_issuer_with_every_setting() {
    let s = stage::parse(
        Path::new("stages/test.toml"),
        "test",
        "[auth]\nmode = \"jwt\"\nissuer = \"https://login.example.com/\"\naudience = [\"web\", \"ios\"]\njwks_url = \"https://login.example.com/keys\"\ntoken_source = \"header:Authorization\"\nusername_claim = \"email\"\n[api]\nmessage_rate = 5\nmessage_burst = 8\n",
    )
    .expect("valid");
    let jwt = s.auth.jwt().expect("jwt");
    assert_eq!(
        jwt.provider,
        IdentityProvider::Issuer {
            issuer: "https://login.example.com/".into(),
            audiences: vec!["web".into(), "ios".into()],
            jwks_url: Some("https://login.example.com/keys".into()),
        }
    );
    assert_eq!(
        jwt.token_source,
        TokenSource::Header("Authorization".into())
    );
    assert_eq!(jwt.username_claim.as_deref(), Some("email"));
    assert_eq!((s.api.message_rate, s.api.message_burst), (5, 8));
    // Issue 18's limits: their defaults here, read in `the_limits_of_issue_18_are_read`.
    assert_eq!(
        (
            s.api.user_message_rate,
            s.api.user_message_burst,
            s.api.broadcast_budget
        ),
        (20, 40, 5000)
    );
    let one = stage::parse(
        Path::new("stages/test.toml"),
        "test",
        "[auth]\nmode = \"jwt\"\nissuer = \"https://i.example\"\naudience = \"web\"\n",
    )
    .expect("valid");
    assert!(matches!(
        &one.auth.jwt().expect("jwt").provider,
        IdentityProvider::Issuer { audiences, jwks_url: None, .. } if audiences == &["web"]
    ));
}

#[test]
fn the_token_sweep_interval_defaults_to_five_minutes_and_is_read() {
    let parse = |text: &str| {
        stage::parse(Path::new("stages/test.toml"), "test", text)
            .expect("valid")
            .auth
            .jwt()
            .expect("jwt")
            .sweep_interval_minutes
    };
    assert_eq!(
        parse("[auth]\nmode = \"jwt\"\ncreate_user_pool = true\n"),
        5
    );
    assert_eq!(
        parse("[auth]\nmode = \"jwt\"\ncreate_user_pool = true\nsweep_interval_minutes = 1\n"),
        1
    );
}

#[test]
fn bad_auth_values_name_file_line_and_field() {
    let cases: &[(&str, &str)] = &[
        (
            "[auth]\nmode = \"oauth\"\n",
            "stages/test.toml:2:8: auth.mode: unknown variant `oauth`, expected `none` or `jwt`",
        ),
        (
            "[auth]\nmode = \"jwt\"\nissuer = \"http://login.example.com\"\naudience = \"a\"\n",
            "stages/test.toml:3:10: auth.issuer: `http://login.example.com` is not an https URL: a deployed authorizer fetches keys over https only",
        ),
        (
            "[auth]\nmode = \"jwt\"\nissuer = \"https://i.example\"\naudience = []\n",
            "stages/test.toml:4:12: auth.audience: the audience must be one or more non-empty strings",
        ),
        (
            "[auth]\nmode = \"jwt\"\nissuer = \"https://i.example\"\naudience = [\"a\", \"\"]\n",
            "stages/test.toml:4:12: auth.audience: the audience must be one or more non-empty strings",
        ),
        (
            "[auth]\nmode = \"jwt\"\nissuer = \"https://i.example\"\n",
            "stages/test.toml:3:10: auth.audience: mode = \"jwt\" with an issuer needs `audience`: the client id(s) a token must name in `aud`",
        ),
        (
            "[auth]\nmode = \"jwt\"\n",
            "stages/test.toml:2:8: auth.issuer: mode = \"jwt\" needs `issuer` (the tokens' `iss`, an https URL) and `audience`, or create_user_pool = true",
        ),
        (
            "[auth]\nmode = \"jwt\"\ncreate_user_pool = true\nissuer = \"https://i.example\"\n",
            "stages/test.toml:4:10: auth.issuer: `issuer` cannot be set with create_user_pool = true: the stack's user pool is the issuer and its app client the audience",
        ),
        (
            "[auth]\nmode = \"jwt\"\ncreate_user_pool = true\ntoken_source = \"cookie:session\"\n",
            "stages/test.toml:4:16: auth.token_source: \"cookie:session\" is not a token source: use query:NAME or header:NAME, NAME of letters, digits, '.', '_' or '-'",
        ),
        (
            "[auth]\nmode = \"jwt\"\ncreate_user_pool = true\nusername_claim = \"user name\"\n",
            "stages/test.toml:4:18: auth.username_claim: `user name` is not a claim name: 1 to 128 letters, digits, `_`, `-`, `.` or `:` (e.g. preferred_username, cognito:username, email)",
        ),
        (
            // Issue 18, item 1: the pool's users may write locale and zoneinfo themselves.
            "[auth]\nmode = \"jwt\"\ncreate_user_pool = true\nusername_claim = \"locale\"\n",
            "stages/test.toml:4:18: auth.username_claim: `locale` cannot be the username with create_user_pool = true: the pool's users may set it on themselves; use preferred_username (set by an administrator), cognito:username, sub or email",
        ),
        (
            "[auth]\nmode = \"jwt\"\nissuer = \"https://i.example\"\naudience = \"a\"\njwks_url = \"ftp://i.example/keys\"\n",
            "stages/test.toml:5:12: auth.jwks_url: `ftp://i.example/keys` is not an https URL: a deployed authorizer fetches keys over https only",
        ),
        (
            "[auth]\nmode = \"none\"\nissuer = \"https://i.example\"\n",
            "stages/test.toml:3:10: auth.issuer: `issuer` only applies with mode = \"jwt\"; with mode = \"none\" nobody is authenticated",
        ),
        (
            "[auth]\nmode = \"jwt\"\ncreate_user_pool = true\nissuer_url = \"https://i.example\"\n",
            "stages/test.toml:4:1: auth.issuer_url: unknown field `issuer_url`, expected one of `mode`, `issuer`, `audience`, `jwks_url`, `token_source`, `username_claim`, `create_user_pool`, `sweep_interval_minutes`",
        ),
        (
            "[auth]\nmode = \"jwt\"\ncreate_user_pool = true\nsweep_interval_minutes = 0\n",
            "stages/test.toml:4:26: auth.sweep_interval_minutes: 0 is out of range: the token sweep runs every 1 to 60 minutes (an EventBridge rate in whole minutes)",
        ),
        (
            "[auth]\nmode = \"jwt\"\ncreate_user_pool = true\nsweep_interval_minutes = 61\n",
            "stages/test.toml:4:26: auth.sweep_interval_minutes: 61 is out of range: the token sweep runs every 1 to 60 minutes (an EventBridge rate in whole minutes)",
        ),
        (
            "[auth]\nmode = \"jwt\"\ncreate_user_pool = true\nsweep_interval_minutes = \"5m\"\n",
            "stages/test.toml:4:26: auth.sweep_interval_minutes: invalid type: string \"5m\", expected i64",
        ),
        (
            "[auth]\nmode = \"none\"\nsweep_interval_minutes = 5\n",
            "stages/test.toml:3:26: auth.sweep_interval_minutes: `sweep_interval_minutes` only applies with mode = \"jwt\"; with mode = \"none\" nobody is authenticated",
        ),
        (
            "[auth]\nissuer = \"https://i.example\"\n",
            "stages/test.toml:1:1: auth: missing field `mode`",
        ),
        (
            "[api]\nmessage_rate = 0\n",
            "stages/test.toml:2:16: api.message_rate: 0 is out of range: allowed 1..=1000 messages (per second for message_rate, at once for message_burst)",
        ),
        (
            "[api]\nmessage_burst = 5000\n",
            "stages/test.toml:2:17: api.message_burst: 5000 is out of range: allowed 1..=1000 messages (per second for message_rate, at once for message_burst)",
        ),
        (
            "[api]
user_message_rate = 0
",
            "stages/test.toml:2:21: api.user_message_rate: 0 is out of range: allowed 1..=1000 requests (per second for user_message_rate, at once for user_message_burst)",
        ),
        (
            "[api]
user_message_burst = 1001
",
            "stages/test.toml:2:22: api.user_message_burst: 1001 is out of range: allowed 1..=1000 requests (per second for user_message_rate, at once for user_message_burst)",
        ),
        (
            "[api]
broadcast_budget = 20000
",
            "stages/test.toml:2:20: api.broadcast_budget: 20000 is out of range: allowed 1..=10000 deliveries per second (the account's 10,000 requests/s, shared by every API of the account and Region)",
        ),
        (
            "[api]
broadcast_budget = \"lots\"
",
            "stages/test.toml:2:20: api.broadcast_budget: invalid type: string \"lots\", expected i64",
        ),
    ];
    for (text, expected) in cases {
        assert_eq!(&err(text), expected, "{text}");
    }
}

/// `[fanout]`: dev posts inline, staging and prod through the queue; prod reserves per handler,
/// leaving room under the 900 cap for functions still to come (the authorizer).
#[test]
fn shipped_fanout_modes_and_prod_reservations() {
    use wsstack_synth::stage::FanoutMode;
    let stages = stage::load_all(&stages_dir()).expect("stage files are valid");
    let modes: Vec<(&str, FanoutMode)> = stages
        .iter()
        .map(|s| (s.name.as_str(), s.fanout.mode))
        .collect();
    assert_eq!(
        modes,
        [
            ("dev", FanoutMode::Inline),
            ("prod", FanoutMode::Queue),
            ("staging", FanoutMode::Queue)
        ]
    );
    let prod = &stages[1];
    let reserved: u32 = Handler::ALL
        .iter()
        .filter_map(|&h| prod.function(h).reserved_concurrency)
        .sum();
    assert_eq!(reserved, 600);
    assert!(
        stage::RESERVED_CONCURRENCY_MAX - reserved >= 100,
        "room for an authorizer"
    );
    assert_eq!(
        prod.function(Handler::FanoutWorker).reserved_concurrency,
        Some(200)
    );
}

#[test]
fn fanout_defaults() {
    let s = stage::parse(Path::new("x.toml"), "x", "").expect("empty is valid");
    assert_eq!(
        (
            s.fanout.mode,
            s.fanout.segments,
            s.fanout.batch_size,
            s.fanout.max_receive_count
        ),
        (wsstack_synth::stage::FanoutMode::Inline, 8, 1, 5)
    );
    // No reservation: the event source's concurrency is left unset.
    assert_eq!(s.fanout.max_concurrency, None);
}

#[test]
fn fanout_max_concurrency_defaults_to_the_workers_reservation() {
    let parse = |text: &str| stage::parse(Path::new("x.toml"), "x", text).expect("valid");
    let s = parse("[lambda.fanout-worker]\nreserved_concurrency = 200\n");
    assert_eq!(s.fanout.max_concurrency, Some(200));
    let s = parse(
        "[lambda.fanout-worker]\nreserved_concurrency = 200\n[fanout]\nmax_concurrency = 200\n",
    );
    assert_eq!(s.fanout.max_concurrency, Some(200));
    let s = parse("[fanout]\nmax_concurrency = 1000\n");
    assert_eq!(s.fanout.max_concurrency, Some(1000));
    let prod = stage::load(&stages_dir(), "prod").expect("prod");
    assert_eq!(
        prod.fanout.max_concurrency,
        prod.function(Handler::FanoutWorker).reserved_concurrency
    );
    assert_eq!(prod.fanout.max_concurrency, Some(200));
}

#[test]
fn fanout_bad_values_name_the_line_and_field() {
    insta::assert_snapshot!(err("[fanout]\nmode = \"fast\"\n"), @"stages/test.toml:2:8: fanout.mode: unknown variant `fast`, expected `inline` or `queue`");
    insta::assert_snapshot!(err("[fanout]\nsegments = 0\n"), @"stages/test.toml:2:12: fanout.segments: 0 is out of range: allowed 1..=1000 segments (more parallel workers than the account's 10,000 @connections requests/s can feed only add 429s)");
    insta::assert_snapshot!(err("[fanout]\nsegments = 1001\n"), @"stages/test.toml:2:12: fanout.segments: 1001 is out of range: allowed 1..=1000 segments (more parallel workers than the account's 10,000 @connections requests/s can feed only add 429s)");
    insta::assert_snapshot!(err("[fanout]\nbatch_size = 11\n"), @"stages/test.toml:2:14: fanout.batch_size: 11 is out of range: allowed 1..=10 jobs per invocation (an SQS event source without a batching window takes at most 10)");
    insta::assert_snapshot!(err("[fanout]\nmax_receive_count = 0\n"), @"stages/test.toml:2:21: fanout.max_receive_count: 0 is out of range: allowed 1..=1000 receives before the dead-letter queue");
    insta::assert_snapshot!(err("[fanout]\nmax_concurrency = 1\n"), @"stages/test.toml:2:19: fanout.max_concurrency: 1 is out of range: allowed 2..=1000 concurrent worker invocations (an SQS event source's MaximumConcurrency)");
    insta::assert_snapshot!(err("[fanout]\nmax_concurrency = 1001\n"), @"stages/test.toml:2:19: fanout.max_concurrency: 1001 is out of range: allowed 2..=1000 concurrent worker invocations (an SQS event source's MaximumConcurrency)");
    insta::assert_snapshot!(err("[lambda.fanout-worker]\nreserved_concurrency = 100\n[fanout]\nmax_concurrency = 101\n"), @"stages/test.toml:4:19: fanout.max_concurrency: 101 is more than the fanout-worker's reserved concurrency, 100: an SQS event source does not respect reserved concurrency, so past it Lambda throttles and the throttled jobs count toward max_receive_count (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html); set at most 100, or reserve more");
    insta::assert_snapshot!(err("[lambda]\nreserved_concurrency = 1\n[fanout]\nmax_concurrency = 2\n"), @"stages/test.toml:4:19: fanout.max_concurrency: 2 is more than the fanout-worker's reserved concurrency, 1: an SQS event source does not respect reserved concurrency, so past it Lambda throttles and the throttled jobs count toward max_receive_count (https://docs.aws.amazon.com/lambda/latest/dg/services-sqs-scaling.html); the event source takes at least 2: reserve at least 2, or leave max_concurrency out");
    insta::assert_snapshot!(err("[fanout]\nsegment = 4\n"), @"stages/test.toml:2:1: fanout.segment: unknown field `segment`, expected one of `mode`, `segments`, `batch_size`, `max_receive_count`, `max_concurrency`, `max_job_age_seconds`");
    insta::assert_snapshot!(err("[fanout]\nmax_job_age_seconds = 59\n"), @"stages/test.toml:2:23: fanout.max_job_age_seconds: 59 is out of range: allowed 60..=7200 seconds (past 2 h, API Gateway's longest connection, nobody who was connected when the message was sent is left)");
    insta::assert_snapshot!(err("[fanout]\nmax_job_age_seconds = 7201\n"), @"stages/test.toml:2:23: fanout.max_job_age_seconds: 7201 is out of range: allowed 60..=7200 seconds (past 2 h, API Gateway's longest connection, nobody who was connected when the message was sent is left)");
}

#[test]
fn fanout_max_job_age_defaults_to_15_minutes_and_is_read() {
    let s = stage::parse(Path::new("x.toml"), "x", "").expect("empty is valid");
    assert_eq!(s.fanout.max_job_age_seconds, 900);
    let s = stage::parse(
        Path::new("x.toml"),
        "x",
        "[fanout]\nmax_job_age_seconds = 3600\n",
    )
    .expect("valid");
    assert_eq!(s.fanout.max_job_age_seconds, 3600);
}

#[test]
fn the_limits_of_issue_18_are_read() {
    let s = stage::parse(
        Path::new("stages/test.toml"),
        "test",
        "[api]\nuser_message_rate = 750\nuser_message_burst = 9\nbroadcast_budget = 2500\n",
    )
    .expect("valid");
    assert_eq!(
        (
            s.api.user_message_rate,
            s.api.user_message_burst,
            s.api.broadcast_budget
        ),
        (750, 9, 2500)
    );
}
