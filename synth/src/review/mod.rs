//! `synth review TEMPLATE|cdk.out`: a stack's template as plain text a pull-request reviewer
//! reads in a minute, and the per-stage review snapshots in `synth/tests/review.rs`.
//!
//! Four sections: the resources grouped by type, one line each with its logical ID and its
//! key settings ([`settings`]); every IAM grant as one `holder: action on resource` line (the
//! grants of [`crate::diff::iam`], the same extraction `synth diff` compares); the parameters;
//! the outputs. Lines are not padded into columns and every list is sorted, so a change that
//! widens a permission or adds a resource reads as one added line in the snapshot's diff.

pub mod settings;

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Map, Value};

use crate::diff::values::{plain, show};
use crate::diff::{DiffError, iam, load};

/// Reads a template file or a cloud assembly and renders every stack in it, each under a
/// `# ID (stack NAME)` heading.
pub fn review_path(path: &Path) -> Result<String, DiffError> {
    let side = load::load(path)?;
    let stacks: Vec<String> = side
        .stacks()
        .iter()
        .map(|s| {
            let name = s
                .stack_name
                .as_deref()
                .map(|n| format!(" (stack {n})"))
                .unwrap_or_default();
            format!("# {}{name}\n\n{}", s.id, render(&s.template))
        })
        .collect();
    Ok(stacks.join("\n"))
}

/// One template as review text: Resources, IAM grants, Parameters and Outputs, in that order,
/// each section present (`(none)` when empty). The same template gives the same text.
pub fn render(template: &Value) -> String {
    [
        section("Resources", resource_lines(template)),
        section("IAM grants", grant_lines(template)),
        section("Parameters", parameter_lines(template)),
        section("Outputs", output_lines(template)),
    ]
    .join("\n")
}

/// A titled section, its lines indented under the title.
fn section(title: &str, lines: Vec<String>) -> String {
    let mut out = format!("{title}\n");
    if lines.is_empty() {
        out.push_str("  (none)\n");
    }
    for line in lines {
        out.push_str("  ");
        out.push_str(&line);
        out.push('\n');
    }
    out
}

/// The entries of a template section (`Resources`, `Outputs`, ...), sorted by logical ID.
fn entries<'t>(template: &'t Value, name: &str) -> Vec<(&'t String, &'t Value)> {
    let mut out: Vec<(&String, &Value)> = template
        .get(name)
        .and_then(Value::as_object)
        .map(Map::iter)
        .into_iter()
        .flatten()
        .collect();
    out.sort_by(|a, b| a.0.cmp(b.0));
    out
}

/// The resources grouped by type (types sorted), one indented line per resource.
fn resource_lines(template: &Value) -> Vec<String> {
    let mut by_type: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (id, resource) in entries(template, "Resources") {
        let ty = resource
            .get("Type")
            .and_then(Value::as_str)
            .unwrap_or("(no Type)");
        by_type
            .entry(ty)
            .or_default()
            .push(resource_line(id, ty, resource));
    }
    by_type
        .into_iter()
        .flat_map(|(ty, lines)| {
            std::iter::once(ty.to_owned()).chain(lines.into_iter().map(|l| format!("  {l}")))
        })
        .collect()
}

/// `ID: setting, setting, ...`, or the bare ID for a type without key settings.
fn resource_line(id: &str, ty: &str, resource: &Value) -> String {
    let props = resource.get("Properties").unwrap_or(&Value::Null);
    let mut parts = settings::settings(ty, props);
    if let Some(c) = resource.get("Condition") {
        parts.push(format!("if {}", plain(c)));
    }
    match resource.get("DeletionPolicy").map(plain) {
        Some(p) if p != "Delete" => parts.push(format!("DeletionPolicy {p}")),
        _ => {}
    }
    if parts.is_empty() {
        id.to_owned()
    } else {
        format!("{id}: {}", parts.join(", "))
    }
}

/// Every grant, trust and attachment of the template's roles and policies, sorted by holder,
/// action, resource: `ConnectRole: dynamodb:PutItem on ${ConnectionsTable.Arn}`.
pub fn grant_lines(template: &Value) -> Vec<String> {
    iam::grants(template)
        .iter()
        .map(ToString::to_string)
        .collect()
}

/// `Name: Type, default "x"`.
fn parameter_lines(template: &Value) -> Vec<String> {
    entries(template, "Parameters")
        .into_iter()
        .map(|(name, p)| {
            let ty = p.get("Type").map(plain).unwrap_or_default();
            match p.get("Default") {
                Some(d) => format!("{name}: {ty}, default {}", show(d)),
                None => format!("{name}: {ty}"),
            }
        })
        .collect()
}

/// `Name = value (export NAME) if CONDITION`.
fn output_lines(template: &Value) -> Vec<String> {
    entries(template, "Outputs")
        .into_iter()
        .map(|(name, o)| {
            let mut line = format!("{name} = {}", o.get("Value").map(plain).unwrap_or_default());
            if let Some(export) = o.pointer("/Export/Name") {
                line.push_str(&format!(" (export {})", plain(export)));
            }
            if let Some(c) = o.get("Condition") {
                line.push_str(&format!(" if {}", plain(c)));
            }
            line
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn a_role_with_two_actions_on_two_resources_gives_four_lines() {
        let t = json!({"Resources": {"WorkerRole": {"Type": "AWS::IAM::Role", "Properties": {
            "Policies": [{"PolicyName": "p", "PolicyDocument": {"Statement": [{
                "Effect": "Allow",
                "Action": ["sqs:ReceiveMessage", "sqs:DeleteMessage"],
                "Resource": [{"Fn::GetAtt": ["Queue", "Arn"]}, {"Ref": "Other"}]}]}}]}}}});
        assert_eq!(
            grant_lines(&t),
            [
                "WorkerRole: sqs:DeleteMessage on ${Other}",
                "WorkerRole: sqs:DeleteMessage on ${Queue.Arn}",
                "WorkerRole: sqs:ReceiveMessage on ${Other}",
                "WorkerRole: sqs:ReceiveMessage on ${Queue.Arn}",
            ]
        );
    }

    #[test]
    fn grants_render_intrinsics_readably_whatever_holds_them() {
        let sub = json!({"Fn::Sub": "arn:${AWS::Partition}:execute-api:${AWS::Region}:*:${Api}/*"});
        let join = json!({"Fn::Join": ["", [{"Fn::GetAtt": ["T", "Arn"]}, "/index/*"]]});
        let t = json!({"Resources": {
            "Push": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {"PolicyDocument":
                {"Statement": {"Effect": "Allow", "Action": "execute-api:Invoke", "Resource": sub}}}},
            "Extra": {"Type": "AWS::IAM::Policy", "Properties": {"PolicyDocument":
                {"Statement": [{"Effect": "Allow", "Action": "dynamodb:Query", "Resource": join}]}}}
        }});
        assert_eq!(
            grant_lines(&t),
            [
                "Extra: dynamodb:Query on ${T.Arn}/index/*",
                "Push: execute-api:Invoke on arn:${AWS::Partition}:execute-api:${AWS::Region}:*:${Api}/*",
            ]
        );
    }

    #[test]
    fn resources_group_by_type_and_sections_are_always_there() {
        let t = json!({
            "Resources": {
                "B": {"Type": "AWS::Logs::LogGroup", "Properties": {"RetentionInDays": 30}},
                "A": {"Type": "AWS::Logs::LogGroup", "Condition": "IsProd",
                      "DeletionPolicy": "Retain", "Properties": {}},
                "Topic": {"Type": "AWS::SNS::Topic"}
            },
            "Outputs": {"Url": {"Value": {"Fn::Sub": "wss://${Api}/dev"},
                                "Export": {"Name": {"Fn::Sub": "${AWS::StackName}-Url"}}}}
        });
        let text = render(&t);
        assert_eq!(
            text,
            "Resources\n  AWS::Logs::LogGroup\n    \
             A: retention never expires, if IsProd, DeletionPolicy Retain\n    \
             B: retention 30 d\n  AWS::SNS::Topic\n    Topic\n\n\
             IAM grants\n  (none)\n\nParameters\n  (none)\n\n\
             Outputs\n  Url = wss://${Api}/dev (export ${AWS::StackName}-Url)\n"
        );
    }
}
