//! The key settings of a resource, by type: the few properties a reviewer checks first (a
//! function's memory and timeout, a table's point-in-time recovery, a queue's redrive, a
//! stage's throttling, an alarm's threshold). Types not listed here have none.
//!
//! Settings whose absence matters (a table without point-in-time recovery, a log group that
//! never expires) are spelled out when absent; the others only when present.

use serde_json::Value;

use crate::diff::values::plain;

/// The key settings of a resource of type `ty` with `props` as its `Properties`, in reading
/// order; empty for a type without key settings.
pub fn settings(ty: &str, props: &Value) -> Vec<String> {
    let p = Props(props);
    let parts = match ty {
        "AWS::Lambda::Function" => function(&p),
        "AWS::Lambda::Permission" => permission(&p),
        "AWS::Lambda::EventSourceMapping" => event_source(&p),
        "AWS::DynamoDB::Table" => table(&p),
        "AWS::SQS::Queue" => queue(&p),
        "AWS::ApiGatewayV2::Api" => api(&p),
        "AWS::ApiGatewayV2::Stage" => stage(&p),
        "AWS::ApiGatewayV2::Route" => route(&p),
        "AWS::ApiGatewayV2::Integration" => integration(&p),
        "AWS::ApiGatewayV2::Authorizer" => authorizer(&p),
        "AWS::CloudWatch::Alarm" => alarm(&p),
        "AWS::Logs::LogGroup" => log_group(&p),
        "AWS::Events::Rule" => rule(&p),
        "AWS::Events::EventBus" => vec![p.text("/Name")],
        "AWS::Cognito::UserPool" => user_pool(&p),
        _ => Vec::new(),
    };
    parts.into_iter().flatten().collect()
}

/// A resource's `Properties`, read by JSON pointer.
struct Props<'a>(&'a Value);

impl Props<'_> {
    fn get(&self, pointer: &str) -> Option<&Value> {
        self.0.pointer(pointer)
    }

    /// The value as text ([`text`]).
    fn text(&self, pointer: &str) -> Option<String> {
        self.get(pointer).map(text)
    }

    /// The value as text, formatted by `f`.
    fn with(&self, pointer: &str, f: impl FnOnce(String) -> String) -> Option<String> {
        self.text(pointer).map(f)
    }

    /// `LABEL on` or `LABEL off` for a flag, `off` where it is absent.
    fn flag(&self, pointer: &str, label: &str) -> Option<String> {
        let state = match self.get(pointer) {
            None | Some(Value::Bool(false)) => "off".to_owned(),
            Some(Value::Bool(true)) => "on".to_owned(),
            Some(other) => text(other),
        };
        Some(format!("{label} {state}"))
    }

    /// A duration in seconds, readably (`timeout 10 s`, `retention 14 d`).
    fn seconds(&self, pointer: &str, label: &str) -> Option<String> {
        self.get(pointer)
            .map(|v| format!("{label} {}", duration(v)))
    }

    /// A list (or a single value) joined with `sep`.
    fn list(&self, pointer: &str, sep: &str) -> Option<String> {
        self.get(pointer).map(|v| list(v, sep))
    }
}

/// A value as text: numbers without a needless `.0`, strings bare, intrinsics as `${...}`.
fn text(v: &Value) -> String {
    match v.as_f64() {
        Some(f) if v.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
        _ => plain(v),
    }
}

/// A list's items as text, joined; a single value as text.
fn list(v: &Value, sep: &str) -> String {
    match v {
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(sep),
        other => text(other),
    }
}

/// Seconds in the largest whole unit: `86400` is `1 d`, `360` is `6 min`, `45` is `45 s`.
fn duration(v: &Value) -> String {
    let Some(s) = v.as_u64().filter(|s| *s > 0) else {
        return format!("{} s", text(v));
    };
    let unit = [(86_400, "d"), (3_600, "h"), (60, "min")]
        .into_iter()
        .find(|(n, _)| s % n == 0);
    match unit {
        Some((n, name)) => format!("{} {name}", s / n),
        None => format!("{s} s"),
    }
}

fn function(p: &Props) -> Vec<Option<String>> {
    vec![
        p.text("/Runtime"),
        p.list("/Architectures", "+"),
        p.with("/MemorySize", |m| format!("{m} MB")),
        p.seconds("/Timeout", "timeout"),
        p.with("/ReservedConcurrentExecutions", |r| {
            format!("reserved concurrency {r}")
        }),
        p.with("/LoggingConfig/ApplicationLogLevel", |l| {
            format!("log level {l}")
        }),
    ]
}

/// `lambda:InvokeFunction on FUNCTION by PRINCIPAL from SOURCE`.
fn permission(p: &Props) -> Vec<Option<String>> {
    let mut line = format!(
        "{} on {} by {}",
        p.text("/Action").unwrap_or_default(),
        p.text("/FunctionName").unwrap_or_default(),
        p.text("/Principal").unwrap_or_default()
    );
    if let Some(source) = p.text("/SourceArn") {
        line.push_str(&format!(" from {source}"));
    }
    vec![Some(line)]
}

fn event_source(p: &Props) -> Vec<Option<String>> {
    vec![
        p.with("/EventSourceArn", |s| format!("from {s}")),
        p.with("/FunctionName", |f| format!("to {f}")),
        p.with("/BatchSize", |b| format!("batch {b}")),
        p.with("/ScalingConfig/MaximumConcurrency", |c| {
            format!("max concurrency {c}")
        }),
    ]
}

fn table(p: &Props) -> Vec<Option<String>> {
    let key = p.get("/KeySchema").and_then(Value::as_array).map(|keys| {
        let names: Vec<String> = keys
            .iter()
            .filter_map(|k| k.get("AttributeName").map(text))
            .collect();
        format!("key {}", names.join("+"))
    });
    let gsis = p
        .get("/GlobalSecondaryIndexes")
        .and_then(Value::as_array)
        .map(|g| g.iter().filter_map(|i| i.get("IndexName").map(text)))
        .map(|names| format!("GSIs {}", names.collect::<Vec<_>>().join(", ")));
    vec![
        key,
        Some(
            p.text("/BillingMode")
                .unwrap_or_else(|| "PROVISIONED".to_owned()),
        ),
        p.flag(
            "/PointInTimeRecoverySpecification/PointInTimeRecoveryEnabled",
            "PITR",
        ),
        p.flag("/DeletionProtectionEnabled", "deletion protection"),
        p.with("/TimeToLiveSpecification/AttributeName", |a| {
            format!("TTL {a}")
        }),
        p.with("/StreamSpecification/StreamViewType", |s| {
            format!("stream {s}")
        }),
        gsis,
    ]
}

fn queue(p: &Props) -> Vec<Option<String>> {
    let dlq = p.get("/RedrivePolicy/deadLetterTargetArn").map(|target| {
        let receives = p.text("/RedrivePolicy/maxReceiveCount").unwrap_or_default();
        format!("DLQ {} after {receives} receives", text(target))
    });
    vec![
        p.get("/FifoQueue")
            .filter(|f| **f == Value::Bool(true))
            .map(|_| "FIFO".to_owned()),
        p.seconds("/VisibilityTimeout", "visibility"),
        p.seconds("/MessageRetentionPeriod", "retention"),
        dlq,
    ]
}

fn api(p: &Props) -> Vec<Option<String>> {
    vec![p.text("/ProtocolType"), p.text("/Name")]
}

/// The stage name, its default throttling (or `throttling unset`), per-route throttling and
/// access logs.
fn stage(p: &Props) -> Vec<Option<String>> {
    let mut out = vec![
        p.text("/StageName"),
        Some(throttling(p.get("/DefaultRouteSettings"))),
    ];
    let mut routes: Vec<(&String, &Value)> = p
        .get("/RouteSettings")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
        .collect();
    routes.sort_by(|a, b| a.0.cmp(b.0));
    for (route, settings) in routes {
        out.push(Some(format!("{route} {}", throttling(Some(settings)))));
    }
    out.push(p.with("/AccessLogSettings/DestinationArn", |d| {
        format!("access logs to {d}")
    }));
    out
}

/// `throttling 1000/s burst 2000`, from route settings.
fn throttling(settings: Option<&Value>) -> String {
    let field = |name: &str| settings.and_then(|s| s.get(name)).map(text);
    match (field("ThrottlingRateLimit"), field("ThrottlingBurstLimit")) {
        (None, None) => "throttling unset".to_owned(),
        (rate, burst) => format!(
            "throttling {}/s burst {}",
            rate.unwrap_or_else(|| "-".to_owned()),
            burst.unwrap_or_else(|| "-".to_owned())
        ),
    }
}

fn route(p: &Props) -> Vec<Option<String>> {
    vec![
        p.text("/RouteKey"),
        p.with("/AuthorizationType", |a| format!("auth {a}")),
        p.with("/Target", |t| format!("to {t}")),
    ]
}

/// The integration's type and, for a Lambda integration, the function it invokes.
fn integration(p: &Props) -> Vec<Option<String>> {
    let function = p.text("/IntegrationUri").map(|uri| {
        match uri
            .split_once("/functions/")
            .and_then(|(_, f)| f.strip_suffix("/invocations"))
        {
            Some(f) => format!("to {f}"),
            None => format!("to {uri}"),
        }
    });
    vec![p.text("/IntegrationType"), function]
}

fn authorizer(p: &Props) -> Vec<Option<String>> {
    vec![p.text("/AuthorizerType"), p.list("/IdentitySource", " ")]
}

/// `NAMESPACE METRIC (DIMENSIONS) STATISTIC >= THRESHOLD, N of M x PERIOD`.
fn alarm(p: &Props) -> Vec<Option<String>> {
    let dimensions = p.get("/Dimensions").and_then(Value::as_array).map(|d| {
        d.iter()
            .map(|x| {
                let field = |k: &str| x.get(k).map(text).unwrap_or_default();
                format!("{}={}", field("Name"), field("Value"))
            })
            .collect::<Vec<_>>()
            .join(" ")
    });
    let metric = match (p.text("/Namespace"), p.text("/MetricName")) {
        (Some(ns), Some(name)) => Some(format!("{ns} {name}")),
        _ => metric_math(p),
    };
    let statistic = p
        .text("/Statistic")
        .or_else(|| p.text("/ExtendedStatistic"));
    let condition = format!(
        "{} {}",
        comparison(&p.text("/ComparisonOperator").unwrap_or_default()),
        p.text("/Threshold").unwrap_or_default()
    );
    let evaluation = p.text("/EvaluationPeriods").map(|m| {
        let n = p.text("/DatapointsToAlarm").unwrap_or_else(|| m.clone());
        let period = p.get("/Period").map(duration).unwrap_or_default();
        format!("{n} of {m} x {period}").trim_end().to_owned()
    });
    let head = [metric, dimensions.map(|d| format!("({d})")), statistic]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    vec![
        Some(format!("{head} {condition}")),
        evaluation,
        p.with("/TreatMissingData", |t| format!("missing data {t}")),
    ]
}

/// A metric-math alarm: the expression whose result it watches.
fn metric_math(p: &Props) -> Option<String> {
    let metrics = p.get("/Metrics").and_then(Value::as_array)?;
    let watched = metrics
        .iter()
        .find(|m| m.get("ReturnData") == Some(&Value::Bool(true)))
        .or(metrics.first())?;
    watched
        .get("Expression")
        .map(|e| format!("metric math {}", text(e)))
        .or_else(|| watched.pointer("/MetricStat/Metric/MetricName").map(text))
}

/// `GreaterThanOrEqualToThreshold` as `>=`; other operators (anomaly bands) as they are.
fn comparison(op: &str) -> String {
    match op {
        "GreaterThanOrEqualToThreshold" => ">=",
        "GreaterThanThreshold" => ">",
        "LessThanThreshold" => "<",
        "LessThanOrEqualToThreshold" => "<=",
        other => other,
    }
    .to_owned()
}

fn log_group(p: &Props) -> Vec<Option<String>> {
    vec![
        p.text("/LogGroupName"),
        Some(match p.text("/RetentionInDays") {
            Some(days) => format!("retention {days} d"),
            None => "retention never expires".to_owned(),
        }),
        p.with("/KmsKeyId", |k| format!("KMS {k}")),
    ]
}

fn rule(p: &Props) -> Vec<Option<String>> {
    let targets = p.get("/Targets").and_then(Value::as_array).map(|t| {
        let arns: Vec<String> = t.iter().filter_map(|x| x.get("Arn").map(text)).collect();
        format!("to {}", arns.join(", "))
    });
    vec![
        p.text("/ScheduleExpression"),
        p.with("/EventBusName", |b| format!("on {b}")),
        p.with("/EventPattern", |e| format!("pattern {e}")),
        p.text("/State"),
        targets,
    ]
}

fn user_pool(p: &Props) -> Vec<Option<String>> {
    vec![
        p.with("/MfaConfiguration", |m| format!("MFA {m}")),
        p.with("/DeletionProtection", |d| {
            format!("deletion protection {d}")
        }),
        p.get("/AdminCreateUserConfig/AllowAdminCreateUserOnly")
            .filter(|a| **a == Value::Bool(true))
            .map(|_| "admin-created users only".to_owned()),
    ]
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn functions_tables_queues_stages_and_alarms() {
        let f = json!({"Runtime": "provided.al2023", "Architectures": ["arm64"],
            "MemorySize": 512, "Timeout": 10, "ReservedConcurrentExecutions": 100});
        assert_eq!(
            settings("AWS::Lambda::Function", &f).join(", "),
            "provided.al2023, arm64, 512 MB, timeout 10 s, reserved concurrency 100"
        );
        let t = json!({"KeySchema": [{"AttributeName": "pk"}, {"AttributeName": "sk"}],
            "BillingMode": "PAY_PER_REQUEST", "GlobalSecondaryIndexes": [{"IndexName": "byUser"}]});
        assert_eq!(
            settings("AWS::DynamoDB::Table", &t).join(", "),
            "key pk+sk, PAY_PER_REQUEST, PITR off, deletion protection off, GSIs byUser"
        );
        let q = json!({"VisibilityTimeout": 360, "MessageRetentionPeriod": 1209600,
            "RedrivePolicy": {"deadLetterTargetArn": {"Fn::GetAtt": ["Dlq", "Arn"]},
                              "maxReceiveCount": 5}});
        assert_eq!(
            settings("AWS::SQS::Queue", &q).join(", "),
            "visibility 6 min, retention 14 d, DLQ ${Dlq.Arn} after 5 receives"
        );
        let s = json!({"StageName": "prod", "DefaultRouteSettings":
            {"ThrottlingRateLimit": 1000.0, "ThrottlingBurstLimit": 2000}});
        assert_eq!(
            settings("AWS::ApiGatewayV2::Stage", &s).join(", "),
            "prod, throttling 1000/s burst 2000"
        );
        let routes = json!({"StageName": "dev", "RouteSettings": {
            "sendMessage": {"ThrottlingRateLimit": 10}, "$connect": {"ThrottlingBurstLimit": 5}}});
        assert_eq!(
            settings("AWS::ApiGatewayV2::Stage", &routes).join(", "),
            "dev, throttling unset, $connect throttling -/s burst 5, sendMessage throttling 10/s burst -"
        );
        let a = json!({"Namespace": "AWS/Lambda", "MetricName": "Errors", "Statistic": "Sum",
            "Dimensions": [{"Name": "FunctionName", "Value": {"Ref": "F"}}], "Period": 300,
            "EvaluationPeriods": 1, "Threshold": 1.0,
            "ComparisonOperator": "GreaterThanOrEqualToThreshold"});
        assert_eq!(
            settings("AWS::CloudWatch::Alarm", &a).join(", "),
            "AWS/Lambda Errors (FunctionName=${F}) Sum >= 1, 1 of 1 x 5 min"
        );
        assert!(settings("AWS::SNS::Topic", &json!({"DisplayName": "x"})).is_empty());
    }
}
