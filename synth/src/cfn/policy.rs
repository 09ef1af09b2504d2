//! IAM policy documents, typed: the trust policies of roles and their permission policies.

use std::collections::BTreeMap;

use serde::Serialize;

use super::{Expr, one_or_many};

/// The current (and only sensible) policy language version.
pub const POLICY_VERSION: &str = "2012-10-17";

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PolicyDocument {
    pub version: &'static str,
    pub statement: Vec<Statement>,
}

impl PolicyDocument {
    pub fn new(statement: Vec<Statement>) -> Self {
        PolicyDocument {
            version: POLICY_VERSION,
            statement,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum Effect {
    Allow,
    Deny,
}

/// Who a trust policy lets assume a role.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    /// An AWS service, e.g. `lambda.amazonaws.com`.
    Service(String),
}

// By hand: serde's derive would make an externally tagged enum, which YAML writes as a tag
// (`!Service ...`) rather than the `{Service: ...}` map IAM expects.
impl Serialize for Principal {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(Some(1))?;
        match self {
            Principal::Service(service) => map.serialize_entry("Service", service)?,
        }
        map.end()
    }
}

/// A condition block: operator (e.g. `StringEquals`) -> condition key -> value.
pub type ConditionBlock = BTreeMap<String, BTreeMap<String, Expr>>;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Statement {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sid: Option<String>,
    pub effect: Effect,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub principal: Option<Principal>,
    #[serde(serialize_with = "one_or_many")]
    pub action: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "one_or_many")]
    pub resource: Vec<Expr>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub condition: ConditionBlock,
}

impl Statement {
    /// Allows `actions` on `resources`.
    pub fn allow<A: Into<String>>(
        actions: impl IntoIterator<Item = A>,
        resources: Vec<Expr>,
    ) -> Self {
        Statement {
            sid: None,
            effect: Effect::Allow,
            principal: None,
            action: actions.into_iter().map(Into::into).collect(),
            resource: resources,
            condition: BTreeMap::new(),
        }
    }

    /// A trust statement letting an AWS service assume the role.
    pub fn assume_role_by_service(service: impl Into<String>) -> Self {
        Statement {
            sid: None,
            effect: Effect::Allow,
            principal: Some(Principal::Service(service.into())),
            action: vec!["sts:AssumeRole".into()],
            resource: Vec::new(),
            condition: BTreeMap::new(),
        }
    }

    pub fn sid(mut self, sid: impl Into<String>) -> Self {
        self.sid = Some(sid.into());
        self
    }

    /// Adds a condition, e.g. `("StringEquals", "aws:SourceAccount", Ref AWS::AccountId)`.
    pub fn when(mut self, operator: &str, key: &str, value: Expr) -> Self {
        self.condition
            .entry(operator.to_owned())
            .or_default()
            .insert(key.to_owned(), value);
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cfn::Pseudo;
    use serde_json::json;

    #[test]
    fn trust_policy_shape() {
        let doc = PolicyDocument::new(vec![
            Statement::assume_role_by_service("lambda.amazonaws.com").when(
                "StringEquals",
                "aws:SourceAccount",
                Pseudo::AccountId.into(),
            ),
        ]);
        assert_eq!(
            serde_json::to_value(&doc).expect("serializes"),
            json!({
                "Version": "2012-10-17",
                "Statement": [{
                    "Effect": "Allow",
                    "Principal": {"Service": "lambda.amazonaws.com"},
                    "Action": "sts:AssumeRole",
                    "Condition": {"StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}}
                }]
            })
        );
    }

    #[test]
    fn single_action_and_resource_are_bare_many_are_lists() {
        let one = Statement::allow(["dynamodb:PutItem"], vec![Expr::get_att("T", "Arn")]);
        assert_eq!(
            serde_json::to_value(&one).expect("serializes"),
            json!({"Effect": "Allow", "Action": "dynamodb:PutItem", "Resource": {"Fn::GetAtt": ["T", "Arn"]}})
        );
        let many = Statement::allow(["a:B", "a:C"], vec!["x".into(), "y".into()]).sid("Two");
        assert_eq!(
            serde_json::to_value(&many).expect("serializes"),
            json!({"Sid": "Two", "Effect": "Allow", "Action": ["a:B", "a:C"], "Resource": ["x", "y"]})
        );
    }
}
