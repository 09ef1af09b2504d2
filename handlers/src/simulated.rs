//! A simulated `@connections` API for virtual-time tests and the scale benchmark.
//!
//! It models what bounds a fan-out on AWS: a latency per post (a spread, not a constant), the
//! account's token bucket shared by every caller (API Gateway: 10,000 requests/s, burst 5,000
//! per account and region; past it `429 LimitExceededException`), connections that are gone
//! (410) and posts that fail transiently. Time is `tokio::time`, so under a paused clock a
//! broadcast to a million connections runs in seconds of real time.
//!
//! It counts every delivery per connection, so a test or bench sees duplicates and losses.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use tokio::time::Instant;

use crate::management::{ConnectionInfo, ManagementApi, ManagementError};

/// The account-wide token bucket of API Gateway.
#[derive(Debug)]
pub struct TokenBucket {
    rate_per_sec: f64,
    burst: f64,
    tokens: f64,
    refilled_at: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens refilled at `rate_per_sec`.
    pub fn new(rate_per_sec: f64, burst: f64) -> Self {
        TokenBucket {
            rate_per_sec,
            burst,
            tokens: burst,
            refilled_at: Instant::now(),
        }
    }

    /// API Gateway's default account quota: 10,000 requests/s, burst 5,000.
    pub fn api_gateway_default() -> Self {
        Self::new(10_000.0, 5_000.0)
    }

    /// Takes a token if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now
            .saturating_duration_since(self.refilled_at)
            .as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate_per_sec).min(self.burst);
        self.refilled_at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// How the simulated API behaves.
#[derive(Debug, Clone)]
pub struct Behaviour {
    /// Shortest and longest latency of a post; each post draws one from a deterministic
    /// pseudo-random spread between them (skewed towards the low end, like a real network).
    pub latency: (Duration, Duration),
    /// One post in this many (drawn pseudo-randomly) fails with a transient error (0 = never).
    pub transient_failure_one_in: u64,
    /// Connections that answer 410.
    pub gone: HashSet<String>,
}

impl Default for Behaviour {
    fn default() -> Self {
        Behaviour {
            latency: (Duration::from_millis(15), Duration::from_millis(60)),
            transient_failure_one_in: 0,
            gone: HashSet::new(),
        }
    }
}

/// What the simulated API saw.
#[derive(Debug, Clone, Default)]
pub struct Tally {
    /// Deliveries per connection id (more than 1 = a duplicate).
    pub deliveries: HashMap<String, u32>,
    pub posts: u64,
    pub throttled: u64,
    pub transient_failures: u64,
    pub in_flight: usize,
    pub max_in_flight: usize,
    /// When the last delivery landed.
    pub last_delivery: Option<Instant>,
    /// When the last post started.
    pub last_start: Option<Instant>,
}

/// The simulated `@connections` API.
#[derive(Debug)]
pub struct SimulatedApi {
    behaviour: Behaviour,
    bucket: Option<Mutex<TokenBucket>>,
    tally: Mutex<Tally>,
}

impl SimulatedApi {
    /// `bucket: None` = no throttling.
    pub fn new(behaviour: Behaviour, bucket: Option<TokenBucket>) -> Self {
        SimulatedApi {
            behaviour,
            bucket: bucket.map(Mutex::new),
            tally: Mutex::default(),
        }
    }

    pub fn tally(&self) -> Tally {
        self.lock().clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Tally> {
        self.tally.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn latency(&self, n: u64) -> Duration {
        let (lo, hi) = self.behaviour.latency;
        let u = (splitmix64(n) >> 11) as f64 / (1u64 << 53) as f64;
        lo + (hi.saturating_sub(lo)).mul_f64(u * u)
    }
}

/// splitmix64: a deterministic draw per post number, spread well enough for a simulation.
fn splitmix64(n: u64) -> u64 {
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[async_trait]
impl ManagementApi for SimulatedApi {
    async fn post_to_connection(
        &self,
        _endpoint: &str,
        connection_id: &str,
        _data: Bytes,
    ) -> Result<(), ManagementError> {
        let now = Instant::now();
        let n = {
            let mut t = self.lock();
            t.posts += 1;
            t.in_flight += 1;
            t.max_in_flight = t.max_in_flight.max(t.in_flight);
            t.last_start = Some(now);
            t.posts
        };
        let throttled = self
            .bucket
            .as_ref()
            .is_some_and(|b| !b.lock().unwrap_or_else(|p| p.into_inner()).try_take(now));
        tokio::time::sleep(self.latency(n)).await;
        let mut t = self.lock();
        t.in_flight -= 1;
        if throttled {
            t.throttled += 1;
            return Err(ManagementError::Throttled);
        }
        let every = self.behaviour.transient_failure_one_in;
        // A draw independent of the latency's, so failures do not line up with retries.
        if every > 0 && splitmix64(n ^ 0x5DEE_CE66_D1CE_5EED).is_multiple_of(every) {
            t.transient_failures += 1;
            return Err(ManagementError::Other("HTTP 500: simulated".into()));
        }
        if self.behaviour.gone.contains(connection_id) {
            return Err(ManagementError::Gone);
        }
        *t.deliveries.entry(connection_id.to_owned()).or_default() += 1;
        t.last_delivery = Some(Instant::now());
        Ok(())
    }

    async fn get_connection(
        &self,
        _endpoint: &str,
        _connection_id: &str,
    ) -> Result<ConnectionInfo, ManagementError> {
        Ok(ConnectionInfo::default())
    }

    async fn delete_connection(
        &self,
        _endpoint: &str,
        _connection_id: &str,
    ) -> Result<(), ManagementError> {
        Ok(())
    }
}
