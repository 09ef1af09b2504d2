//! The browser client (`web/` at the workspace root), served on a port of its own so the API's
//! port keeps answering only what API Gateway answers.
//!
//! The files are compiled into the binary, so `wsstack-local` serves the page from any working
//! directory. Besides them, `/config.json` tells the page where this gateway's WebSocket API is
//! (`{"apiUrl": "ws://127.0.0.1:3001/dev"}`); a page served from anywhere else falls back to
//! `make dev`'s address or takes a `wss://` URL.

use std::io;
use std::net::SocketAddr;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;

use crate::side_server::SideServer;

/// The port `make dev` serves the page on.
pub const DEFAULT_WEB_PORT: u16 = 3000;

/// One file of the page.
struct Asset {
    path: &'static str,
    content_type: &'static str,
    body: &'static str,
}

/// Every file of `web/`, embedded at build time.
const ASSETS: &[Asset] = &[
    Asset {
        path: "/",
        content_type: "text/html; charset=utf-8",
        body: include_str!("../../web/index.html"),
    },
    Asset {
        path: "/style.css",
        content_type: "text/css; charset=utf-8",
        body: include_str!("../../web/style.css"),
    },
    Asset {
        path: "/app.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../web/app.js"),
    },
    Asset {
        path: "/wsstack-client.js",
        content_type: "text/javascript; charset=utf-8",
        body: include_str!("../../web/wsstack-client.js"),
    },
    // The page names its icon (`<link rel="icon">`); without one browsers ask for
    // `/favicon.ico`, and a 404 there is an error in Chromium's console on every load.
    Asset {
        path: "/favicon.svg",
        content_type: "image/svg+xml",
        body: include_str!("../../web/favicon.svg"),
    },
    // For clients that ask for the conventional path anyway: the same icon, typed as what it is.
    Asset {
        path: "/favicon.ico",
        content_type: "image/svg+xml",
        body: include_str!("../../web/favicon.svg"),
    },
];

/// Why the page could not be served.
#[derive(Debug, thiserror::Error)]
pub enum WebError {
    #[error(
        "cannot serve the browser client on {addr}: the address is already in use (pick another port with --web-port, or --no-web)"
    )]
    AddrInUse { addr: SocketAddr },
    #[error("cannot serve the browser client on {addr}: {source}")]
    Io {
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
}

/// The page's web server. Dropping it stops it.
#[derive(Debug)]
pub struct WebServer {
    server: SideServer,
}

impl WebServer {
    /// Serves `web/` on `addr` (port 0 picks a free one); the page connects to `api_url` unless
    /// told otherwise.
    pub async fn bind(addr: SocketAddr, api_url: &str) -> Result<WebServer, WebError> {
        let listener = TcpListener::bind(addr).await.map_err(|source| {
            if source.kind() == io::ErrorKind::AddrInUse {
                WebError::AddrInUse { addr }
            } else {
                WebError::Io { addr, source }
            }
        })?;
        let config = serde_json::json!({ "apiUrl": api_url }).to_string();
        let mut router = Router::new().route("/config.json", get(config_json));
        for asset in ASSETS {
            router = router.route(asset.path, get(move || async move { serve(asset) }));
        }
        let router = router.fallback(not_found).with_state(config);
        let server =
            SideServer::spawn(listener, router).map_err(|source| WebError::Io { addr, source })?;
        Ok(WebServer { server })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.server.local_addr()
    }

    /// `http://{addr}/`.
    pub fn url(&self) -> String {
        format!("http://{}/", self.local_addr())
    }
}

/// Headers every answer carries: always revalidate (a rebuilt gateway serves a new page), and
/// no content sniffing.
fn with_headers(mut response: Response, content_type: &'static str) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    response
}

fn serve(asset: &Asset) -> Response {
    with_headers(asset.body.into_response(), asset.content_type)
}

async fn config_json(State(config): State<String>) -> Response {
    with_headers(config.into_response(), "application/json")
}

async fn not_found() -> Response {
    with_headers(
        (StatusCode::NOT_FOUND, "not found\n").into_response(),
        "text/plain; charset=utf-8",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_loads_only_files_that_are_served() {
        let page = ASSETS[0].body;
        for reference in ["style.css", "app.js", "favicon.svg"] {
            assert!(page.contains(reference), "index.html lacks {reference}");
        }
        let app = ASSETS.iter().find(|a| a.path == "/app.js").map(|a| a.body);
        assert!(app.is_some_and(|js| js.contains("./wsstack-client.js")));
    }
}
