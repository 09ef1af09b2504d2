//! Authentication on `$connect` (stages with `[auth] mode = "jwt"`): the
//! `AWS::ApiGatewayV2::Authorizer` of type REQUEST whose identity source is the stage's
//! `token_source`, and the permission that lets exactly that authorizer invoke the authorizer
//! function. The function itself, its role (its own logs only) and log group are the
//! `Authorizer` handler's, added like every other function; the `$connect` route points at the
//! authorizer in [`super::routes`].
//!
//! API Gateway developer guide, "Control access to WebSocket APIs with AWS Lambda REQUEST
//! authorizers":
//! <https://docs.aws.amazon.com/apigateway/latest/developerguide/apigateway-websocket-api-lambda-auth.html>

use std::collections::BTreeMap;

use wsstack_auth::config as env;
use wsstack_auth::jwt::USER_POOL_USERNAME_CLAIMS;
use wsstack_routes::Handler;

use super::ids;
use crate::cfn::resources::apigatewayv2::{Authorizer, AuthorizerType};
use crate::cfn::resources::lambda::Permission;
use crate::cfn::{Expr, Template};
use crate::stage::{IdentityProvider, Stage};

/// Adds the authorizer and its invoke permission, where the stage authenticates.
pub fn add(t: &mut Template, stage: &Stage) {
    let Some(jwt) = stage.auth.jwt() else {
        return;
    };
    let function = ids::function(Handler::Authorizer);
    t.add(
        ids::CONNECT_AUTHORIZER,
        Authorizer {
            api_id: Expr::r#ref(ids::API),
            name: format!("{}-connect-jwt", stage.stack_name),
            authorizer_type: AuthorizerType::Request,
            authorizer_uri: Expr::sub(format!(
                "arn:${{AWS::Partition}}:apigateway:${{AWS::Region}}:lambda:path/2015-03-31/functions/${{{function}.Arn}}/invocations"
            )),
            // A missing or empty identity source is answered 401 by API Gateway itself, without
            // invoking the function.
            identity_source: vec![jwt.token_source.identity_source()],
        },
    );
    t.add(
        ids::permission(Handler::Authorizer),
        Permission {
            action: "lambda:InvokeFunction".to_owned(),
            function_name: Expr::get_att(&function, "Arn"),
            principal: "apigateway.amazonaws.com".to_owned(),
            // Only this authorizer of this API may invoke the function.
            source_arn: Some(Expr::sub(format!(
                "arn:${{AWS::Partition}}:execute-api:${{AWS::Region}}:${{AWS::AccountId}}:${{{api}}}/authorizers/${{{authorizer}}}",
                api = ids::API,
                authorizer = ids::CONNECT_AUTHORIZER
            ))),
            source_account: None,
        },
    );
}

/// The authorizer function's settings (`wsstack_auth::AuthConfig::from_env` reads them).
pub fn environment(stage: &Stage) -> BTreeMap<String, Expr> {
    let mut v = BTreeMap::new();
    let Some(jwt) = stage.auth.jwt() else {
        return v;
    };
    match &jwt.provider {
        IdentityProvider::Issuer {
            issuer,
            audiences,
            jwks_url,
        } => {
            v.insert(env::ENV_ISSUER.to_owned(), Expr::from(issuer.as_str()));
            v.insert(
                env::ENV_AUDIENCE.to_owned(),
                Expr::from(audiences.join(",")),
            );
            if let Some(url) = jwks_url {
                v.insert(env::ENV_JWKS_URL.to_owned(), Expr::from(url.as_str()));
            }
        }
        IdentityProvider::UserPool => {
            // Cognito's `iss`: https://cognito-idp.{region}.amazonaws.com/{userPoolId}, which
            // is the pool's ProviderURL with the scheme.
            v.insert(
                env::ENV_ISSUER.to_owned(),
                Expr::sub(format!("https://${{{}.ProviderURL}}", ids::USER_POOL)),
            );
            // ID tokens carry the app client's id in `aud` (access tokens have no `aud`).
            v.insert(
                env::ENV_AUDIENCE.to_owned(),
                Expr::r#ref(ids::USER_POOL_CLIENT),
            );
        }
    }
    v.insert(
        env::ENV_TOKEN_SOURCE.to_owned(),
        Expr::from(jwt.token_source.to_string()),
    );
    // The name others see: the stage's claim; for the stack's own user pool,
    // `preferred_username` (its app client lets only administrators set it, see
    // `user_pool`), then `cognito:username`; otherwise the authorizer's default, claims no user
    // can set (`cognito:username`, then `sub`).
    let claims = match (&jwt.username_claim, &jwt.provider) {
        (Some(claim), _) => Some(claim.clone()),
        (None, IdentityProvider::UserPool) => Some(USER_POOL_USERNAME_CLAIMS.join(",")),
        (None, IdentityProvider::Issuer { .. }) => None,
    };
    if let Some(claims) = claims {
        v.insert(env::ENV_USERNAME_CLAIM.to_owned(), Expr::from(claims));
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::test_stage;

    const JWT: &str = "[auth]\nmode = \"jwt\"\nissuer = \"https://issuer.example\"\naudience = [\"a\", \"b\"]\ntoken_source = \"header:Auth\"\n";

    #[test]
    fn the_authorizer_reads_its_identity_source_and_only_it_may_invoke() {
        let mut t = Template::new("test");
        add(&mut t, &test_stage(JWT));
        let v = serde_json::to_value(&t).expect("serializes");
        let a = &v["Resources"][ids::CONNECT_AUTHORIZER]["Properties"];
        assert_eq!(a["AuthorizerType"], "REQUEST");
        assert_eq!(a["IdentitySource"][0], "route.request.header.Auth");
        assert_eq!(
            v["Resources"]["AuthorizerPermission"]["Properties"]["SourceArn"]["Fn::Sub"],
            "arn:${AWS::Partition}:execute-api:${AWS::Region}:${AWS::AccountId}:${WebSocketApi}/authorizers/${ConnectAuthorizer}"
        );
    }

    #[test]
    fn nothing_without_auth() {
        let mut t = Template::new("test");
        add(&mut t, &test_stage(""));
        assert!(t.resource(ids::CONNECT_AUTHORIZER).is_none());
        assert!(environment(&test_stage("")).is_empty());
    }

    #[test]
    fn the_environment_names_issuer_audiences_and_token_source() {
        let e = environment(&test_stage(JWT));
        let v = serde_json::to_value(&e).expect("json");
        assert_eq!(v["AUTH_ISSUER"], "https://issuer.example");
        assert_eq!(v["AUTH_AUDIENCE"], "a,b");
        assert_eq!(v["AUTH_TOKEN_SOURCE"], "header:Auth");
        let pool = environment(&test_stage(
            "[auth]\nmode = \"jwt\"\ncreate_user_pool = true\n",
        ));
        let v = serde_json::to_value(&pool).expect("json");
        assert_eq!(
            v["AUTH_ISSUER"]["Fn::Sub"],
            "https://${UserPool.ProviderURL}"
        );
        assert_eq!(v["AUTH_AUDIENCE"]["Ref"], "UserPoolClient");
        assert_eq!(v["AUTH_TOKEN_SOURCE"], "query:token");
    }

    /// Issue 18, item 1: the user pool's name claim is the one its users cannot write.
    #[test]
    fn the_user_pool_name_comes_from_preferred_username_then_cognito_username() {
        let pool = environment(&test_stage(
            "[auth]\nmode = \"jwt\"\ncreate_user_pool = true\n",
        ));
        let v = serde_json::to_value(&pool).expect("json");
        assert_eq!(
            v["AUTH_USERNAME_CLAIM"],
            "preferred_username,cognito:username"
        );
        for claim in USER_POOL_USERNAME_CLAIMS {
            assert!(
                !super::super::user_pool::USER_WRITABLE_ATTRIBUTES.contains(&claim),
                "{claim} is user-writable"
            );
        }
        // An issuer of the stage's own: the authorizer's default unless the stage names one.
        assert!(!environment(&test_stage(JWT)).contains_key("AUTH_USERNAME_CLAIM"));
        let named = environment(&test_stage(&format!("{JWT}username_claim = \"email\"\n")));
        assert_eq!(
            serde_json::to_value(&named).expect("json")["AUTH_USERNAME_CLAIM"],
            "email"
        );
    }
}
