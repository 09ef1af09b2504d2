//! `[domain]`: a custom domain name for the stage's API, checked against what API Gateway
//! accepts for WebSocket APIs: Regional domains only, with an ACM certificate in the API's
//! region; names per RFC 1035, at most 63 octets a label and 253 in all
//! (<https://docs.aws.amazon.com/apigateway/latest/developerguide/websocket-api-custom-domain-names.html>).

use std::ops::Range;

use super::{DomainSection, DomainSettings, is_account_id};

/// A `[domain]` error: the value's span, the field, the message.
type DomainError = (Range<usize>, String, String);

/// Checks `[domain]`; `region` is the stage's pinned region, if any, which the certificate must
/// be in.
pub(super) fn check(
    d: &DomainSection,
    region: Option<&str>,
) -> Result<DomainSettings, DomainError> {
    let name = d.name.get_ref();
    if !is_domain_name(name) {
        return Err((
            d.name.span(),
            "domain.name".to_owned(),
            format!(
                "`{name}` is not a domain name API Gateway accepts: lowercase letters, digits and hyphens in dot-separated labels of 1 to 63 characters (not starting or ending with a hyphen), at least two labels, 253 characters in all"
            ),
        ));
    }
    let arn = d.certificate_arn.get_ref();
    let cert_region = certificate_region(arn).ok_or_else(|| {
        (
            d.certificate_arn.span(),
            "domain.certificate_arn".to_owned(),
            format!(
                "`{arn}` is not an ACM certificate ARN (arn:aws:acm:REGION:ACCOUNT:certificate/ID)"
            ),
        )
    })?;
    if let Some(r) = region
        && r != cert_region
    {
        return Err((
            d.certificate_arn.span(),
            "domain.certificate_arn".to_owned(),
            format!(
                "the certificate is in {cert_region}, the stage deploys to {r}: WebSocket APIs take only Regional custom domains, whose certificate must be in the API's region"
            ),
        ));
    }
    let base_path = match &d.base_path {
        None => None,
        Some(p) if is_mapping_key(p.get_ref()) => Some(p.get_ref().clone()),
        Some(p) => {
            return Err((
                p.span(),
                "domain.base_path".to_owned(),
                format!(
                    "`{}` is not a base path for a WebSocket API: one path segment of letters, digits and `-._~`, at most 128 characters, no `/`",
                    p.get_ref()
                ),
            ));
        }
    };
    Ok(DomainSettings {
        name: name.clone(),
        certificate_arn: arn.clone(),
        base_path,
    })
}

fn is_domain_name(name: &str) -> bool {
    let labels: Vec<&str> = name.split('.').collect();
    name.len() <= 253
        && labels.len() >= 2
        && labels.iter().all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        })
}

/// The region of an ACM certificate ARN, if `arn` is one.
fn certificate_region(arn: &str) -> Option<&str> {
    let parts: Vec<&str> = arn.splitn(6, ':').collect();
    let [prefix, partition, service, region, account, resource] = parts.as_slice() else {
        return None;
    };
    let id = resource.strip_prefix("certificate/")?;
    let valid = *prefix == "arn"
        && matches!(*partition, "aws" | "aws-cn" | "aws-us-gov")
        && *service == "acm"
        && region.split('-').count() >= 3
        && region
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && is_account_id(account)
        && !id.is_empty()
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
    valid.then_some(*region)
}

fn is_mapping_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= 128
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domain_names() {
        assert!(is_domain_name("chat.example.com"));
        assert!(is_domain_name("a-b.example.co.uk"));
        for bad in [
            "example",
            "Chat.example.com",
            "-a.example.com",
            "a..com",
            "a_b.com",
        ] {
            assert!(!is_domain_name(bad), "{bad}");
        }
        assert!(!is_domain_name(&format!("{}.com", "a".repeat(64))));
    }

    #[test]
    fn certificate_arns() {
        assert_eq!(
            certificate_region(
                "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-1111-2222-3333-444455556666"
            ),
            Some("eu-west-1")
        );
        for bad in [
            "arn:aws:iam::123456789012:certificate/x",
            "arn:aws:acm:eu-west-1:1234:certificate/x",
            "arn:aws:acm:eu-west-1:123456789012:key/x",
            "not an arn",
        ] {
            assert_eq!(certificate_region(bad), None, "{bad}");
        }
    }
}
