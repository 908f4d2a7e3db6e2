//! Benchmarks run by `krust bench`: every result is measured next to its reference in the same
//! run (the embedded store next to etcd), so results are read as ratios.

mod client;
mod etcd;
mod stats;
mod store;
mod api;

pub use api::{ApiBenchArgs, api};
