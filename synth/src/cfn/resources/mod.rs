//! One Rust type per CloudFormation resource type, grouped by service.

pub mod apigateway;
pub mod apigatewayv2;
pub mod cloudwatch;
pub mod cognito;
pub mod dynamodb;
pub mod events;
pub mod iam;
pub mod lambda;
pub mod logs;
pub mod sns;
pub mod sqs;

use serde::Serialize;

/// A CloudFormation resource type: its properties struct, its type name and the attributes
/// `Fn::GetAtt` may read.
pub trait ResourceType: Serialize + Into<Properties> + Sized {
    /// The type name, e.g. `AWS::DynamoDB::Table`.
    const TYPE: &'static str;
    /// The attributes `Fn::GetAtt` accepts for this type.
    const ATTRIBUTES: &'static [&'static str];

    fn from_properties(p: &Properties) -> Option<&Self>;
}

macro_rules! resource_types {
    ($($variant:ident($ty:path) = $name:literal, attributes [$($attr:literal),*];)*) => {
        /// Every resource type the model knows, in the order of the list below.
        pub const ALL_TYPES: &[&str] = &[$($name),*];

        /// The properties of any resource the model knows, tagged by type.
        // A template holds a few dozen resources, built once: boxing the large variants
        // (functions) would cost indirection and buy nothing.
        #[allow(clippy::large_enum_variant)]
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(untagged)]
        pub enum Properties {
            $($variant($ty)),*
        }

        impl Properties {
            /// The CloudFormation type name.
            pub fn type_name(&self) -> &'static str {
                match self {
                    $(Properties::$variant(_) => <$ty as ResourceType>::TYPE),*
                }
            }

            /// The attributes `Fn::GetAtt` accepts for this resource's type.
            pub fn attributes(&self) -> &'static [&'static str] {
                match self {
                    $(Properties::$variant(_) => <$ty as ResourceType>::ATTRIBUTES),*
                }
            }
        }

        $(
            impl ResourceType for $ty {
                const TYPE: &'static str = $name;
                const ATTRIBUTES: &'static [&'static str] = &[$($attr),*];

                fn from_properties(p: &Properties) -> Option<&Self> {
                    match p {
                        Properties::$variant(v) => Some(v),
                        #[allow(unreachable_patterns)]
                        _ => None,
                    }
                }
            }

            impl From<$ty> for Properties {
                fn from(p: $ty) -> Self {
                    Properties::$variant(p)
                }
            }
        )*
    };
}

// Attribute lists are CloudFormation's "Return values / Fn::GetAtt" of each type.
resource_types! {
    Api(apigatewayv2::Api) = "AWS::ApiGatewayV2::Api", attributes ["ApiEndpoint", "ApiId"];
    Route(apigatewayv2::Route) = "AWS::ApiGatewayV2::Route", attributes ["RouteId"];
    Integration(apigatewayv2::Integration) = "AWS::ApiGatewayV2::Integration", attributes ["IntegrationId"];
    Stage(apigatewayv2::Stage) = "AWS::ApiGatewayV2::Stage", attributes [];
    Authorizer(apigatewayv2::Authorizer) = "AWS::ApiGatewayV2::Authorizer", attributes ["AuthorizerId"];
    DomainName(apigatewayv2::DomainName) = "AWS::ApiGatewayV2::DomainName", attributes ["RegionalDomainName", "RegionalHostedZoneId"];
    ApiMapping(apigatewayv2::ApiMapping) = "AWS::ApiGatewayV2::ApiMapping", attributes ["ApiMappingId"];
    ApiGatewayAccount(apigateway::Account) = "AWS::ApiGateway::Account", attributes ["Id"];
    Function(lambda::Function) = "AWS::Lambda::Function", attributes ["Arn", "SnapStartResponse.ApplyOn", "SnapStartResponse.OptimizationStatus"];
    Permission(lambda::Permission) = "AWS::Lambda::Permission", attributes [];
    EventSourceMapping(lambda::EventSourceMapping) = "AWS::Lambda::EventSourceMapping", attributes ["EventSourceMappingArn", "Id"];
    Role(iam::Role) = "AWS::IAM::Role", attributes ["Arn", "RoleId"];
    Table(dynamodb::Table) = "AWS::DynamoDB::Table", attributes ["Arn", "StreamArn"];
    LogGroup(logs::LogGroup) = "AWS::Logs::LogGroup", attributes ["Arn"];
    Queue(sqs::Queue) = "AWS::SQS::Queue", attributes ["Arn", "QueueName", "QueueUrl"];
    EventsRule(events::Rule) = "AWS::Events::Rule", attributes ["Arn"];
    EventBus(events::EventBus) = "AWS::Events::EventBus", attributes ["Arn", "Name", "Policy"];
    RouteResponse(apigatewayv2::RouteResponse) = "AWS::ApiGatewayV2::RouteResponse", attributes ["RouteResponseId"];
    ManagedPolicy(iam::ManagedPolicy) = "AWS::IAM::ManagedPolicy", attributes ["PolicyArn"];
    QueuePolicy(sqs::QueuePolicy) = "AWS::SQS::QueuePolicy", attributes ["Id"];
    UserPool(cognito::UserPool) = "AWS::Cognito::UserPool", attributes ["Arn", "ProviderName", "ProviderURL", "UserPoolId"];
    UserPoolClient(cognito::UserPoolClient) = "AWS::Cognito::UserPoolClient", attributes ["ClientId", "ClientSecret", "Name"];
    Alarm(cloudwatch::Alarm) = "AWS::CloudWatch::Alarm", attributes ["Arn"];
    Dashboard(cloudwatch::Dashboard) = "AWS::CloudWatch::Dashboard", attributes [];
    Topic(sns::Topic) = "AWS::SNS::Topic", attributes ["TopicArn", "TopicName"];
    Subscription(sns::Subscription) = "AWS::SNS::Subscription", attributes ["Arn"];
}
