//! `AWS::Cognito::UserPool` and `AWS::Cognito::UserPoolClient`: the identity provider a stage
//! with `[auth] create_user_pool = true` gets.

use serde::Serialize;

use crate::cfn::Expr;

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct PasswordPolicy {
    pub minimum_length: u32,
    pub require_lowercase: bool,
    pub require_uppercase: bool,
    pub require_numbers: bool,
    pub require_symbols: bool,
    pub temporary_password_validity_days: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UserPoolPolicies {
    pub password_policy: PasswordPolicy,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AdminCreateUserConfig {
    pub allow_admin_create_user_only: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct RecoveryOption {
    pub name: String,
    pub priority: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct AccountRecoverySetting {
    pub recovery_mechanisms: Vec<RecoveryOption>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UserPool {
    pub user_pool_name: Expr,
    pub username_attributes: Vec<String>,
    pub auto_verified_attributes: Vec<String>,
    pub policies: UserPoolPolicies,
    pub admin_create_user_config: AdminCreateUserConfig,
    pub account_recovery_setting: AccountRecoverySetting,
    /// `OFF`, `ON` or `OPTIONAL`.
    pub mfa_configuration: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub enabled_mfas: Vec<String>,
    /// `ACTIVE` or `INACTIVE`.
    pub deletion_protection: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct TokenValidityUnits {
    pub id_token: String,
    pub access_token: String,
    pub refresh_token: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub struct UserPoolClient {
    pub user_pool_id: Expr,
    pub client_name: Expr,
    pub generate_secret: bool,
    pub explicit_auth_flows: Vec<String>,
    /// `ENABLED`: sign-in errors do not tell whether a user exists.
    pub prevent_user_existence_errors: String,
    pub enable_token_revocation: bool,
    pub id_token_validity: u32,
    pub access_token_validity: u32,
    pub refresh_token_validity: u32,
    pub token_validity_units: TokenValidityUnits,
    /// The attributes a signed-in user may change on themselves (`UpdateUserAttributes`).
    /// Unset, that is every standard attribute
    /// (<https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_UserPoolClientType.html>).
    pub write_attributes: Vec<String>,
}
