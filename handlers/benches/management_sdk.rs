//! What one `@connections` post costs in the handlers' SDK client itself
//! ([`SdkManagementApi`]), with a transport that answers 200 at once: serialization, endpoint
//! resolution, SigV4 signing, the orchestrator's interceptors, retry and timeout bookkeeping,
//! deserialization. Prints CPU microseconds per post, one post in flight and 64 (a fan-out's
//! window), on one thread. This cost is what bounds a local broadcast through the SDK
//! (docs/benchmarks.md): compare it across SDK versions and build profiles.
//!
//! `cargo bench --profile local -p wsstack-handlers --bench management_sdk` (`make dev`'s build;
//! without `--profile local`, the release build). BENCH_POSTS: posts per round (default 20,000).

use std::time::{Duration, Instant};

use aws_smithy_runtime_api::client::http::{
    HttpClient, HttpConnector, HttpConnectorFuture, HttpConnectorSettings, SharedHttpClient,
    SharedHttpConnector,
};
use aws_smithy_runtime_api::client::orchestrator::{HttpRequest, HttpResponse};
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::body::SdkBody;
use bytes::Bytes;
use futures::StreamExt;
use wsstack_handlers::management::{ManagementApi, SdkManagementApi};

#[derive(Debug, Clone)]
struct Ok200;

impl HttpClient for Ok200 {
    fn http_connector(
        &self,
        _: &HttpConnectorSettings,
        _: &RuntimeComponents,
    ) -> SharedHttpConnector {
        SharedHttpConnector::new(self.clone())
    }
}

impl HttpConnector for Ok200 {
    fn call(&self, _request: HttpRequest) -> HttpConnectorFuture {
        HttpConnectorFuture::ready(Ok(HttpResponse::new(
            200.try_into().expect("200 is a status"),
            SdkBody::empty(),
        )))
    }
}

fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

async fn run(api: &dyn ManagementApi, posts: usize, in_flight: usize) -> (Duration, Duration) {
    let frame = &Bytes::from_static(br#"{"type":"message","id":"x","data":"hello"}"#);
    let cpu = cpu_time();
    let wall = Instant::now();
    futures::stream::iter(0..posts)
        .map(|i| async move {
            let id = format!("conn{i:012}=");
            api.post_to_connection("http://127.0.0.1:3001/dev", &id, frame.clone())
                .await
                .expect("the transport answers 200");
        })
        .buffer_unordered(in_flight)
        .collect::<()>()
        .await;
    (cpu_time() - cpu, wall.elapsed())
}

fn main() {
    let posts: usize = std::env::var("BENCH_POSTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let sdk = wsstack_handlers::local_sdk_config(None)
            .await
            .into_builder()
            .http_client(SharedHttpClient::new(Ok200))
            .build();
        let api = SdkManagementApi::new(&sdk);
        // Warm-up: the client for the endpoint, the allocator's pages.
        run(&api, 1_000, 64).await;
        for in_flight in [1, 64] {
            for round in 0..3 {
                let (cpu, wall) = run(&api, posts, in_flight).await;
                println!(
                    "in flight {in_flight:>3} round {round}: {:.1} us CPU per post, {:.1} us wall",
                    cpu.as_secs_f64() * 1e6 / posts as f64,
                    wall.as_secs_f64() * 1e6 / posts as f64
                );
            }
        }
    });
}
