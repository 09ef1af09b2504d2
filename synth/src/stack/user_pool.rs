//! A Cognito user pool and app client for stages with `[auth] create_user_pool = true`: the
//! issuer and audience of the tokens the `$connect` authorizer accepts, and outputs that tell
//! clients where to sign in.
//!
//! Users are created by an administrator (no self sign-up: a chat that anyone can join needs no
//! authentication), sign in with their email address, and send the **ID token** (its `aud` is
//! the app client's id; Cognito access tokens carry `client_id` instead of `aud`).
//!
//! The name others see is `preferred_username`, which only an administrator sets
//! (`AdminCreateUser`, `AdminUpdateUserAttributes`): the app client's `WriteAttributes` leaves
//! it out, so a user's own access token cannot change it. Without `WriteAttributes` an app
//! client lets users write every standard attribute
//! (<https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_UserPoolClientType.html>).
//! Self sign-up is off (`AllowAdminCreateUserOnly`), so `SignUp` is no way around it either.
//! `ReadAttributes` stays unset: every standard attribute is readable, so the ID token carries
//! `preferred_username` ("The ID token ... only contains claims corresponding to the readable
//! attributes", <https://docs.aws.amazon.com/cognito/latest/developerguide/user-pool-settings-attributes.html>)
//! and the readable set includes the writable one.

use super::{ids, outputs, stateful_removal_policy};
use crate::cfn::resources::cognito::{
    AccountRecoverySetting, AdminCreateUserConfig, PasswordPolicy, RecoveryOption,
    TokenValidityUnits, UserPool, UserPoolClient, UserPoolPolicies,
};
use crate::cfn::{Expr, Resource, Template};
use crate::stage::{IdentityProvider, Stage};

pub use crate::stage::USER_WRITABLE_ATTRIBUTES;

/// Adds the pool, its client and their outputs, where the stage asks for them.
pub fn add(t: &mut Template, stage: &Stage) {
    let wants_pool = stage
        .auth
        .jwt()
        .is_some_and(|j| j.provider == IdentityProvider::UserPool);
    if !wants_pool {
        return;
    }
    t.add(
        ids::USER_POOL,
        Resource::new(user_pool(stage)).removal_policy(stateful_removal_policy(stage)),
    );
    t.add(ids::USER_POOL_CLIENT, app_client());
    add_outputs(t, stage);
}

/// The pool: sign-in by e-mail, accounts made by administrators only, strong passwords,
/// optional TOTP.
fn user_pool(stage: &Stage) -> UserPool {
    UserPool {
        user_pool_name: Expr::sub("${AWS::StackName}-users"),
        username_attributes: vec!["email".to_owned()],
        auto_verified_attributes: vec!["email".to_owned()],
        policies: UserPoolPolicies {
            password_policy: PasswordPolicy {
                minimum_length: 12,
                require_lowercase: true,
                require_uppercase: true,
                require_numbers: true,
                require_symbols: true,
                temporary_password_validity_days: 3,
            },
        },
        admin_create_user_config: AdminCreateUserConfig {
            allow_admin_create_user_only: true,
        },
        account_recovery_setting: AccountRecoverySetting {
            recovery_mechanisms: vec![RecoveryOption {
                name: "verified_email".to_owned(),
                priority: 1,
            }],
        },
        mfa_configuration: "OPTIONAL".to_owned(),
        enabled_mfas: vec!["SOFTWARE_TOKEN_MFA".to_owned()],
        // The accounts are data: kept and protected where the stage keeps its table.
        deletion_protection: if stage.table.retain {
            "ACTIVE"
        } else {
            "INACTIVE"
        }
        .to_owned(),
    }
}

/// The app client browsers and apps sign in with: public (no secret), SRP, short-lived tokens,
/// and only the attributes a user may write themselves.
fn app_client() -> UserPoolClient {
    UserPoolClient {
        user_pool_id: Expr::r#ref(ids::USER_POOL),
        client_name: Expr::sub("${AWS::StackName}-clients"),
        // A public client (browsers, apps): a secret could not be kept.
        generate_secret: false,
        explicit_auth_flows: vec![
            "ALLOW_USER_SRP_AUTH".to_owned(),
            "ALLOW_REFRESH_TOKEN_AUTH".to_owned(),
        ],
        prevent_user_existence_errors: "ENABLED".to_owned(),
        enable_token_revocation: true,
        id_token_validity: 60,
        access_token_validity: 60,
        refresh_token_validity: 30,
        token_validity_units: TokenValidityUnits {
            id_token: "minutes".to_owned(),
            access_token: "minutes".to_owned(),
            refresh_token: "days".to_owned(),
        },
        write_attributes: USER_WRITABLE_ATTRIBUTES.map(String::from).to_vec(),
    }
}

/// What clients need to sign in and the authorizer to trust: the pool, the client, the issuer.
fn add_outputs(t: &mut Template, stage: &Stage) {
    for (name, description, value) in [
        (
            "UserPoolId",
            "The Cognito user pool whose users may connect",
            Expr::r#ref(ids::USER_POOL),
        ),
        (
            "UserPoolClientId",
            "The app client clients sign in with (the ID token's aud)",
            Expr::r#ref(ids::USER_POOL_CLIENT),
        ),
        (
            "Issuer",
            "The tokens' iss; its /.well-known/jwks.json holds the signing keys",
            Expr::sub(format!("https://${{{}.ProviderURL}}", ids::USER_POOL)),
        ),
    ] {
        outputs::add_one(t, stage, name, description, value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::test_stage;

    /// Issue 18, item 1: a signed-in user could set `preferred_username`, the name others see,
    /// on themselves, because the app client had no `WriteAttributes` (then every standard
    /// attribute is user-writable:
    /// https://docs.aws.amazon.com/cognito-user-identity-pools/latest/APIReference/API_UserPoolClientType.html).
    #[test]
    fn users_cannot_write_their_own_name_or_sign_in_address() {
        let mut t = Template::new("test");
        add(
            &mut t,
            &test_stage("[auth]\nmode = \"jwt\"\ncreate_user_pool = true\n"),
        );
        let v = serde_json::to_value(&t).expect("serializes");
        let client = &v["Resources"][ids::USER_POOL_CLIENT]["Properties"];
        let writable: Vec<&str> = client["WriteAttributes"]
            .as_array()
            .expect("WriteAttributes is set: unset means every standard attribute")
            .iter()
            .map(|a| a.as_str().expect("string"))
            .collect();
        assert!(!writable.is_empty(), "an empty list would read as unset");
        for name in [
            "preferred_username",
            "name",
            "nickname",
            "given_name",
            "family_name",
            "middle_name",
            "email",
            "phone_number",
        ] {
            assert!(!writable.contains(&name), "{name} is user-writable");
        }
        // Unset ReadAttributes: every standard attribute is readable, so the ID token carries
        // preferred_username and the readable set includes the writable one.
        assert!(client.get("ReadAttributes").is_none());
        // No self sign-up: SignUp is no way to pick a name either.
        assert_eq!(
            v["Resources"][ids::USER_POOL]["Properties"]["AdminCreateUserConfig"]["AllowAdminCreateUserOnly"],
            true
        );
    }
}
