//! IAM permissions granted and revoked: the statements of `AWS::IAM::Role` inline `Policies`
//! and trust policies, `AWS::IAM::Policy` and `AWS::IAM::ManagedPolicy`, each expanded into
//! one (effect, action, resource) line per combination, and the attachments (a role's
//! `ManagedPolicyArns`, a policy's `Roles`, `Users`, `Groups`), compared as sets. Resource
//! policies count too: an SQS queue's, an SNS topic's or an S3 bucket's policy document, and a
//! Lambda function's invoke permission (`AWS::Lambda::Permission`: who may invoke it, from
//! which source).

use std::collections::BTreeSet;

use serde_json::Value;

use super::values::{plain, show};

/// One permission a role or policy holds: `ConnectRole: dynamodb:PutItem on ${ConnectionsTable.Arn}`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Grant {
    /// The logical ID of the role or policy (`ConnectRole`), `(trust)` added for a role's
    /// trust policy.
    pub holder: String,
    /// The action (`dynamodb:PutItem`), `all but X` for a `NotAction`.
    pub action: String,
    /// `on RESOURCE` (`on all but RESOURCE` for `NotResource`), or `by PRINCIPAL` for a trust
    /// or resource policy's statement.
    pub target: String,
    /// A `Deny` statement.
    pub deny: bool,
    /// The statement's `Condition`, rendered, if any.
    pub condition: Option<String>,
}

impl std::fmt::Display for Grant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let deny = if self.deny { "deny " } else { "" };
        write!(f, "{}: {deny}{}", self.holder, self.action)?;
        if !self.target.is_empty() {
            write!(f, " {}", self.target)?;
        }
        if let Some(c) = &self.condition {
            write!(f, " when {c}")?;
        }
        Ok(())
    }
}

/// A grant present on one side only.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IamChange {
    pub grant: Grant,
    /// `true`: NEW grants it; `false`: NEW revokes it.
    pub granted: bool,
}

/// The grants NEW adds and removes, sorted by holder, action, target.
pub fn diff(old: &Value, new: &Value) -> Vec<IamChange> {
    let (o, n) = (grants(old), grants(new));
    let mut out: Vec<IamChange> = o
        .difference(&n)
        .map(|g| IamChange {
            grant: g.clone(),
            granted: false,
        })
        .chain(n.difference(&o).map(|g| IamChange {
            grant: g.clone(),
            granted: true,
        }))
        .collect();
    out.sort();
    out
}

/// Every grant of a template's roles and policies.
pub fn grants(template: &Value) -> BTreeSet<Grant> {
    let mut out = BTreeSet::new();
    let resources = template.get("Resources").and_then(Value::as_object);
    for (id, r) in resources.into_iter().flatten() {
        let props = r.get("Properties");
        let prop = |name: &str| props.and_then(|p| p.get(name));
        match r.get("Type").and_then(Value::as_str) {
            Some("AWS::IAM::Role") => {
                let policies = prop("Policies").and_then(Value::as_array);
                for p in policies.into_iter().flatten() {
                    document(id, p.get("PolicyDocument"), &mut out);
                }
                document(
                    &format!("{id} (trust)"),
                    prop("AssumeRolePolicyDocument"),
                    &mut out,
                );
                attachments(id, "managed policy", prop("ManagedPolicyArns"), &mut out);
            }
            Some("AWS::IAM::Policy" | "AWS::IAM::ManagedPolicy") => {
                document(id, prop("PolicyDocument"), &mut out);
                for (field, what) in [("Roles", "role"), ("Users", "user"), ("Groups", "group")] {
                    attachments(id, &format!("attached to {what}"), prop(field), &mut out);
                }
            }
            Some("AWS::SQS::QueuePolicy" | "AWS::SNS::TopicPolicy" | "AWS::S3::BucketPolicy") => {
                document(
                    &format!("{id} (resource policy)"),
                    prop("PolicyDocument"),
                    &mut out,
                );
            }
            Some("AWS::Lambda::Permission") => {
                lambda_permission(id, props, &mut out);
            }
            _ => {}
        }
    }
    out
}

/// A Lambda permission: `InvokePermission: lambda:InvokeFunction on ${Fn.Arn} by
/// apigateway.amazonaws.com when SourceArn ...`.
fn lambda_permission(holder: &str, props: Option<&Value>, out: &mut BTreeSet<Grant>) {
    let field = |name: &str| {
        props
            .and_then(|p| p.get(name))
            .map(plain)
            .unwrap_or_default()
    };
    let condition = ["SourceArn", "SourceAccount", "PrincipalOrgID"]
        .iter()
        .filter_map(|name| {
            props
                .and_then(|p| p.get(*name))
                .map(|v| format!("{name} {}", plain(v)))
        })
        .collect::<Vec<_>>();
    out.insert(Grant {
        holder: holder.to_owned(),
        action: field("Action"),
        target: format!("on {} by {}", field("FunctionName"), field("Principal")),
        deny: false,
        condition: (!condition.is_empty()).then(|| condition.join(", ")),
    });
}

/// One line per item of a list that attaches policies to `holder` or `holder` to principals:
/// `ConnectRole: managed policy ${PushPolicy}`, `PushPolicy: attached to role ${BackendRole}`.
fn attachments(holder: &str, what: &str, list: Option<&Value>, out: &mut BTreeSet<Grant>) {
    for item in list.map(each).unwrap_or_default() {
        out.insert(Grant {
            holder: holder.to_owned(),
            action: format!("{what} {}", plain(item)),
            target: String::new(),
            deny: false,
            condition: None,
        });
    }
}

/// The grants of one policy document's statements.
fn document(holder: &str, doc: Option<&Value>, out: &mut BTreeSet<Grant>) {
    let Some(statements) = doc.and_then(|d| d.get("Statement")) else {
        return;
    };
    match statements {
        Value::Array(list) => list.iter().for_each(|s| statement(holder, s, out)),
        single => statement(holder, single, out),
    }
}

/// The values of a field that takes one value or a list.
fn each(v: &Value) -> Vec<&Value> {
    match v {
        Value::Array(a) => a.iter().collect(),
        other => vec![other],
    }
}

/// `field` as rendered items, or `NotField`'s as `all but ...`; empty when neither is there.
fn items(s: &Value, field: &str) -> Vec<String> {
    if let Some(v) = s.get(field) {
        each(v).into_iter().map(plain).collect()
    } else if let Some(v) = s.get(format!("Not{field}")) {
        each(v)
            .into_iter()
            .map(|x| format!("all but {}", plain(x)))
            .collect()
    } else {
        Vec::new()
    }
}

/// A statement's principals: `*`, or `Service:lambda.amazonaws.com` per principal.
fn principals(s: &Value) -> Vec<String> {
    let (p, prefix) = match (s.get("Principal"), s.get("NotPrincipal")) {
        (Some(p), _) => (p, ""),
        (None, Some(p)) => (p, "all but "),
        (None, None) => return Vec::new(),
    };
    match p {
        Value::Object(kinds) => kinds
            .iter()
            .flat_map(|(kind, ids)| {
                each(ids)
                    .into_iter()
                    .map(move |id| format!("{prefix}{kind}:{}", plain(id)))
            })
            .collect(),
        other => vec![format!("{prefix}{}", plain(other))],
    }
}

/// One statement, expanded into a grant per action and resource (or principal).
fn statement(holder: &str, s: &Value, out: &mut BTreeSet<Grant>) {
    let deny = s.get("Effect").and_then(Value::as_str) == Some("Deny");
    let condition = s.get("Condition").map(show);
    let mut actions = items(s, "Action");
    if actions.is_empty() {
        actions.push(show(s));
    }
    let mut targets: Vec<String> = items(s, "Resource")
        .into_iter()
        .map(|r| format!("on {r}"))
        .chain(principals(s).into_iter().map(|p| format!("by {p}")))
        .collect();
    if targets.is_empty() {
        targets.push(String::new());
    }
    for action in &actions {
        for target in &targets {
            out.insert(Grant {
                holder: holder.to_owned(),
                action: action.clone(),
                target: target.clone(),
                deny,
                condition: condition.clone(),
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn role(actions: Value) -> Value {
        json!({"Resources": {"ConnectRole": {"Type": "AWS::IAM::Role", "Properties": {
            "AssumeRolePolicyDocument": {"Statement": [{"Effect": "Allow",
                "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]},
            "Policies": [{"PolicyName": "T", "PolicyDocument": {"Statement": [{"Effect": "Allow",
                "Action": actions, "Resource": {"Fn::GetAtt": ["ConnectionsTable", "Arn"]}}]}}]
        }}}})
    }

    #[test]
    fn an_added_action_is_a_grant_and_a_removed_one_a_revocation() {
        let old = role(json!(["dynamodb:GetItem", "dynamodb:DeleteItem"]));
        let new = role(json!(["dynamodb:GetItem", "dynamodb:PutItem"]));
        let lines: Vec<String> = diff(&old, &new)
            .iter()
            .map(|c| format!("{} {}", if c.granted { "+" } else { "-" }, c.grant))
            .collect();
        assert_eq!(
            lines,
            [
                "- ConnectRole: dynamodb:DeleteItem on ${ConnectionsTable.Arn}",
                "+ ConnectRole: dynamodb:PutItem on ${ConnectionsTable.Arn}",
            ]
        );
    }

    #[test]
    fn managed_policies_and_attachments_are_grants() {
        let t = json!({"Resources": {
            "R": {"Type": "AWS::IAM::Role", "Properties": {"ManagedPolicyArns": [{"Ref": "P"}]}},
            "P": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {
                "PolicyDocument": {"Statement": []}, "Roles": [{"Ref": "Other"}]}}
        }});
        let g: Vec<String> = grants(&t).iter().map(ToString::to_string).collect();
        assert_eq!(
            g,
            ["P: attached to role ${Other}", "R: managed policy ${P}"]
        );
    }

    #[test]
    fn resource_policies_and_lambda_permissions_are_grants() {
        let t = json!({"Resources": {
            "QP": {"Type": "AWS::SQS::QueuePolicy", "Properties": {"Queues": [{"Ref": "Q"}],
                "PolicyDocument": {"Statement": [{"Effect": "Allow", "Action": "sqs:SendMessage",
                    "Principal": {"Service": "events.amazonaws.com"},
                    "Resource": {"Fn::GetAtt": ["Q", "Arn"]}}]}}},
            "Perm": {"Type": "AWS::Lambda::Permission", "Properties": {
                "Action": "lambda:InvokeFunction", "FunctionName": {"Fn::GetAtt": ["F", "Arn"]},
                "Principal": "apigateway.amazonaws.com",
                "SourceArn": {"Fn::Sub": "arn:aws:execute-api:r:a:${Api}/*/*"}}}
        }});
        let lines: Vec<String> = grants(&t).iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "Perm: lambda:InvokeFunction on ${F.Arn} by apigateway.amazonaws.com when SourceArn arn:aws:execute-api:r:a:${Api}/*/*",
                "QP (resource policy): sqs:SendMessage by Service:events.amazonaws.com",
                "QP (resource policy): sqs:SendMessage on ${Q.Arn}",
            ]
        );
    }

    #[test]
    fn trust_deny_and_conditions_are_spelled_out() {
        let t = json!({"Resources": {"P": {"Type": "AWS::IAM::ManagedPolicy", "Properties": {
            "PolicyDocument": {"Statement": {"Effect": "Deny", "NotAction": "s3:*",
                "Resource": "*", "Condition": {"Bool": {"aws:SecureTransport": "false"}}}}}}}});
        let g: Vec<String> = grants(&t).iter().map(ToString::to_string).collect();
        assert_eq!(
            g,
            ["P: deny all but s3:* on * when {Bool: {aws:SecureTransport: \"false\"}}"]
        );
        let trust: Vec<String> = grants(&role(json!("dynamodb:GetItem")))
            .iter()
            .map(ToString::to_string)
            .filter(|l| l.contains("trust"))
            .collect();
        assert_eq!(
            trust,
            ["ConnectRole (trust): sts:AssumeRole by Service:lambda.amazonaws.com"]
        );
    }
}
