//! `[example_backend]`: the example backend service (`examples/job-backend`) in the stage's own
//! stack, a stage-file switch. Off unless `enabled = true` (the shipped `dev` turns it on): a
//! Lambda function running the `job-backend` binary behind an EventBridge rule on the stage's
//! bus for the forwarded action `submitJob`, pushing the job's progress through the stage's
//! push API. Its logs follow `[lambda]`'s `log_level` and `log_retention_days`.

use std::ops::Range;

use serde::Deserialize;

use super::{FunctionSettings, LogLevel, MemoryMb, TimeoutSeconds};

/// An `[example_backend]` error: the value's span, the field, the message.
type ExampleBackendError = (Range<usize>, String, String);

/// The function's memory unless the file says otherwise: the job pushes a few small frames.
pub const DEFAULT_MEMORY_MB: u32 = 128;
/// The function's timeout unless the file says otherwise: a job of 10 steps at the example's
/// pace, with its pushes, takes a few seconds.
pub const DEFAULT_TIMEOUT_SECONDS: u32 = 30;

/// `[example_backend]`, resolved, where `enabled = true`.
#[derive(Debug, Clone, PartialEq)]
pub struct ExampleBackendSettings {
    /// `memory_mb`: 128..=10240. Default: [`DEFAULT_MEMORY_MB`].
    pub memory_mb: u32,
    /// `timeout_seconds`: 1..=900 (EventBridge invokes it asynchronously: no API Gateway cap).
    /// Default: [`DEFAULT_TIMEOUT_SECONDS`].
    pub timeout_seconds: u32,
    /// `[lambda] log_level`.
    pub log_level: LogLevel,
    /// `[lambda] log_retention_days`.
    pub log_retention_days: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ExampleBackendSection {
    enabled: Option<bool>,
    memory_mb: Option<toml::Spanned<MemoryMb>>,
    timeout_seconds: Option<toml::Spanned<TimeoutSeconds>>,
}

/// Checks `[example_backend]`: `None` where it is off. A size given while it is off is an
/// error, not silently ignored; `defaults` are the stage's `[lambda]` values.
pub(super) fn check(
    s: &ExampleBackendSection,
    defaults: &FunctionSettings,
) -> Result<Option<ExampleBackendSettings>, ExampleBackendError> {
    if s.enabled != Some(true) {
        let set = [
            ("memory_mb", s.memory_mb.as_ref().map(toml::Spanned::span)),
            (
                "timeout_seconds",
                s.timeout_seconds.as_ref().map(toml::Spanned::span),
            ),
        ];
        if let Some((key, Some(span))) = set.into_iter().find(|(_, span)| span.is_some()) {
            return Err((
                span,
                format!("example_backend.{key}"),
                format!(
                    "the example backend is off (it needs enabled = true), so {key} would do nothing: set enabled = true or remove {key}"
                ),
            ));
        }
        return Ok(None);
    }
    Ok(Some(ExampleBackendSettings {
        memory_mb: s
            .memory_mb
            .as_ref()
            .map_or(DEFAULT_MEMORY_MB, |v| v.get_ref().0),
        timeout_seconds: s
            .timeout_seconds
            .as_ref()
            .map_or(DEFAULT_TIMEOUT_SECONDS, |v| v.get_ref().0),
        log_level: defaults.log_level,
        log_retention_days: defaults.log_retention_days,
    }))
}
