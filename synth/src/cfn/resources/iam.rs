//! `AWS::IAM::Role`, with inline policies; `AWS::IAM::ManagedPolicy`.

use serde::Serialize;

use crate::cfn::Expr;
use crate::cfn::policy::PolicyDocument;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct InlinePolicy {
    pub policy_name: String,
    pub policy_document: PolicyDocument,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct Role {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub assume_role_policy_document: PolicyDocument,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub policies: Vec<InlinePolicy>,
    /// Managed policies, by ARN: an AWS managed one only where AWS prescribes it (API Gateway's
    /// logging role), and the stack's own push policy for a backend's role (the example
    /// backend's); everything else is an inline policy naming its resources.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub managed_policy_arns: Vec<Expr>,
}

/// `AWS::IAM::ManagedPolicy`: a customer managed policy others attach to their roles; `Ref` is
/// its ARN.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct ManagedPolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    pub policy_document: PolicyDocument,
}
