//! The fan-out job: what `sendMessage` enqueues in queue mode and the worker consumes.
//!
//! A job names one slice of one audience and how far through it the fan-out has come, so a
//! worker that meets its deadline enqueues the rest as a new job and no connection is listed
//! twice. The audience is either "everyone, Scan segment k of n" (a DynamoDB parallel Scan
//! segment) or "room R" (pages of the room's members); the position is an opaque cursor (the
//! last key listed). The JSON is versioned: a worker refuses a version it does not know rather
//! than guess.
//!
//! Versions: 1 is the original format; 2 adds `enqueuedAt` (when the message's first job was
//! enqueued, carried over to every continuation), so a job has an age a worker can bound. This
//! worker reads both (a version 1 job's age starts when a worker first sees it); it writes 2.
//! The `endpoint` field stays in both: a version 1 worker needs it, but this worker posts only
//! to its own configured endpoint and refuses a job that names another (see `crate::worker`).

use serde::{Deserialize, Serialize};

/// The job format this code writes.
pub const JOB_VERSION: u32 = 2;
/// The oldest job format this code still reads (version 1 has no `enqueuedAt`).
pub const OLDEST_JOB_VERSION: u32 = 1;
/// Most segments a Scan may be split in (DynamoDB's `TotalSegments` maximum).
/// <https://docs.aws.amazon.com/amazondynamodb/latest/APIReference/API_Scan.html>
pub const MAX_SEGMENTS: u32 = 1_000_000;

/// Whom a job posts to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "camelCase", deny_unknown_fields)]
pub enum JobAudience {
    /// Every connection in segment `segment` of a `segments`-way parallel Scan.
    Everyone { segment: u32, segments: u32 },
    /// The members of a room.
    Room { room: String },
    /// The open connections of one user (the connections table's user index): a push to a
    /// user, or what its deadline left. Listed in one page. (Added with the push API: a worker
    /// older than it refuses such a job, which then ends in the dead-letter queue.)
    User {
        #[serde(rename = "userId")]
        user_id: String,
    },
}

/// How far listing the audience has come.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub enum Listing {
    /// Not started: list from the first page.
    Start,
    /// Continue after this key (exclusive).
    After(String),
    /// Everything listed; only `pending` is left.
    Done,
}

/// One unit of queued fan-out.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct FanOutJob {
    pub version: u32,
    /// The message's id (also the frame's `id`): ties the jobs of one message together in logs.
    pub message_id: String,
    /// The `@connections` endpoint, `https://{domain}/{stage}`.
    pub endpoint: String,
    /// The frame to post, as JSON text.
    pub frame: String,
    pub audience: JobAudience,
    pub listing: Listing,
    /// Connections already listed but not posted to (a previous worker's deadline came first):
    /// posted before listing goes on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<String>,
    /// When the message's first job was enqueued, epoch milliseconds; continuations keep it,
    /// so a job's age spans every continuation. `None` only in a version 1 body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enqueued_at: Option<i64>,
}

/// A job body that cannot be run, naming what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JobError {
    #[error("fan-out job is not valid JSON of the expected shape: {0}")]
    Malformed(String),
    #[error(
        "fan-out job has version {found}; this worker reads versions {OLDEST_JOB_VERSION} to {JOB_VERSION}"
    )]
    Version { found: u32 },
    #[error("fan-out job field {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
}

impl FanOutJob {
    /// One job per segment of "everyone": what `sendMessage` enqueues in queue mode.
    pub fn for_everyone(
        message_id: &str,
        endpoint: &str,
        frame: &str,
        segments: u32,
    ) -> Vec<FanOutJob> {
        (0..segments.max(1))
            .map(|segment| FanOutJob {
                version: JOB_VERSION,
                message_id: message_id.to_owned(),
                endpoint: endpoint.to_owned(),
                frame: frame.to_owned(),
                audience: JobAudience::Everyone {
                    segment,
                    segments: segments.max(1),
                },
                listing: Listing::Start,
                pending: Vec::new(),
                enqueued_at: Some(now_ms()),
            })
            .collect()
    }

    /// The one job of a room message in queue mode: the worker lists the room's members page
    /// by page (one job, continued past a deadline with its cursor).
    pub fn for_room(message_id: &str, endpoint: &str, frame: &str, room: &str) -> FanOutJob {
        FanOutJob {
            version: JOB_VERSION,
            message_id: message_id.to_owned(),
            endpoint: endpoint.to_owned(),
            frame: frame.to_owned(),
            audience: JobAudience::Room {
                room: room.to_owned(),
            },
            listing: Listing::Start,
            pending: Vec::new(),
            enqueued_at: Some(now_ms()),
        }
    }

    /// The one job of a push to a user, listed from the user index.
    pub fn for_user(message_id: &str, endpoint: &str, frame: &str, user_id: &str) -> FanOutJob {
        FanOutJob {
            audience: JobAudience::User {
                user_id: user_id.to_owned(),
            },
            ..FanOutJob::for_room(message_id, endpoint, frame, "")
        }
    }

    /// The job that carries on after this one: same message, audience and `enqueuedAt`, new
    /// position, in this code's version.
    pub fn continuation(&self, listing: Listing, pending: Vec<String>) -> FanOutJob {
        FanOutJob {
            version: JOB_VERSION,
            listing,
            pending,
            ..self.clone()
        }
    }

    /// How old the job is at `now_ms` (epoch milliseconds), from `enqueuedAt`; `None` for a
    /// version 1 body that has none. A clock behind `enqueuedAt` counts as age 0.
    pub fn age(&self, now_ms: i64) -> Option<std::time::Duration> {
        let enqueued_at = self.enqueued_at?;
        let ms = u64::try_from(now_ms.saturating_sub(enqueued_at)).unwrap_or(0);
        Some(std::time::Duration::from_millis(ms))
    }

    /// Whether nothing is left to do.
    pub fn is_finished(&self) -> bool {
        self.listing == Listing::Done && self.pending.is_empty()
    }

    pub fn to_body(&self) -> String {
        // Strings, integers and enums only: serializing cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Parses and checks a queue message body.
    pub fn from_body(body: &str) -> Result<FanOutJob, JobError> {
        let job: FanOutJob =
            serde_json::from_str(body).map_err(|e| JobError::Malformed(e.to_string()))?;
        if !(OLDEST_JOB_VERSION..=JOB_VERSION).contains(&job.version) {
            return Err(JobError::Version { found: job.version });
        }
        if let JobAudience::Everyone { segment, segments } = job.audience
            && (segments == 0 || segments > MAX_SEGMENTS || segment >= segments)
        {
            return Err(JobError::Invalid {
                field: "audience",
                reason: format!(
                    "segment {segment} of {segments}: need 1..={MAX_SEGMENTS} segments and segment < segments"
                ),
            });
        }
        if !(job.endpoint.starts_with("https://") || job.endpoint.starts_with("http://")) {
            return Err(JobError::Invalid {
                field: "endpoint",
                reason: format!("{:?} is not an http(s) URL", job.endpoint),
            });
        }
        if job.frame.is_empty() {
            return Err(JobError::Invalid {
                field: "frame",
                reason: "empty".into(),
            });
        }
        Ok(job)
    }
}

/// Now, epoch milliseconds (wall clock: `enqueuedAt` travels between machines).
pub(crate) fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job() -> FanOutJob {
        FanOutJob::for_everyone(
            "m-1",
            "https://api.example/prod",
            r#"{"type":"message"}"#,
            4,
        )
        .remove(2)
    }

    #[test]
    fn one_job_per_segment() {
        let jobs = FanOutJob::for_everyone("m", "https://x/dev", "{}", 3);
        let segments: Vec<_> = jobs.iter().map(|j| j.audience.clone()).collect();
        assert_eq!(
            segments,
            (0..3)
                .map(|segment| JobAudience::Everyone {
                    segment,
                    segments: 3
                })
                .collect::<Vec<_>>()
        );
        assert!(jobs.iter().all(|j| j.listing == Listing::Start));
    }

    #[test]
    fn body_round_trips_and_reads_as_documented() {
        let j = FanOutJob {
            enqueued_at: Some(1_795_703_229_456),
            ..job()
        }
        .continuation(Listing::After("abc=".into()), vec!["x".into()]);
        let body = j.to_body();
        assert_eq!(
            body,
            r#"{"version":2,"messageId":"m-1","endpoint":"https://api.example/prod","frame":"{\"type\":\"message\"}","audience":{"kind":"everyone","segment":2,"segments":4},"listing":{"after":"abc="},"pending":["x"],"enqueuedAt":1795703229456}"#
        );
        assert_eq!(FanOutJob::from_body(&body), Ok(j));
        let room = FanOutJob {
            audience: JobAudience::Room {
                room: "lobby".into(),
            },
            ..job()
        };
        assert_eq!(FanOutJob::from_body(&room.to_body()), Ok(room));
    }

    /// A job written by the version 1 worker (no `enqueuedAt`) is still read; its continuation
    /// is written in version 2 (issue 18, item 10).
    #[test]
    fn version_1_bodies_are_still_read() {
        let v1 = r#"{"version":1,"messageId":"m-1","endpoint":"https://api.example/prod","frame":"{\"type\":\"message\"}","audience":{"kind":"everyone","segment":2,"segments":4},"listing":{"after":"abc="},"pending":["x"]}"#;
        let j = FanOutJob::from_body(v1).expect("a version 1 body");
        assert_eq!(j.version, 1);
        assert_eq!(j.enqueued_at, None);
        assert_eq!(j.age(1_000), None);
        assert_eq!(j.pending, ["x"]);
        let next = j.continuation(Listing::Done, Vec::new());
        assert_eq!(next.version, JOB_VERSION);
    }

    #[test]
    fn a_job_is_as_old_as_its_first_enqueue_across_continuations() {
        let j = FanOutJob {
            enqueued_at: Some(10_000),
            ..job()
        };
        let next = j.continuation(Listing::After("k".into()), Vec::new());
        assert_eq!(next.enqueued_at, Some(10_000));
        assert_eq!(next.age(70_000), Some(std::time::Duration::from_secs(60)));
        assert_eq!(
            next.age(5_000),
            Some(std::time::Duration::ZERO),
            "clock behind"
        );
        let fresh = FanOutJob::for_room("m", "https://x/dev", "{}", "lobby");
        let age = fresh.age(now_ms()).expect("new jobs carry enqueuedAt");
        assert!(age < std::time::Duration::from_secs(60), "{age:?}");
    }

    #[test]
    fn bad_bodies_say_what_is_wrong() {
        let err = FanOutJob::from_body("not json").unwrap_err();
        assert!(matches!(err, JobError::Malformed(_)), "{err}");
        let mut j = job();
        j.version = 3;
        assert_eq!(
            FanOutJob::from_body(&j.to_body()),
            Err(JobError::Version { found: 3 })
        );
        j.version = 0;
        assert_eq!(
            FanOutJob::from_body(&j.to_body()),
            Err(JobError::Version { found: 0 })
        );
        let mut j = job();
        j.audience = JobAudience::Everyone {
            segment: 4,
            segments: 4,
        };
        let err = FanOutJob::from_body(&j.to_body()).unwrap_err();
        assert!(err.to_string().contains("audience"), "{err}");
        let mut j = job();
        j.endpoint = "ftp://x".into();
        let err = FanOutJob::from_body(&j.to_body()).unwrap_err();
        assert!(err.to_string().contains("endpoint"), "{err}");
        let mut j = job();
        j.frame = String::new();
        let err = FanOutJob::from_body(&j.to_body()).unwrap_err();
        assert!(err.to_string().contains("frame"), "{err}");
        let err = FanOutJob::from_body(r#"{"version":1,"extra":true}"#).unwrap_err();
        assert!(matches!(err, JobError::Malformed(_)), "{err}");
    }
}
