//! The stage's CloudWatch dashboard: connections, messages and the refusals over rate limits,
//! deliveries and forwarded actions (wsstack's own metrics), the fan-out queue, latency, the API's errors, and per function its errors, throttles and
//! duration. Built from typed widgets serialized with serde; the body is a JSON string in an
//! `Fn::Sub`, so `${Logical}` and `${Logical.Attr}` placeholders resolve to the stack's
//! resources (the body's structure:
//! <https://docs.aws.amazon.com/AmazonCloudWatch/latest/APIReference/CloudWatch-Dashboard-Body-Structure.html>).

use serde::Serialize;
use serde::ser::{SerializeSeq, Serializer};
use wsstack_routes::Handler;
use wsstack_routes::metrics::{self, Metric};

use super::alarms::{API_GATEWAY_NAMESPACE, LAMBDA_NAMESPACE, SQS_NAMESPACE};
use super::{handlers_in, ids};
use crate::cfn::resources::cloudwatch::Dashboard;
use crate::cfn::{Expr, Resource, Template};
use crate::stage::Stage;

/// The dashboard grid's width (CloudWatch's: 24 columns).
pub const GRID_WIDTH: u32 = 24;
/// A graph's size: two side by side.
pub const GRAPH_WIDTH: u32 = 12;
pub const GRAPH_HEIGHT: u32 = 6;
/// The heading's height.
pub const HEADING_HEIGHT: u32 = 2;
/// Every graph's period, in seconds: the alarms' 5 minutes.
pub const PERIOD_SECONDS: u32 = 300;

/// The whole body.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct DashboardBody {
    /// The time range shown when the dashboard opens, e.g. `-PT6H` (the last 6 hours).
    pub start: &'static str,
    /// `inherit`: each graph keeps its own period.
    pub period_override: &'static str,
    pub widgets: Vec<Widget>,
}

/// A widget: its place on the grid and what it shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Widget {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
    /// `type` and `properties`.
    #[serde(flatten)]
    pub content: WidgetContent,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", content = "properties", rename_all = "lowercase")]
pub enum WidgetContent {
    Metric(MetricWidget),
    Text(TextWidget),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TextWidget {
    pub markdown: String,
}

/// A graph of metrics over time.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MetricWidget {
    pub title: String,
    /// Always `timeSeries`.
    pub view: &'static str,
    /// Lines, not stacked areas: false.
    pub stacked: bool,
    /// `${AWS::Region}`: the stack's.
    pub region: String,
    /// Seconds per point: [`PERIOD_SECONDS`].
    pub period: u32,
    /// The default statistic of the widget's lines.
    pub stat: Stat,
    pub metrics: Vec<MetricLine>,
}

/// A statistic, as the dashboard spells it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Stat {
    Sum,
    Average,
    Maximum,
    #[serde(rename = "p99")]
    P99,
}

/// One line of a graph: `[namespace, name, dim1, value1, ..., {options}]`.
#[derive(Debug, Clone, PartialEq)]
pub struct MetricLine {
    pub namespace: &'static str,
    pub name: &'static str,
    /// Dimension name and value (a `${...}` placeholder of the stack's resources).
    pub dimensions: Vec<(&'static str, String)>,
    pub options: LineOptions,
}

/// A line's rendering options; `None` fields are left out (the widget's defaults apply).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct LineOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stat: Option<Stat>,
    /// `right` for a second axis (ages, durations beside counts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub y_axis: Option<&'static str>,
}

impl Serialize for MetricLine {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut seq = s.serialize_seq(Some(3 + 2 * self.dimensions.len()))?;
        seq.serialize_element(self.namespace)?;
        seq.serialize_element(self.name)?;
        for (name, value) in &self.dimensions {
            seq.serialize_element(name)?;
            seq.serialize_element(value)?;
        }
        seq.serialize_element(&self.options)?;
        seq.end()
    }
}

/// `${Logical}`: `Ref` of a resource, inside the body's `Fn::Sub`.
fn sub_ref(logical_id: &str) -> String {
    format!("${{{logical_id}}}")
}

/// `${Logical.Attr}`: `Fn::GetAtt`, inside the body's `Fn::Sub`.
fn sub_att(logical_id: &str, attribute: &str) -> String {
    format!("${{{logical_id}.{attribute}}}")
}

fn line(
    namespace: &'static str,
    name: &'static str,
    dimensions: Vec<(&'static str, String)>,
    options: LineOptions,
) -> MetricLine {
    MetricLine {
        namespace,
        name,
        dimensions,
        options,
    }
}

fn labelled(label: &str) -> LineOptions {
    LineOptions {
        label: Some(label.to_owned()),
        ..LineOptions::default()
    }
}

fn graph(title: String, stat: Stat, metrics: Vec<MetricLine>) -> MetricWidget {
    MetricWidget {
        title,
        view: "timeSeries",
        stacked: false,
        region: "${AWS::Region}".to_owned(),
        period: PERIOD_SECONDS,
        stat,
        metrics,
    }
}

/// The API's dimensions: `ApiId` and `Stage`.
fn api_dims() -> Vec<(&'static str, String)> {
    vec![("ApiId", sub_ref(ids::API)), ("Stage", sub_ref(ids::STAGE))]
}

/// One of wsstack's own metrics as handler `h` emits it (dimensions `Stage`, `Handler`),
/// labelled with the handler's name and `what`.
fn wsstack_line(h: Handler, m: Metric, what: &str) -> MetricLine {
    line(
        metrics::NAMESPACE,
        m.name(),
        vec![
            (metrics::STAGE_DIMENSION, sub_ref(ids::STAGE)),
            (metrics::HANDLER_DIMENSION, sub_ref(&ids::function(h))),
        ],
        labelled(&format!("{} {what}", h.name())),
    )
}

/// The API's messages beside the messages the handlers of `handlers` refused over a rate
/// limit (wsstack's `RateLimited` per rate-limited route, `BroadcastBudgetExceeded` per route
/// that broadcasts): a flood shows as refusals rising with the messages.
fn messages_graph(handlers: &[Handler]) -> MetricWidget {
    let mut lines = vec![line(
        API_GATEWAY_NAMESPACE,
        "MessageCount",
        api_dims(),
        labelled("messages"),
    )];
    let in_stack = |h: &Handler| handlers.contains(h);
    for h in metrics::rate_limited_handlers().filter(in_stack) {
        lines.push(wsstack_line(h, Metric::RateLimited, "rate-limited"));
    }
    for h in metrics::budgeted_handlers().filter(in_stack) {
        lines.push(wsstack_line(
            h,
            Metric::BroadcastBudgetExceeded,
            "over the broadcast budget",
        ));
    }
    graph(
        "Messages (MessageCount) and refusals over rate limits".to_owned(),
        Stat::Sum,
        lines,
    )
}

/// The graphs of the API: connections, messages, latency, errors.
fn api_graphs(handlers: &[Handler]) -> Vec<MetricWidget> {
    let api = |name, options| line(API_GATEWAY_NAMESPACE, name, api_dims(), options);
    vec![
        graph(
            "Connections (ConnectCount)".to_owned(),
            Stat::Sum,
            vec![api("ConnectCount", labelled("connects"))],
        ),
        messages_graph(handlers),
        graph(
            "Integration latency (ms)".to_owned(),
            Stat::Average,
            vec![
                api("IntegrationLatency", labelled("average")),
                api(
                    "IntegrationLatency",
                    LineOptions {
                        label: Some("p99".to_owned()),
                        stat: Some(Stat::P99),
                        y_axis: None,
                    },
                ),
            ],
        ),
        graph(
            "API errors".to_owned(),
            Stat::Sum,
            vec![
                api("IntegrationError", labelled("integration errors")),
                api("ExecutionError", labelled("execution errors")),
                api("ClientError", labelled("client errors")),
            ],
        ),
    ]
}

/// Deliveries and their failures, per broadcasting handler in the stack (wsstack's metrics).
fn delivery_graph(handlers: &[Handler]) -> MetricWidget {
    let mut lines = Vec::new();
    for h in handlers
        .iter()
        .filter(|h| metrics::broadcasting_handlers().any(|d| d == **h))
    {
        for m in Metric::DELIVERY {
            lines.push(wsstack_line(*h, m, m.name()));
        }
    }
    graph(
        "Deliveries, 429s and cut-offs (wsstack metrics)".to_owned(),
        Stat::Sum,
        lines,
    )
}

/// Forwarded actions put on the bus, those that failed and the `PutEvents` retries, per
/// forwarding handler in the stack (wsstack's metrics); `None` without one.
fn forward_graph(handlers: &[Handler]) -> Option<MetricWidget> {
    let lines: Vec<MetricLine> = metrics::forwarding_handlers()
        .filter(|h| handlers.contains(h))
        .flat_map(|h| {
            [
                wsstack_line(h, Metric::Forwarded, "Forwarded"),
                wsstack_line(h, Metric::ForwardFailed, "ForwardFailed"),
                wsstack_line(h, Metric::ForwardRetried, "ForwardRetried"),
            ]
        })
        .collect();
    (!lines.is_empty()).then(|| {
        graph(
            "Forwarded actions and their failures (wsstack metrics)".to_owned(),
            Stat::Sum,
            lines,
        )
    })
}

/// The fan-out queue: depth of the queue and the dead-letter queue, the oldest job's age.
fn queue_graph() -> MetricWidget {
    let queue = |id: &str| vec![("QueueName", sub_att(id, "QueueName"))];
    graph(
        "Fan-out queue".to_owned(),
        Stat::Maximum,
        vec![
            line(
                SQS_NAMESPACE,
                "ApproximateNumberOfMessagesVisible",
                queue(ids::FANOUT_QUEUE),
                labelled("jobs waiting"),
            ),
            line(
                SQS_NAMESPACE,
                "ApproximateNumberOfMessagesVisible",
                queue(ids::FANOUT_DEAD_LETTER_QUEUE),
                labelled("dead letters"),
            ),
            line(
                SQS_NAMESPACE,
                "ApproximateAgeOfOldestMessage",
                queue(ids::FANOUT_QUEUE),
                LineOptions {
                    label: Some("oldest job (s)".to_owned()),
                    stat: None,
                    y_axis: Some("right"),
                },
            ),
        ],
    )
}

/// A function's errors and throttles, and its average duration on the right axis.
fn function_graph(h: Handler) -> MetricWidget {
    let f = || vec![("FunctionName", sub_ref(&ids::function(h)))];
    graph(
        format!("{} function", h.name()),
        Stat::Sum,
        vec![
            line(LAMBDA_NAMESPACE, "Errors", f(), labelled("errors")),
            line(LAMBDA_NAMESPACE, "Throttles", f(), labelled("throttles")),
            line(
                LAMBDA_NAMESPACE,
                "Duration",
                f(),
                LineOptions {
                    label: Some("duration (ms, average)".to_owned()),
                    stat: Some(Stat::Average),
                    y_axis: Some("right"),
                },
            ),
        ],
    )
}

/// The dashboard's body for the functions of `handlers`: a heading, then the graphs two by two.
pub fn body(stage: &Stage, handlers: &[Handler]) -> DashboardBody {
    let mut graphs = api_graphs(handlers);
    let mut middle = vec![delivery_graph(handlers)];
    middle.extend(forward_graph(handlers));
    middle.push(queue_graph());
    graphs.splice(2..2, middle);
    graphs.extend(handlers.iter().map(|h| function_graph(*h)));
    let mut widgets = vec![Widget {
        x: 0,
        y: 0,
        width: GRID_WIDTH,
        height: HEADING_HEIGHT,
        content: WidgetContent::Text(TextWidget {
            markdown: format!(
                "# wsstack, stage {}\nThe API, the fan-out queue and each function. Deliveries, forwarded actions and the refusals over rate limits are wsstack's own metrics (namespace `{}`), which the handlers write in embedded metric format.",
                stage.name,
                metrics::NAMESPACE
            ),
        }),
    }];
    let per_row = GRID_WIDTH / GRAPH_WIDTH;
    widgets.extend(graphs.into_iter().zip(0u32..).map(|(g, i)| Widget {
        x: (i % per_row) * GRAPH_WIDTH,
        y: HEADING_HEIGHT + (i / per_row) * GRAPH_HEIGHT,
        width: GRAPH_WIDTH,
        height: GRAPH_HEIGHT,
        content: WidgetContent::Metric(g),
    }));
    DashboardBody {
        start: "-PT6H",
        period_override: "inherit",
        widgets,
    }
}

/// Adds the dashboard, covering the functions already in `t`. Call after every function, the
/// queues and the API's stage are in `t`.
pub fn add(t: &mut Template, stage: &Stage) {
    let body = body(stage, &handlers_in(t));
    // Strings, numbers and derived structs with string keys: serde_json cannot fail on them.
    let json = serde_json::to_string(&body).expect("a dashboard body serializes");
    t.add(
        ids::DASHBOARD,
        Resource::new(Dashboard {
            dashboard_name: Some(Expr::sub("${AWS::StackName}-${AWS::Region}")),
            dashboard_body: Expr::sub(json),
        }),
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::test_stage;

    #[test]
    fn widgets_tile_the_grid_without_overlap() {
        let b = body(&test_stage(""), &Handler::ALL);
        let mut cells = std::collections::BTreeSet::new();
        for w in &b.widgets {
            assert!(w.x + w.width <= GRID_WIDTH);
            for x in w.x..w.x + w.width {
                for y in w.y..w.y + w.height {
                    assert!(cells.insert((x, y)), "overlap at {x},{y}");
                }
            }
        }
        // A heading, 7 graphs for the API, the queue and the forwarded actions, one per
        // function.
        assert_eq!(b.widgets.len(), 1 + 7 + Handler::ALL.len());
    }

    #[test]
    fn a_metric_line_is_namespace_name_dimensions_options() {
        let l = line(
            LAMBDA_NAMESPACE,
            "Errors",
            vec![("FunctionName", sub_ref("F"))],
            labelled("errors"),
        );
        assert_eq!(
            serde_json::to_value(&l).expect("json"),
            serde_json::json!(["AWS/Lambda", "Errors", "FunctionName", "${F}", {"label": "errors"}])
        );
    }

    /// Issue 19: forwarded actions beside the deliveries, refusals over rate limits beside the
    /// messages; no forwards graph in a stack without a forwarding handler.
    #[test]
    fn forwards_and_refusals_are_graphed_beside_deliveries_and_messages() {
        let titles = |handlers: &[Handler]| -> Vec<String> {
            body(&test_stage(""), handlers)
                .widgets
                .into_iter()
                .filter_map(|w| match w.content {
                    WidgetContent::Metric(m) => Some(m.title),
                    WidgetContent::Text(_) => None,
                })
                .collect()
        };
        let all = titles(&Handler::ALL);
        assert!(all[1].starts_with("Messages"), "{all:?}");
        assert!(all[2].starts_with("Deliveries"), "{all:?}");
        assert!(all[3].starts_with("Forwarded actions"), "{all:?}");
        let without: Vec<Handler> = Handler::ALL
            .into_iter()
            .filter(|h| *h != Handler::Forward)
            .collect();
        assert!(!titles(&without).iter().any(|t| t.starts_with("Forwarded")));
        let messages = messages_graph(&[Handler::SendMessage, Handler::Connect]);
        let names: Vec<&str> = messages.metrics.iter().map(|l| l.name).collect();
        assert_eq!(
            names,
            ["MessageCount", "RateLimited", "BroadcastBudgetExceeded"],
            "send-message is rate limited and budgeted, $connect neither"
        );
    }

    #[test]
    fn a_widget_has_type_and_properties() {
        let b = body(&test_stage(""), &[Handler::Connect]);
        let v = serde_json::to_value(&b).expect("json");
        assert_eq!(v["widgets"][0]["type"], "text");
        assert_eq!(v["widgets"][1]["type"], "metric");
        assert_eq!(v["widgets"][1]["properties"]["region"], "${AWS::Region}");
        assert_eq!(v["periodOverride"], "inherit");
    }
}
