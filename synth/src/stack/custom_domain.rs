//! A custom domain for the stage, where the stage file has `[domain]`: the Regional domain
//! name, its mapping to this API's stage, and outputs with the custom URL and the target for
//! the DNS record
//! (<https://docs.aws.amazon.com/apigateway/latest/developerguide/websocket-api-custom-domain-names.html>).
//!
//! The handlers keep calling `@connections` on the execute-api endpoint (`CALLBACK_URL`):
//! through a custom domain the path's first segment is the mapping key, not the stage.

use super::ids;
use crate::cfn::resources::apigatewayv2::{
    ApiMapping, DomainName, DomainNameConfiguration, EndpointType, SecurityPolicy,
};
use crate::cfn::{Expr, Output, Template};
use crate::stage::Stage;

/// Adds the domain name, the API mapping and their outputs; nothing without `[domain]`.
pub fn add(t: &mut Template, stage: &Stage) {
    let Some(domain) = &stage.domain else {
        return;
    };
    let name = t.add(
        ids::DOMAIN_NAME,
        DomainName {
            domain_name: domain.name.clone(),
            domain_name_configurations: vec![DomainNameConfiguration {
                certificate_arn: domain.certificate_arn.clone(),
                endpoint_type: EndpointType::Regional,
                security_policy: SecurityPolicy::Tls12,
            }],
        },
    );
    t.add(
        ids::API_MAPPING,
        ApiMapping {
            api_id: Expr::r#ref(ids::API),
            domain_name: Expr::r#ref(&name),
            stage: Expr::r#ref(ids::STAGE),
            api_mapping_key: domain.base_path.clone(),
        },
    );
    let url = match &domain.base_path {
        Some(path) => format!("wss://{}/{path}", domain.name),
        None => format!("wss://{}", domain.name),
    };
    t.add_output(
        "CustomDomainWebSocketUrl",
        Output {
            description: Some("The URL clients connect to, on the custom domain".to_owned()),
            value: Expr::from(url),
            export: None,
            condition: None,
        },
    );
    t.add_output(
        "CustomDomainTarget",
        Output {
            description: Some(format!(
                "Point a CNAME (or alias) record for {} here",
                domain.name
            )),
            value: Expr::get_att(&name, "RegionalDomainName"),
            export: None,
            condition: None,
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stack::test_stage;

    const DOMAIN: &str = "[domain]\nname = \"chat.example.com\"\ncertificate_arn = \"arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666\"\n";

    fn with_domain(toml: &str) -> serde_json::Value {
        let mut t = Template::new("test");
        add(&mut t, &test_stage(toml));
        serde_json::to_value(&t).expect("serializes")
    }

    #[test]
    fn nothing_without_a_domain_section() {
        let v = with_domain("");
        assert_eq!(v["Resources"], serde_json::json!({}));
        assert!(v.get("Outputs").is_none());
    }

    #[test]
    fn a_regional_tls12_domain_mapped_to_this_stage() {
        let v = with_domain(&format!("{DOMAIN}base_path = \"chat\"\n"));
        let d = &v["Resources"][ids::DOMAIN_NAME]["Properties"];
        assert_eq!(d["DomainName"], "chat.example.com");
        assert_eq!(d["DomainNameConfigurations"][0]["EndpointType"], "REGIONAL");
        assert_eq!(
            d["DomainNameConfigurations"][0]["SecurityPolicy"],
            "TLS_1_2"
        );
        let m = &v["Resources"][ids::API_MAPPING]["Properties"];
        assert_eq!(m["Stage"]["Ref"], ids::STAGE);
        assert_eq!(m["DomainName"]["Ref"], ids::DOMAIN_NAME);
        assert_eq!(m["ApiMappingKey"], "chat");
        assert_eq!(
            v["Outputs"]["CustomDomainWebSocketUrl"]["Value"],
            "wss://chat.example.com/chat"
        );
    }

    #[test]
    fn without_a_base_path_the_root_is_mapped() {
        let v = with_domain(DOMAIN);
        assert!(
            v["Resources"][ids::API_MAPPING]["Properties"]
                .get("ApiMappingKey")
                .is_none()
        );
        assert_eq!(
            v["Outputs"]["CustomDomainWebSocketUrl"]["Value"],
            "wss://chat.example.com"
        );
    }
}
