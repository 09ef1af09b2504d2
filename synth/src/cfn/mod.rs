//! A typed model of the parts of AWS CloudFormation this project emits.
//!
//! It knows nothing of wsstack: the stack in [`crate::stack`] is written in terms of it. One Rust
//! type per resource type (in [`resources`]), properties in PascalCase via serde, optional
//! properties skipped when `None`, intrinsic functions as [`Expr`], IAM documents as
//! [`policy::PolicyDocument`]. [`validate`] checks a template's references before it is written.

pub mod intrinsic;
pub mod policy;
pub mod resources;
pub mod validate;

use std::collections::BTreeMap;

use serde::Serialize;
use serde::ser::{SerializeMap, Serializer};

pub use intrinsic::{Condition, Expr, Pseudo};
pub use resources::{Properties, ResourceType};

/// The only template format version CloudFormation knows.
pub const TEMPLATE_FORMAT_VERSION: &str = "2010-09-09";

/// A CloudFormation template. Sections keep insertion order, so the emitted file reads in the
/// order the stack declares things; [`validate`] rejects duplicate logical IDs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Template {
    pub description: Option<String>,
    pub parameters: Vec<(String, Parameter)>,
    pub conditions: Vec<(String, Condition)>,
    pub resources: Vec<(String, Resource)>,
    pub outputs: Vec<(String, Output)>,
}

impl Template {
    pub fn new(description: impl Into<String>) -> Self {
        Template {
            description: Some(description.into()),
            ..Template::default()
        }
    }

    /// Adds a resource and returns its logical ID, for use in references.
    pub fn add(&mut self, logical_id: impl Into<String>, resource: impl Into<Resource>) -> String {
        let id = logical_id.into();
        self.resources.push((id.clone(), resource.into()));
        id
    }

    pub fn add_parameter(&mut self, name: impl Into<String>, parameter: Parameter) -> String {
        let name = name.into();
        self.parameters.push((name.clone(), parameter));
        name
    }

    pub fn add_condition(&mut self, name: impl Into<String>, condition: Condition) -> String {
        let name = name.into();
        self.conditions.push((name.clone(), condition));
        name
    }

    pub fn add_output(&mut self, name: impl Into<String>, output: Output) {
        self.outputs.push((name.into(), output));
    }

    /// The resource with this logical ID, if any.
    pub fn resource(&self, logical_id: &str) -> Option<&Resource> {
        self.resources
            .iter()
            .find(|(id, _)| id == logical_id)
            .map(|(_, r)| r)
    }

    /// The resources of one type, with their logical IDs.
    pub fn resources_of<'a>(
        &'a self,
        type_name: &'a str,
    ) -> impl Iterator<Item = (&'a str, &'a Resource)> {
        self.resources
            .iter()
            .filter(move |(_, r)| r.properties.type_name() == type_name)
            .map(|(id, r)| (id.as_str(), r))
    }
}

/// Serializes `(key, value)` pairs as a JSON object in their order.
struct Section<'a, T>(&'a [(String, T)]);

impl<T: Serialize> Serialize for Section<'_, T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

impl Serialize for Template {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("AWSTemplateFormatVersion", TEMPLATE_FORMAT_VERSION)?;
        if let Some(d) = &self.description {
            map.serialize_entry("Description", d)?;
        }
        if !self.parameters.is_empty() {
            map.serialize_entry("Parameters", &Section(&self.parameters))?;
        }
        if !self.conditions.is_empty() {
            map.serialize_entry("Conditions", &Section(&self.conditions))?;
        }
        map.serialize_entry("Resources", &Section(&self.resources))?;
        if !self.outputs.is_empty() {
            map.serialize_entry("Outputs", &Section(&self.outputs))?;
        }
        map.end()
    }
}

/// A template parameter.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Parameter {
    #[serde(rename = "Type")]
    pub type_: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allowed_pattern: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub constraint_description: Option<String>,
}

impl Parameter {
    /// A `String` parameter with a description.
    pub fn string(description: impl Into<String>) -> Self {
        Parameter {
            type_: "String".into(),
            description: Some(description.into()),
            default: None,
            allowed_pattern: None,
            constraint_description: None,
        }
    }
}

/// A stack output, optionally exported for other stacks' `Fn::ImportValue`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Output {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub value: Expr,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export: Option<Export>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Export {
    pub name: Expr,
}

/// What CloudFormation does with a resource's physical resource when the stack deletes or
/// replaces it, for any resource type. `Snapshot` is not here: only a few types support it,
/// and [`Resource::snapshot_on_removal`] takes only those (a compile-time check).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum RemovalPolicy {
    Delete,
    Retain,
}

/// A resource's `DeletionPolicy` or `UpdateReplacePolicy` as written in the template.
/// [`validate`](validate::validate) rejects `Snapshot` on a type outside [`SNAPSHOT_TYPES`] (the
/// fields are public, so the compile-time check can be bypassed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum DeletionPolicy {
    Delete,
    Retain,
    Snapshot,
}

impl From<RemovalPolicy> for DeletionPolicy {
    fn from(p: RemovalPolicy) -> Self {
        match p {
            RemovalPolicy::Delete => DeletionPolicy::Delete,
            RemovalPolicy::Retain => DeletionPolicy::Retain,
        }
    }
}

/// The resource types for which CloudFormation takes a snapshot before deleting
/// (<https://docs.aws.amazon.com/AWSCloudFormation/latest/UserGuide/aws-attribute-deletionpolicy.html>).
pub const SNAPSHOT_TYPES: &[&str] = &[
    "AWS::EC2::Volume",
    "AWS::ElastiCache::CacheCluster",
    "AWS::ElastiCache::ReplicationGroup",
    "AWS::RDS::DBCluster",
    "AWS::RDS::DBInstance",
    "AWS::Redshift::Cluster",
];

/// A resource type whose `DeletionPolicy` may be `Snapshot` (one of [`SNAPSHOT_TYPES`]). None
/// of the model's types is: a DynamoDB table, a log group or a function cannot be snapshotted
/// on delete, so this does not compile:
///
/// ```compile_fail
/// use wsstack_synth::cfn::Resource;
/// use wsstack_synth::cfn::resources::logs::LogGroup;
/// let group = LogGroup { log_group_name: None, retention_in_days: Some(7), kms_key_id: None };
/// let _ = Resource::snapshot_on_removal(group);
/// ```
pub trait SupportsSnapshot: ResourceType {}

/// A resource: typed properties plus the resource attributes, which CloudFormation keeps
/// outside `Properties`.
#[derive(Debug, Clone, PartialEq)]
pub struct Resource {
    pub properties: Properties,
    pub depends_on: Vec<String>,
    pub condition: Option<String>,
    pub deletion_policy: Option<DeletionPolicy>,
    pub update_replace_policy: Option<DeletionPolicy>,
    /// Free-form by CloudFormation's definition (tools such as checkov and the CDK CLI read
    /// their own keys from it).
    pub metadata: BTreeMap<String, serde_json::Value>,
}

impl Resource {
    pub fn new(properties: impl Into<Properties>) -> Self {
        Resource {
            properties: properties.into(),
            depends_on: Vec::new(),
            condition: None,
            deletion_policy: None,
            update_replace_policy: None,
            metadata: BTreeMap::new(),
        }
    }

    pub fn depends_on(mut self, logical_id: impl Into<String>) -> Self {
        self.depends_on.push(logical_id.into());
        self
    }

    /// Sets both `DeletionPolicy` and `UpdateReplacePolicy`.
    pub fn removal_policy(mut self, policy: RemovalPolicy) -> Self {
        self.deletion_policy = Some(policy.into());
        self.update_replace_policy = Some(policy.into());
        self
    }

    /// A resource CloudFormation snapshots before deleting or replacing it: only for the types
    /// that support it.
    pub fn snapshot_on_removal<T: SupportsSnapshot>(properties: T) -> Self {
        let mut r = Resource::new(properties);
        r.deletion_policy = Some(DeletionPolicy::Snapshot);
        r.update_replace_policy = Some(DeletionPolicy::Snapshot);
        r
    }

    pub fn condition(mut self, condition: impl Into<String>) -> Self {
        self.condition = Some(condition.into());
        self
    }

    pub fn metadata(mut self, key: impl Into<String>, value: serde_json::Value) -> Self {
        self.metadata.insert(key.into(), value);
        self
    }

    /// The properties as the given resource type, if they are of that type.
    pub fn as_type<T: ResourceType>(&self) -> Option<&T> {
        T::from_properties(&self.properties)
    }
}

impl<T: ResourceType> From<T> for Resource {
    fn from(p: T) -> Self {
        Resource::new(p)
    }
}

impl Serialize for Resource {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("Type", self.properties.type_name())?;
        map.serialize_entry("Properties", &self.properties)?;
        match self.depends_on.as_slice() {
            [] => {}
            [one] => map.serialize_entry("DependsOn", one)?,
            many => map.serialize_entry("DependsOn", many)?,
        }
        if let Some(c) = &self.condition {
            map.serialize_entry("Condition", c)?;
        }
        if let Some(p) = &self.deletion_policy {
            map.serialize_entry("DeletionPolicy", p)?;
        }
        if let Some(p) = &self.update_replace_policy {
            map.serialize_entry("UpdateReplacePolicy", p)?;
        }
        if !self.metadata.is_empty() {
            map.serialize_entry("Metadata", &self.metadata)?;
        }
        map.end()
    }
}

/// Serializes a list as a bare value when it has one element, as CloudFormation and IAM accept
/// and as people write them.
pub(crate) fn one_or_many<S: Serializer, T: Serialize>(
    items: &[T],
    s: S,
) -> Result<S::Ok, S::Error> {
    match items {
        [one] => one.serialize(s),
        many => many.serialize(s),
    }
}

#[cfg(test)]
mod tests {
    use super::resources::apigatewayv2::{Authorizer, AuthorizerType};
    use super::resources::sqs::Queue;
    use super::*;
    use serde_json::json;

    fn queue() -> Queue {
        Queue {
            message_retention_period: Some(60),
            sqs_managed_sse_enabled: None,

            ..Queue::default()
        }
    }

    #[test]
    fn resource_attributes_stay_outside_properties() {
        let r = Resource::new(queue())
            .depends_on("A")
            .condition("IsProd")
            .removal_policy(RemovalPolicy::Retain)
            .metadata("note", json!("x"));
        assert_eq!(
            serde_json::to_value(&r).expect("serializes"),
            json!({
                "Type": "AWS::SQS::Queue",
                "Properties": {"MessageRetentionPeriod": 60},
                "DependsOn": "A",
                "Condition": "IsProd",
                "DeletionPolicy": "Retain",
                "UpdateReplacePolicy": "Retain",
                "Metadata": {"note": "x"}
            })
        );
        let two = Resource::new(queue()).depends_on("A").depends_on("B");
        assert_eq!(
            serde_json::to_value(&two).expect("serializes")["DependsOn"],
            json!(["A", "B"])
        );
    }

    #[test]
    fn template_sections_in_order_and_empty_ones_omitted() {
        let mut t = Template::new("d");
        t.add("Q", queue());
        let v = serde_json::to_value(&t).expect("serializes");
        assert_eq!(
            v,
            json!({"AWSTemplateFormatVersion": "2010-09-09", "Description": "d", "Resources": {"Q": {"Type": "AWS::SQS::Queue", "Properties": {"MessageRetentionPeriod": 60}}}})
        );
        t.add_parameter("P", Parameter::string("p"));
        t.add_output(
            "O",
            Output {
                description: None,
                value: Expr::get_att("Q", "Arn"),
                export: Some(Export {
                    name: Expr::sub("${AWS::StackName}-O"),
                }),
                condition: None,
            },
        );
        let text = serde_json::to_string(&t).expect("serializes");
        let order: Vec<usize> = [
            "AWSTemplateFormatVersion",
            "Description",
            "Parameters",
            "Resources",
            "Outputs",
        ]
        .iter()
        .map(|k| text.find(k).expect("section present"))
        .collect();
        assert!(order.windows(2).all(|w| w[0] < w[1]), "{text}");
        assert!(
            text.contains(r#""Export":{"Name":{"Fn::Sub":"${AWS::StackName}-O"}}"#),
            "{text}"
        );
    }

    #[test]
    fn request_authorizer_shape() {
        let a = Authorizer {
            api_id: Expr::r#ref("Api"),
            name: "token".into(),
            authorizer_type: AuthorizerType::Request,
            authorizer_uri: Expr::sub(
                "arn:${AWS::Partition}:apigateway:${AWS::Region}:lambda:path/2015-03-31/functions/${AuthFunction.Arn}/invocations",
            ),
            identity_source: vec!["route.request.querystring.token".into()],
        };
        let r = Resource::new(a);
        let v = serde_json::to_value(&r).expect("serializes");
        assert_eq!(v["Type"], "AWS::ApiGatewayV2::Authorizer");
        assert_eq!(v["Properties"]["AuthorizerType"], "REQUEST");
        assert_eq!(
            v["Properties"]["IdentitySource"],
            json!(["route.request.querystring.token"])
        );
        assert_eq!(r.properties.attributes(), ["AuthorizerId"]);
        assert!(r.as_type::<Authorizer>().is_some());
        assert!(r.as_type::<Queue>().is_none());
    }
}
