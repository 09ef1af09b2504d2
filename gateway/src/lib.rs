//! wsstack-local: the WebSocket API on localhost.
