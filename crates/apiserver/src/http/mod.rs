//! The HTTP edge: TLS and authentication, routing a request to discovery or to the registry,
//! decoding bodies and encoding answers (JSON, Table, watch streams).

mod activity;
mod body;
mod handler;
pub mod inflight;
mod list;
mod malformed;
mod negotiate;
pub mod node_client;
pub mod pod_log;
pub mod pod_stream;
pub mod request_info;
pub(crate) mod response;
pub mod serve;
mod table;
