//! wsstack's metrics in CloudWatch's embedded metric format: one JSON line per delivery (and per
//! forwarded action, refused message, expired job),
//! written to standard output, which Lambda sends to CloudWatch Logs and CloudWatch turns into
//! metrics; no `PutMetricData` call, no added latency
//! (<https://docs.aws.amazon.com/AmazonCloudWatch/latest/monitoring/CloudWatch_Embedded_Metric_Format_Specification.html>).
//!
//! A line is a top-level JSON object, never wrapped in another (Lambda's JSON log format keeps
//! such a line as it is, which is what CloudWatch needs to read it): `_aws` with `Timestamp`
//! (epoch milliseconds) and one metric directive (namespace, the dimension set, the metrics
//! with their unit), then the dimensions' and the metrics' values as members. Names, namespace
//! and dimensions are [`wsstack_routes::metrics`]'s, which synth's alarms and dashboard read.

use std::sync::{Arc, Mutex};

use serde_json::{Map, Value, json};
use wsstack_routes::metrics::{DIMENSIONS, HANDLER_DIMENSION, Metric, NAMESPACE, STAGE_DIMENSION};

use crate::fanout::FanOutReport;

/// Where metric lines go.
#[derive(Debug, Clone)]
pub enum MetricsSink {
    /// Standard output (in Lambda: CloudWatch Logs).
    Stdout,
    /// Kept in memory (tests).
    Memory(Arc<Mutex<Vec<String>>>),
}

/// The dimension values of one function's metric lines and where they go.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// The `Handler` dimension: the function's name (`AWS_LAMBDA_FUNCTION_NAME`), as synth's
    /// alarms name it with `Ref` of the function.
    pub handler: String,
    pub sink: MetricsSink,
}

impl Metrics {
    /// In Lambda: the function's name from `AWS_LAMBDA_FUNCTION_NAME`, lines to standard
    /// output; `None` outside Lambda (the variable unset).
    pub fn from_lambda_env() -> Option<Metrics> {
        std::env::var("AWS_LAMBDA_FUNCTION_NAME")
            .ok()
            .filter(|n| !n.is_empty())
            .map(|handler| Metrics {
                handler,
                sink: MetricsSink::Stdout,
            })
    }

    /// Writes the line of one delivery through `endpoint` (whose last path segment is the API
    /// stage: `https://{api}.execute-api.{region}.amazonaws.com/{stage}`). Nothing when the
    /// delivery posted nothing.
    pub fn record(&self, endpoint: &str, report: &FanOutReport, queued: usize, now_ms: i64) {
        let values = Metric::DELIVERY.map(|m| {
            let n = match m {
                Metric::Delivered => report.delivered,
                Metric::Gone => report.gone,
                Metric::Throttled => report.throttled,
                Metric::Failed => report.failed,
                Metric::CutOffAtDeadline => report.undelivered,
                Metric::Queued => queued,
                Metric::JobsExpired
                | Metric::Forwarded
                | Metric::ForwardFailed
                | Metric::ForwardRetried
                | Metric::RateLimited
                | Metric::BroadcastBudgetExceeded => 0,
            };
            (m, n)
        });
        if values.iter().all(|(_, n)| *n == 0) {
            return;
        }
        self.write(emf_line(stage_of(endpoint), &self.handler, &values, now_ms));
    }

    /// One count of `metric` (a job dropped for its age, ...) for the stage of `endpoint`.
    pub fn count(&self, endpoint: &str, metric: Metric, n: usize, now_ms: i64) {
        self.count_in_stage(stage_of(endpoint), metric, n, now_ms);
    }

    /// One count of `metric` (a forwarded action, a refused message, ...) for `stage`, the API
    /// stage a route's event names (`requestContext.stage`). Nothing when `n` is 0.
    pub fn count_in_stage(&self, stage: &str, metric: Metric, n: usize, now_ms: i64) {
        if n > 0 {
            self.write(emf_line(stage, &self.handler, &[(metric, n)], now_ms));
        }
    }

    fn write(&self, line: String) {
        match &self.sink {
            MetricsSink::Stdout => println!("{line}"),
            MetricsSink::Memory(lines) => {
                lines.lock().unwrap_or_else(|p| p.into_inner()).push(line)
            }
        }
    }
}

/// The API stage of a callback endpoint: its last path segment.
fn stage_of(endpoint: &str) -> &str {
    endpoint
        .trim_end_matches('/')
        .rsplit('/')
        .next()
        .unwrap_or_default()
}

/// One EMF line: the directive, then the dimensions' and metrics' values at the root.
pub fn emf_line(stage: &str, handler: &str, values: &[(Metric, usize)], now_ms: i64) -> String {
    let metrics: Vec<Value> = values
        .iter()
        .map(|(m, _)| json!({"Name": m.name(), "Unit": m.unit()}))
        .collect();
    let mut root = Map::new();
    root.insert(
        "_aws".to_owned(),
        json!({
            "Timestamp": now_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [DIMENSIONS],
                "Metrics": metrics,
            }]
        }),
    );
    root.insert(STAGE_DIMENSION.to_owned(), json!(stage));
    root.insert(HANDLER_DIMENSION.to_owned(), json!(handler));
    for (metric, n) in values {
        root.insert(metric.name().to_owned(), json!(n));
    }
    Value::Object(root).to_string()
}

/// Checks a line against the specification's required members: a JSON object whose `_aws`
/// has a numeric `Timestamp` and a non-empty `CloudWatchMetrics`, each directive with a
/// `Namespace`, `Dimensions` (sets of at most 30 names, each a root member with a string
/// value) and `Metrics` (each `Name` a root member with a number value). The parsed line, or
/// what is wrong with it.
pub fn validate(line: &str) -> Result<Value, String> {
    let v: Value = serde_json::from_str(line).map_err(|e| format!("not JSON: {e}"))?;
    if !v["_aws"]["Timestamp"].is_i64() {
        return Err("_aws.Timestamp is not an integer (epoch milliseconds)".into());
    }
    let directives = v["_aws"]["CloudWatchMetrics"]
        .as_array()
        .filter(|d| !d.is_empty())
        .ok_or("_aws.CloudWatchMetrics is not a non-empty array")?;
    for d in directives {
        if d["Namespace"].as_str().is_none_or(str::is_empty) {
            return Err("a directive has no Namespace".into());
        }
        let sets = d["Dimensions"]
            .as_array()
            .ok_or("a directive has no Dimensions")?;
        for set in sets {
            let set = set.as_array().ok_or("a dimension set is not an array")?;
            if set.len() > 30 {
                return Err("a dimension set has more than 30 names".into());
            }
            for name in set {
                let name = name.as_str().ok_or("a dimension name is not a string")?;
                if !v[name].is_string() {
                    return Err(format!("dimension {name} has no string value at the root"));
                }
            }
        }
        let metrics = d["Metrics"]
            .as_array()
            .ok_or("a directive has no Metrics")?;
        for m in metrics {
            let name = m["Name"].as_str().ok_or("a metric has no Name")?;
            if !v[name].is_number() {
                return Err(format!("metric {name} has no number value at the root"));
            }
        }
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_valid_emf(line: &str) -> Value {
        validate(line).unwrap_or_else(|e| panic!("{e}: {line}"))
    }

    #[test]
    fn lines_missing_a_required_member_are_refused_naming_it() {
        for (line, names) in [
            ("nope", "not JSON"),
            (r#"{"_aws": {}}"#, "Timestamp"),
            (
                r#"{"_aws": {"Timestamp": 1, "CloudWatchMetrics": []}}"#,
                "CloudWatchMetrics",
            ),
            (
                r#"{"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "n", "Dimensions": [["Stage"]], "Metrics": []}]}}"#,
                "dimension Stage",
            ),
            (
                r#"{"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Namespace": "n", "Dimensions": [], "Metrics": [{"Name": "Delivered"}]}]}}"#,
                "metric Delivered",
            ),
        ] {
            let err = validate(line).expect_err(line);
            assert!(err.contains(names), "{line}: {err}");
        }
    }

    #[test]
    fn a_delivery_makes_one_valid_line_with_the_stage_and_handler() {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let metrics = Metrics {
            handler: "wsstack-prod-SendMessageFunction-AbC".into(),
            sink: MetricsSink::Memory(lines.clone()),
        };
        let report = FanOutReport {
            delivered: 7,
            gone: 1,
            throttled: 2,
            failed: 4,
            undelivered: 3,
            ..FanOutReport::default()
        };
        let endpoint = "https://abc.execute-api.eu-west-1.amazonaws.com/prod";
        metrics.record(endpoint, &report, 1, 1);
        metrics.record("https://x/prod", &FanOutReport::default(), 0, 2);
        metrics.count(endpoint, Metric::JobsExpired, 0, 3);
        metrics.count(endpoint, Metric::JobsExpired, 2, 4);
        metrics.count_in_stage("prod", Metric::RateLimited, 0, 5);
        metrics.count_in_stage("prod", Metric::RateLimited, 1, 6);
        let lines = lines.lock().expect("lock");
        assert_eq!(
            lines.len(),
            3,
            "nothing for what counted nothing: {lines:?}"
        );
        let v = assert_valid_emf(&lines[0]);
        assert_eq!(
            (&v["Stage"], &v["Handler"]),
            (
                &json!("prod"),
                &json!("wsstack-prod-SendMessageFunction-AbC")
            )
        );
        let counts: Vec<&Value> = Metric::DELIVERY.iter().map(|m| &v[m.name()]).collect();
        assert_eq!(
            counts,
            [
                &json!(7),
                &json!(1),
                &json!(2),
                &json!(4),
                &json!(3),
                &json!(1)
            ]
        );
        let expired = assert_valid_emf(&lines[1]);
        assert_eq!(expired["JobsExpired"], 2);
        let directive = &expired["_aws"]["CloudWatchMetrics"][0]["Metrics"];
        assert_eq!(directive.as_array().map(Vec::len), Some(1));
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "wsstack");
        let limited = assert_valid_emf(&lines[2]);
        assert_eq!(
            (&limited["Stage"], &limited["RateLimited"]),
            (&json!("prod"), &json!(1))
        );
    }
}
