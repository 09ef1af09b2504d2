//! The delivery metrics in CloudWatch's embedded metric format: one JSON line per delivery,
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
use wsstack_routes::metrics::{
    DIMENSIONS, HANDLER_DIMENSION, Metric, NAMESPACE, STAGE_DIMENSION,
};

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
    pub fn record(&self, endpoint: &str, report: &FanOutReport, now_ms: i64) {
        let values = [
            (Metric::Delivered, report.delivered),
            (Metric::Throttled, report.throttled),
            (Metric::CutOffAtDeadline, report.undelivered),
        ];
        if values.iter().all(|(_, n)| *n == 0) {
            return;
        }
        let stage = stage_of(endpoint);
        let line = emf_line(stage, &self.handler, &values, now_ms);
        match &self.sink {
            MetricsSink::Stdout => println!("{line}"),
            MetricsSink::Memory(lines) => lines
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(line),
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The specification's required members: `_aws.Timestamp` (a number), a non-empty
    /// `CloudWatchMetrics` whose directives have a `Namespace`, `Dimensions` (arrays of at most
    /// 30 names, each a root member with a string value) and `Metrics` (each `Name` a root
    /// member with a number value, `Unit` a CloudWatch unit).
    pub(crate) fn assert_valid_emf(line: &str) -> Value {
        let v: Value = serde_json::from_str(line).expect("a JSON line");
        assert!(v["_aws"]["Timestamp"].is_i64(), "{line}");
        let directives = v["_aws"]["CloudWatchMetrics"].as_array().expect("directives");
        assert!(!directives.is_empty());
        for d in directives {
            assert!(d["Namespace"].as_str().is_some_and(|n| !n.is_empty()));
            for set in d["Dimensions"].as_array().expect("dimension sets") {
                let set = set.as_array().expect("a dimension set");
                assert!(set.len() <= 30);
                for name in set {
                    let name = name.as_str().expect("a dimension name");
                    assert!(v[name].is_string(), "dimension {name} in {line}");
                }
            }
            for m in d["Metrics"].as_array().expect("metrics") {
                let name = m["Name"].as_str().expect("a metric name");
                assert!(v[name].is_number(), "metric {name} in {line}");
                assert_eq!(m["Unit"], "Count");
            }
        }
        v
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
            throttled: 2,
            undelivered: 3,
            ..FanOutReport::default()
        };
        metrics.record("https://abc.execute-api.eu-west-1.amazonaws.com/prod", &report, 1);
        metrics.record("https://x/prod", &FanOutReport::default(), 2);
        let lines = lines.lock().expect("lock");
        assert_eq!(lines.len(), 1, "nothing for a delivery that posted nothing");
        let v = assert_valid_emf(&lines[0]);
        assert_eq!(
            (&v["Stage"], &v["Handler"], &v["Delivered"], &v["Throttled"], &v["CutOffAtDeadline"]),
            (
                &json!("prod"),
                &json!("wsstack-prod-SendMessageFunction-AbC"),
                &json!(7),
                &json!(2),
                &json!(3)
            )
        );
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], "wsstack");
    }
}
