//! Checks a template before it is written: what CloudFormation would reject at deploy time,
//! found at synth time with the logical ID and property path at fault.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde_json::Value;

use super::{Pseudo, Template};

/// CloudFormation's quota of resources per template.
pub const MAX_RESOURCES: usize = 500;
/// The longest logical ID CloudFormation accepts.
pub const MAX_LOGICAL_ID_LEN: usize = 255;

/// One broken invariant. `at` is the path in the template, e.g.
/// `Resources.ConnectFunction.Properties.Role`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Violation {
    #[error("{section}.{id}: logical ID is declared more than once")]
    DuplicateLogicalId { section: &'static str, id: String },
    #[error("{section}.{id}: invalid logical ID: {why}")]
    InvalidLogicalId {
        section: &'static str,
        id: String,
        why: &'static str,
    },
    #[error(
        "the template declares {count} resources; CloudFormation allows at most {MAX_RESOURCES}"
    )]
    TooManyResources { count: usize },
    #[error(
        "{at}: {function} names `{target}`, which is not a resource, parameter or pseudo parameter of this template"
    )]
    UnknownReference {
        at: String,
        function: &'static str,
        target: String,
    },
    #[error(
        "{at}: Fn::GetAtt `{resource}.{attribute}`: {type_name} has no attribute `{attribute}` (it has: {allowed})"
    )]
    UnknownAttribute {
        at: String,
        resource: String,
        type_name: &'static str,
        attribute: String,
        allowed: String,
    },
    #[error("{at}: DependsOn names `{target}`, which is not a resource of this template")]
    UnknownDependency { at: String, target: String },
    #[error("{at}: condition `{name}` is not declared in Conditions")]
    UnknownCondition { at: String, name: String },
    #[error("{at}: malformed {function}: {why}")]
    Malformed {
        at: String,
        function: &'static str,
        why: &'static str,
    },
    #[error("dependency cycle (through DependsOn, Ref, Fn::GetAtt or Fn::Sub): {}", .cycle.join(" -> "))]
    DependencyCycle { cycle: Vec<String> },
    #[error(
        "{at}: Snapshot is not supported for {type_name}; CloudFormation snapshots only {}",
        super::SNAPSHOT_TYPES.join(", ")
    )]
    SnapshotUnsupported { at: String, type_name: &'static str },
    #[error(
        "{at}: an IAM statement without {missing}: every permission statement names its {missing}"
    )]
    IncompleteStatement { at: String, missing: &'static str },
}

/// Every violation found in a template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub Vec<Violation>);

impl fmt::Display for Invalid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "the template is invalid ({} problem", self.0.len())?;
        if self.0.len() != 1 {
            write!(f, "s")?;
        }
        write!(f, ")")?;
        for v in &self.0 {
            write!(f, "\n  - {v}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Invalid {}

/// Checks every invariant; returns all violations, not just the first.
pub fn validate(template: &Template) -> Result<(), Invalid> {
    let mut found = Vec::new();

    check_ids(template, &mut found);
    if template.resources.len() > MAX_RESOURCES {
        found.push(Violation::TooManyResources {
            count: template.resources.len(),
        });
    }

    let resources: BTreeMap<&str, &super::Resource> = template
        .resources
        .iter()
        .map(|(id, r)| (id.as_str(), r))
        .collect();
    let parameters: BTreeSet<&str> = template
        .parameters
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    let conditions: BTreeSet<&str> = template
        .conditions
        .iter()
        .map(|(n, _)| n.as_str())
        .collect();
    let names = Names {
        resources: &resources,
        parameters: &parameters,
        conditions: &conditions,
    };

    // Resource -> resources it needs first, for the cycle check.
    let mut edges: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    for (id, resource) in &template.resources {
        let deps = check_resource(&names, id, resource, &mut found);
        edges.insert(id.as_str(), deps);
    }
    check_conditions_and_outputs(template, &names, &mut found);

    if let Some(cycle) = find_cycle(&edges) {
        found.push(Violation::DependencyCycle { cycle });
    }

    if found.is_empty() {
        Ok(())
    } else {
        Err(Invalid(found))
    }
}

/// Checks one resource (its dependencies, condition, snapshot policy, IAM statements and every
/// name its properties use); returns the resources it needs first.
fn check_resource(
    names: &Names<'_>,
    id: &str,
    resource: &super::Resource,
    found: &mut Vec<Violation>,
) -> BTreeSet<String> {
    let mut deps = BTreeSet::new();
    let at = format!("Resources.{id}");
    for target in &resource.depends_on {
        if names.resources.contains_key(target.as_str()) {
            deps.insert(target.clone());
        } else {
            found.push(Violation::UnknownDependency {
                at: format!("{at}.DependsOn"),
                target: target.clone(),
            });
        }
    }
    if let Some(c) = &resource.condition {
        names.check_condition(&format!("{at}.Condition"), c, found);
    }
    check_snapshot(&at, resource, found);
    check_statements(&at, resource, found);
    match serde_json::to_value(&resource.properties) {
        Ok(props) => names.walk(&props, &format!("{at}.Properties"), &mut deps, found),
        Err(_) => found.push(Violation::Malformed {
            at,
            function: "Properties",
            why: "cannot be serialized",
        }),
    }
    deps
}

/// Checks the names the template's conditions and outputs use.
fn check_conditions_and_outputs(
    template: &Template,
    names: &Names<'_>,
    found: &mut Vec<Violation>,
) {
    for (name, condition) in &template.conditions {
        if let Ok(v) = serde_json::to_value(condition) {
            names.walk(
                &v,
                &format!("Conditions.{name}"),
                &mut BTreeSet::new(),
                found,
            );
        }
    }
    for (name, output) in &template.outputs {
        if let Ok(v) = serde_json::to_value(output) {
            names.walk(&v, &format!("Outputs.{name}"), &mut BTreeSet::new(), found);
        }
        if let Some(c) = &output.condition {
            names.check_condition(&format!("Outputs.{name}.Condition"), c, found);
        }
    }
}

/// `Snapshot` only on the types that support it.
fn check_snapshot(at: &str, resource: &super::Resource, found: &mut Vec<Violation>) {
    let type_name = resource.properties.type_name();
    if super::SNAPSHOT_TYPES.contains(&type_name) {
        return;
    }
    for (attribute, policy) in [
        ("DeletionPolicy", resource.deletion_policy),
        ("UpdateReplacePolicy", resource.update_replace_policy),
    ] {
        if policy == Some(super::DeletionPolicy::Snapshot) {
            found.push(Violation::SnapshotUnsupported {
                at: format!("{at}.{attribute}"),
                type_name,
            });
        }
    }
}

/// Every permission statement of a role's inline policies has an Action and a Resource (a
/// statement without Resource is rejected by IAM, or in a trust policy means something else).
fn check_statements(at: &str, resource: &super::Resource, found: &mut Vec<Violation>) {
    let Some(role) = resource.as_type::<super::resources::iam::Role>() else {
        return;
    };
    for (i, policy) in role.policies.iter().enumerate() {
        for (j, statement) in policy.policy_document.statement.iter().enumerate() {
            let here = format!("{at}.Properties.Policies[{i}].PolicyDocument.Statement[{j}]");
            if statement.action.is_empty() {
                found.push(Violation::IncompleteStatement {
                    at: format!("{here}.Action"),
                    missing: "Action",
                });
            }
            if statement.resource.is_empty() {
                found.push(Violation::IncompleteStatement {
                    at: format!("{here}.Resource"),
                    missing: "Resource",
                });
            }
        }
    }
}

fn check_ids(template: &Template, found: &mut Vec<Violation>) {
    // Resources and parameters share one namespace: `Ref` names either.
    let mut seen = BTreeSet::new();
    let sections: [(&'static str, Vec<&str>); 4] = [
        (
            "Parameters",
            template
                .parameters
                .iter()
                .map(|(n, _)| n.as_str())
                .collect(),
        ),
        (
            "Resources",
            template.resources.iter().map(|(n, _)| n.as_str()).collect(),
        ),
        (
            "Conditions",
            template
                .conditions
                .iter()
                .map(|(n, _)| n.as_str())
                .collect(),
        ),
        (
            "Outputs",
            template.outputs.iter().map(|(n, _)| n.as_str()).collect(),
        ),
    ];
    for (section, ids) in sections {
        if section == "Conditions" || section == "Outputs" {
            seen.clear();
        }
        for id in ids {
            if let Err(why) = check_logical_id(id) {
                found.push(Violation::InvalidLogicalId {
                    section,
                    id: id.to_owned(),
                    why,
                });
            }
            if !seen.insert(id) {
                found.push(Violation::DuplicateLogicalId {
                    section,
                    id: id.to_owned(),
                });
            }
        }
    }
}

/// CloudFormation's rule: alphanumeric (A-Za-z0-9), 1 to 255 characters.
pub fn check_logical_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() {
        Err("it is empty")
    } else if id.len() > MAX_LOGICAL_ID_LEN {
        Err("it is longer than 255 characters")
    } else if !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        Err("only A-Z, a-z and 0-9 are allowed")
    } else {
        Ok(())
    }
}

struct Names<'a> {
    resources: &'a BTreeMap<&'a str, &'a super::Resource>,
    parameters: &'a BTreeSet<&'a str>,
    conditions: &'a BTreeSet<&'a str>,
}

impl Names<'_> {
    fn check_condition(&self, at: &str, name: &str, found: &mut Vec<Violation>) {
        if !self.conditions.contains(name) {
            found.push(Violation::UnknownCondition {
                at: at.to_owned(),
                name: name.to_owned(),
            });
        }
    }

    /// A `Ref` or `${Name}` target: a resource, a parameter or a pseudo parameter.
    fn check_ref(
        &self,
        at: &str,
        function: &'static str,
        target: &str,
        refs: &mut BTreeSet<String>,
        found: &mut Vec<Violation>,
    ) {
        if self.resources.contains_key(target) {
            refs.insert(target.to_owned());
        } else if !self.parameters.contains(target) && !Pseudo::is_pseudo(target) {
            found.push(Violation::UnknownReference {
                at: at.to_owned(),
                function,
                target: target.to_owned(),
            });
        }
    }

    fn check_get_att(
        &self,
        at: &str,
        function: &'static str,
        resource: &str,
        attribute: &str,
        refs: &mut BTreeSet<String>,
        found: &mut Vec<Violation>,
    ) {
        match self.resources.get(resource) {
            None => found.push(Violation::UnknownReference {
                at: at.to_owned(),
                function,
                target: resource.to_owned(),
            }),
            Some(r) => {
                refs.insert(resource.to_owned());
                let allowed = r.properties.attributes();
                if !allowed.contains(&attribute) {
                    found.push(Violation::UnknownAttribute {
                        at: at.to_owned(),
                        resource: resource.to_owned(),
                        type_name: r.properties.type_name(),
                        attribute: attribute.to_owned(),
                        allowed: if allowed.is_empty() {
                            "none".to_owned()
                        } else {
                            allowed.join(", ")
                        },
                    });
                }
            }
        }
    }

    fn walk(&self, v: &Value, at: &str, refs: &mut BTreeSet<String>, found: &mut Vec<Violation>) {
        match v {
            Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    self.walk(item, &format!("{at}[{i}]"), refs, found);
                }
            }
            Value::Object(map) if map.len() == 1 => {
                let Some((key, arg)) = map.iter().next() else {
                    return;
                };
                let fat = format!("{at}.{key}");
                match (key.as_str(), arg) {
                    ("Ref", Value::String(target)) => {
                        self.check_ref(&fat, "Ref", target, refs, found)
                    }
                    ("Fn::GetAtt", Value::Array(pair)) => match pair.as_slice() {
                        [Value::String(r), Value::String(a)] => {
                            self.check_get_att(&fat, "Fn::GetAtt", r, a, refs, found)
                        }
                        _ => found.push(Violation::Malformed {
                            at: fat,
                            function: "Fn::GetAtt",
                            why: "expected [resource, attribute]",
                        }),
                    },
                    ("Fn::Sub", Value::String(t)) => {
                        self.check_sub(&fat, t, &BTreeSet::new(), refs, found)
                    }
                    ("Fn::Sub", Value::Array(args)) => match args.as_slice() {
                        [Value::String(t), Value::Object(vars)] => {
                            let local: BTreeSet<&str> = vars.keys().map(String::as_str).collect();
                            self.check_sub(&fat, t, &local, refs, found);
                            for (name, value) in vars {
                                self.walk(value, &format!("{fat}[1].{name}"), refs, found);
                            }
                        }
                        _ => found.push(Violation::Malformed {
                            at: fat,
                            function: "Fn::Sub",
                            why: "expected [template, {variables}]",
                        }),
                    },
                    ("Fn::If", Value::Array(args)) => match args.as_slice() {
                        [Value::String(c), a, b] => {
                            self.check_condition(&fat, c, found);
                            self.walk(a, &format!("{fat}[1]"), refs, found);
                            self.walk(b, &format!("{fat}[2]"), refs, found);
                        }
                        _ => found.push(Violation::Malformed {
                            at: fat,
                            function: "Fn::If",
                            why: "expected [condition, then, else]",
                        }),
                    },
                    ("Condition", Value::String(c)) => self.check_condition(&fat, c, found),
                    _ => self.walk(arg, &fat, refs, found),
                }
            }
            Value::Object(map) => {
                for (key, value) in map {
                    self.walk(value, &format!("{at}.{key}"), refs, found);
                }
            }
            _ => {}
        }
    }

    /// Checks every `${...}` of a `Fn::Sub` template. `${!Literal}` is an escape, `${Name.Attr}`
    /// a `GetAtt`, and local variables shadow template names.
    fn check_sub(
        &self,
        at: &str,
        template: &str,
        local: &BTreeSet<&str>,
        refs: &mut BTreeSet<String>,
        found: &mut Vec<Violation>,
    ) {
        let mut rest = template;
        while let Some(start) = rest.find("${") {
            let after = &rest[start + 2..];
            let Some(end) = after.find('}') else {
                found.push(Violation::Malformed {
                    at: at.to_owned(),
                    function: "Fn::Sub",
                    why: "a `${` has no closing `}`",
                });
                return;
            };
            let var = after[..end].trim();
            rest = &after[end + 1..];
            if var.starts_with('!') || local.contains(var) {
                continue;
            }
            match var.split_once('.') {
                Some((resource, attribute)) if !var.starts_with("AWS::") => {
                    self.check_get_att(at, "Fn::Sub", resource, attribute, refs, found)
                }
                _ => self.check_ref(at, "Fn::Sub", var, refs, found),
            }
        }
    }
}

/// The first cycle in the dependency graph, as a path that starts and ends at the same node.
fn find_cycle(edges: &BTreeMap<&str, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Visiting,
        Done,
    }
    fn visit<'a>(
        node: &'a str,
        edges: &'a BTreeMap<&str, BTreeSet<String>>,
        marks: &mut BTreeMap<&'a str, Mark>,
        stack: &mut Vec<&'a str>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Visiting) => {
                let from = stack.iter().position(|n| *n == node).unwrap_or(0);
                let mut cycle: Vec<String> =
                    stack[from..].iter().map(|s| (*s).to_owned()).collect();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node, Mark::Visiting);
        stack.push(node);
        if let Some(next) = edges.get(node) {
            for n in next {
                if let Some(c) = visit(n.as_str(), edges, marks, stack) {
                    return Some(c);
                }
            }
        }
        stack.pop();
        marks.insert(node, Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in edges.keys() {
        if let Some(c) = visit(node, edges, &mut marks, &mut Vec::new()) {
            return Some(c);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cfn::resources::{logs::LogGroup, sqs::Queue};
    use crate::cfn::{Condition, Expr, Output, Parameter, Resource};

    fn group(name: Expr) -> LogGroup {
        LogGroup {
            log_group_name: Some(name),
            retention_in_days: Some(7),
            kms_key_id: None,
        }
    }

    fn queue() -> Queue {
        Queue {
            message_retention_period: None,
            sqs_managed_sse_enabled: Some(true),

            ..Queue::default()
        }
    }

    fn violations(t: &Template) -> Vec<Violation> {
        match validate(t) {
            Ok(()) => Vec::new(),
            Err(Invalid(v)) => v,
        }
    }

    #[test]
    fn a_consistent_template_passes() {
        let mut t = Template::new("ok");
        let p = t.add_parameter("Prefix", Parameter::string("prefix"));
        let c = t.add_condition(
            "HasPrefix",
            Condition::Not(Box::new(Condition::Equals(Expr::r#ref(&p), "".into()))),
        );
        let q = t.add("Queue", queue());
        t.add(
            "Logs",
            Resource::new(group(Expr::sub(
                "${Prefix}-${Queue.QueueName}-${AWS::Region}-${!Literal}",
            )))
            .depends_on(&q),
        );
        t.add(
            "Other",
            Resource::new(group(Expr::if_(
                &c,
                Expr::get_att("Logs", "Arn"),
                Expr::sub_with("${X}", vec![("X".into(), Expr::r#ref("Queue"))]),
            ))),
        );
        t.add_output(
            "QueueArn",
            Output {
                description: None,
                value: Expr::get_att("Queue", "Arn"),
                export: None,
                condition: Some(c),
            },
        );
        assert_eq!(violations(&t), vec![]);
    }

    #[test]
    fn unknown_ref_names_the_path() {
        let mut t = Template::new("x");
        t.add("Logs", group(Expr::r#ref("Missing")));
        assert_eq!(
            violations(&t),
            vec![Violation::UnknownReference {
                at: "Resources.Logs.Properties.LogGroupName.Ref".into(),
                function: "Ref",
                target: "Missing".into(),
            }]
        );
        assert_eq!(
            violations(&t)[0].to_string(),
            "Resources.Logs.Properties.LogGroupName.Ref: Ref names `Missing`, which is not a resource, parameter or pseudo parameter of this template"
        );
    }

    #[test]
    fn unknown_get_att_resource_and_attribute() {
        let mut t = Template::new("x");
        t.add("Queue", queue());
        t.add("A", group(Expr::get_att("Nope", "Arn")));
        t.add("B", group(Expr::get_att("Queue", "Url")));
        let v = violations(&t);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(
            matches!(&v[0], Violation::UnknownReference { target, function: "Fn::GetAtt", .. } if target == "Nope")
        );
        assert_eq!(
            v[1].to_string(),
            "Resources.B.Properties.LogGroupName.Fn::GetAtt: Fn::GetAtt `Queue.Url`: AWS::SQS::Queue has no attribute `Url` (it has: Arn, QueueName, QueueUrl)"
        );
    }

    #[test]
    fn sub_variables_are_checked() {
        let mut t = Template::new("x");
        t.add("Queue", queue());
        t.add(
            "A",
            group(Expr::sub("${Ghost}/${Queue.Nope}/${AWS::Region}")),
        );
        let v = violations(&t);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(
            matches!(&v[0], Violation::UnknownReference { target, function: "Fn::Sub", .. } if target == "Ghost")
        );
        assert!(
            matches!(&v[1], Violation::UnknownAttribute { attribute, .. } if attribute == "Nope")
        );
    }

    #[test]
    fn unclosed_sub_is_malformed() {
        let mut t = Template::new("x");
        t.add("A", group(Expr::sub("${Oops")));
        assert!(matches!(
            violations(&t).as_slice(),
            [Violation::Malformed {
                function: "Fn::Sub",
                ..
            }]
        ));
    }

    #[test]
    fn unknown_depends_on() {
        let mut t = Template::new("x");
        t.add("A", Resource::new(queue()).depends_on("Ghost"));
        assert_eq!(
            violations(&t),
            vec![Violation::UnknownDependency {
                at: "Resources.A.DependsOn".into(),
                target: "Ghost".into()
            }]
        );
    }

    #[test]
    fn unknown_condition() {
        let mut t = Template::new("x");
        t.add("A", Resource::new(queue()).condition("Nope"));
        t.add("B", group(Expr::if_("AlsoNope", "a".into(), "b".into())));
        let v = violations(&t);
        assert_eq!(v.len(), 2, "{v:?}");
        assert!(
            v.iter()
                .all(|v| matches!(v, Violation::UnknownCondition { .. }))
        );
    }

    #[test]
    fn duplicate_ids_including_a_parameter_shadowing_a_resource() {
        let mut t = Template::new("x");
        t.add("Queue", queue());
        t.add("Queue", queue());
        t.add_parameter("Other", Parameter::string("p"));
        t.add("Other", queue());
        let v = violations(&t);
        assert!(
            v.contains(&Violation::DuplicateLogicalId {
                section: "Resources",
                id: "Queue".into()
            }),
            "{v:?}"
        );
        assert!(
            v.contains(&Violation::DuplicateLogicalId {
                section: "Resources",
                id: "Other".into()
            }),
            "{v:?}"
        );
    }

    #[test]
    fn invalid_ids() {
        let mut t = Template::new("x");
        t.add("my-queue", queue());
        t.add("", queue());
        t.add("Q".repeat(256), queue());
        let whys: Vec<&str> = violations(&t)
            .iter()
            .filter_map(|v| match v {
                Violation::InvalidLogicalId { why, .. } => Some(*why),
                _ => None,
            })
            .collect();
        assert_eq!(
            whys,
            vec![
                "only A-Z, a-z and 0-9 are allowed",
                "it is empty",
                "it is longer than 255 characters"
            ]
        );
        assert!(check_logical_id(&"Q".repeat(255)).is_ok());
    }

    #[test]
    fn too_many_resources() {
        let mut t = Template::new("x");
        for i in 0..=MAX_RESOURCES {
            t.add(format!("Queue{i}"), queue());
        }
        assert_eq!(
            violations(&t),
            vec![Violation::TooManyResources { count: 501 }]
        );
        t.resources.pop();
        assert_eq!(violations(&t), vec![]);
    }

    #[test]
    fn depends_on_cycle() {
        let mut t = Template::new("x");
        t.add("A", Resource::new(queue()).depends_on("B"));
        t.add("B", Resource::new(queue()).depends_on("C"));
        t.add("C", Resource::new(queue()).depends_on("A"));
        let v = violations(&t);
        assert_eq!(
            v,
            vec![Violation::DependencyCycle {
                cycle: vec!["A".into(), "B".into(), "C".into(), "A".into()]
            }]
        );
        assert_eq!(
            v[0].to_string(),
            "dependency cycle (through DependsOn, Ref, Fn::GetAtt or Fn::Sub): A -> B -> C -> A"
        );
    }

    #[test]
    fn reference_cycle() {
        let mut t = Template::new("x");
        t.add("A", group(Expr::get_att("B", "Arn")));
        t.add("B", group(Expr::r#ref("A")));
        assert!(matches!(
            violations(&t).as_slice(),
            [Violation::DependencyCycle { .. }]
        ));
    }

    #[test]
    fn invalid_lists_every_problem() {
        let mut t = Template::new("x");
        t.add("A", group(Expr::r#ref("X")));
        t.add("B", group(Expr::r#ref("Y")));
        let err = validate(&t).expect_err("two problems");
        assert!(
            err.to_string()
                .starts_with("the template is invalid (2 problems)\n  - Resources.A"),
            "{err}"
        );
    }

    #[test]
    fn snapshot_is_refused_on_a_type_that_cannot_be_snapshotted() {
        let mut t = Template::new("snapshot");
        let mut r = Resource::new(queue());
        // The fields are public: the compile-time check of `snapshot_on_removal` is bypassed.
        r.deletion_policy = Some(crate::cfn::DeletionPolicy::Snapshot);
        r.update_replace_policy = Some(crate::cfn::DeletionPolicy::Retain);
        t.add("Jobs", r);
        let v = violations(&t);
        assert_eq!(
            v,
            [Violation::SnapshotUnsupported {
                at: "Resources.Jobs.DeletionPolicy".into(),
                type_name: "AWS::SQS::Queue",
            }]
        );
        assert!(
            v[0].to_string().starts_with(
                "Resources.Jobs.DeletionPolicy: Snapshot is not supported for AWS::SQS::Queue; CloudFormation snapshots only AWS::EC2::Volume"
            ),
            "{}",
            v[0]
        );
    }

    #[test]
    fn an_iam_statement_needs_an_action_and_a_resource() {
        use crate::cfn::policy::{PolicyDocument, Statement};
        use crate::cfn::resources::iam::{InlinePolicy, Role};
        let mut t = Template::new("iam");
        t.add("Group", group(Expr::from("g")));
        t.add(
            "Worker",
            Role {
                description: None,
                // A trust statement has a Principal and no Resource: that is right.
                assume_role_policy_document: PolicyDocument::new(vec![
                    Statement::assume_role_by_service("lambda.amazonaws.com"),
                ]),
                policies: vec![InlinePolicy {
                    policy_name: "Logs".into(),
                    policy_document: PolicyDocument::new(vec![
                        Statement::allow(
                            ["logs:PutLogEvents"],
                            vec![Expr::get_att("Group", "Arn")],
                        ),
                        Statement::allow(["logs:CreateLogStream"], Vec::new()),
                        Statement::allow(Vec::<String>::new(), vec![Expr::get_att("Group", "Arn")]),
                    ]),
                }],
                managed_policy_arns: Vec::new(),
            },
        );
        let v = violations(&t);
        assert_eq!(
            v,
            [
                Violation::IncompleteStatement {
                    at: "Resources.Worker.Properties.Policies[0].PolicyDocument.Statement[1].Resource"
                        .into(),
                    missing: "Resource",
                },
                Violation::IncompleteStatement {
                    at: "Resources.Worker.Properties.Policies[0].PolicyDocument.Statement[2].Action"
                        .into(),
                    missing: "Action",
                },
            ]
        );
        assert_eq!(
            v[0].to_string(),
            "Resources.Worker.Properties.Policies[0].PolicyDocument.Statement[1].Resource: an IAM statement without Resource: every permission statement names its Resource"
        );
    }
}
