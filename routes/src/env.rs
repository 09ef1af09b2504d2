//! The environment variables synth sets on the functions and the handlers read, declared once:
//! synth writes no variable name as a string literal, the handlers' `config.rs` and the
//! authorizer's settings read these names.

/// A variable of a function's environment. Which handler gets which is its
/// [`crate::HandlerSpec::environment`]; what value synth gives it comes from the stage file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum EnvVar {
    /// The connections table (required).
    TableName,
    /// The rooms table (required by the handlers the route table lets use it).
    RoomsTableName,
    /// How many `PostToConnection` calls a broadcast keeps in flight (optional).
    BroadcastConcurrency,
    /// The `@connections` endpoint, `https://{api}.execute-api.{region}.{suffix}/{stage}`
    /// (optional: without it the handlers derive it from each event).
    CallbackUrl,
    /// `inline` or `queue`: how a broadcast reaches everyone (optional, default `inline`).
    FanoutMode,
    /// The SQS queue of fan-out jobs.
    FanoutQueueUrl,
    /// Scan segments (= jobs) a broadcast to everyone is split into in queue mode.
    FanoutSegments,
    /// The oldest a fan-out job may be before a worker drops it, in seconds.
    FanoutMaxJobAgeSeconds,
    /// `jwt` when an authorizer guards `$connect`; unset otherwise.
    AuthMode,
    /// A connection's sustained message rate, messages per second.
    MessageRate,
    /// How many messages a connection may send at once after being quiet.
    MessageBurst,
    /// A user's (verified `sub`) sustained request rate across all of their connections.
    UserMessageRate,
    /// How many requests a user may send at once across their connections.
    UserMessageBurst,
    /// The stage's budget of broadcast deliveries (`@connections` posts) per second.
    BroadcastBudget,
    /// The authorizer: the token issuer (`iss`) it accepts.
    AuthIssuer,
    /// The authorizer: the audiences (`aud`) it accepts, comma-separated.
    AuthAudience,
    /// The authorizer: where the issuer's keys are (optional: OpenID discovery otherwise).
    AuthJwksUrl,
    /// The authorizer: where the token travels (`query:token`, `header:Auth`, ...).
    AuthTokenSource,
    /// The authorizer: the claim a user's name comes from (optional).
    AuthUsernameClaim,
    /// The stage's EventBridge bus, which forwarded actions are put on.
    EventBusName,
    /// The `source` of the events of forwarded actions ([`crate::bridge::event_source`]).
    EventSource,
    /// The app manifest's forwarded actions, as JSON ([`crate::bridge::ForwardedAction`]).
    ForwardedActions,
}

/// How a broadcast reaches everyone: the stage file's `[fanout] mode` and the value synth gives
/// [`EnvVar::FanoutMode`], which the handlers read. One type for the stage, synth, the handlers
/// and the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum FanoutMode {
    /// `sendMessage` posts to every connection itself, within its deadline (what the deadline
    /// leaves goes to the fan-out queue when there is one).
    Inline,
    /// `sendMessage` enqueues fan-out jobs; the fan-out worker posts.
    Queue,
}

impl FanoutMode {
    /// Every mode.
    pub const ALL: [FanoutMode; 2] = [FanoutMode::Inline, FanoutMode::Queue];

    /// The mode's name: in the stage file and as the value of [`EnvVar::FanoutMode`].
    pub const fn as_str(self) -> &'static str {
        match self {
            FanoutMode::Inline => "inline",
            FanoutMode::Queue => "queue",
        }
    }

    /// The mode named `value` (exactly as [`FanoutMode::as_str`] spells it), if any.
    pub fn from_name(value: &str) -> Option<FanoutMode> {
        FanoutMode::ALL.into_iter().find(|m| m.as_str() == value)
    }
}

impl EnvVar {
    /// Every variable, in declaration order.
    pub const ALL: [EnvVar; 22] = [
        EnvVar::TableName,
        EnvVar::RoomsTableName,
        EnvVar::BroadcastConcurrency,
        EnvVar::CallbackUrl,
        EnvVar::FanoutMode,
        EnvVar::FanoutQueueUrl,
        EnvVar::FanoutSegments,
        EnvVar::FanoutMaxJobAgeSeconds,
        EnvVar::AuthMode,
        EnvVar::MessageRate,
        EnvVar::MessageBurst,
        EnvVar::UserMessageRate,
        EnvVar::UserMessageBurst,
        EnvVar::BroadcastBudget,
        EnvVar::AuthIssuer,
        EnvVar::AuthAudience,
        EnvVar::AuthJwksUrl,
        EnvVar::AuthTokenSource,
        EnvVar::AuthUsernameClaim,
        EnvVar::EventBusName,
        EnvVar::EventSource,
        EnvVar::ForwardedActions,
    ];

    /// The variable's name in the function's environment.
    pub const fn name(self) -> &'static str {
        match self {
            EnvVar::TableName => "TABLE_NAME",
            EnvVar::RoomsTableName => "ROOMS_TABLE_NAME",
            EnvVar::BroadcastConcurrency => "BROADCAST_CONCURRENCY",
            EnvVar::CallbackUrl => "CALLBACK_URL",
            EnvVar::FanoutMode => "FANOUT_MODE",
            EnvVar::FanoutQueueUrl => "FANOUT_QUEUE_URL",
            EnvVar::FanoutSegments => "FANOUT_SEGMENTS",
            EnvVar::FanoutMaxJobAgeSeconds => "FANOUT_MAX_JOB_AGE_SECONDS",
            EnvVar::AuthMode => "AUTH_MODE",
            EnvVar::MessageRate => "MESSAGE_RATE",
            EnvVar::MessageBurst => "MESSAGE_BURST",
            EnvVar::UserMessageRate => "USER_MESSAGE_RATE",
            EnvVar::UserMessageBurst => "USER_MESSAGE_BURST",
            EnvVar::BroadcastBudget => "BROADCAST_BUDGET",
            EnvVar::AuthIssuer => "AUTH_ISSUER",
            EnvVar::AuthAudience => "AUTH_AUDIENCE",
            EnvVar::AuthJwksUrl => "AUTH_JWKS_URL",
            EnvVar::AuthTokenSource => "AUTH_TOKEN_SOURCE",
            EnvVar::AuthUsernameClaim => "AUTH_USERNAME_CLAIM",
            EnvVar::EventBusName => "EVENT_BUS_NAME",
            EnvVar::EventSource => "EVENT_SOURCE",
            EnvVar::ForwardedActions => "FORWARDED_ACTIONS",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fanout_mode_reads_back_from_its_name_and_its_serde_form() {
        for mode in FanoutMode::ALL {
            assert_eq!(FanoutMode::from_name(mode.as_str()), Some(mode));
            let json = serde_json::to_value(mode).expect("serialize");
            assert_eq!(json, serde_json::json!(mode.as_str()));
            assert_eq!(serde_json::from_value::<FanoutMode>(json).ok(), Some(mode));
        }
        assert_eq!(FanoutMode::from_name("Queue"), None);
        assert_eq!(FanoutMode::from_name("fast"), None);
    }

    #[test]
    fn names_are_unique_screaming_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        for v in EnvVar::ALL {
            assert!(seen.insert(v.name()), "{} twice", v.name());
            assert!(
                v.name().chars().all(|c| c.is_ascii_uppercase() || c == '_'),
                "{}",
                v.name()
            );
        }
    }
}
