//! Benchmarks run by `krust bench`: every result is measured next to its reference in the same
//! run (the embedded store next to etcd), so results are read as ratios.

mod api;
mod apply;
mod client;
mod controllers;
mod custom_resources;
mod etcd;
mod exec;
mod fanout;
mod objects;
mod process;
mod scale;
mod scheduler;
mod stats;
mod store;
mod sustained;

pub use api::{ApiBenchArgs, api};
pub use apply::{ApplyBenchArgs, apply};
pub use controllers::{ControllersBenchArgs, controllers};
pub use custom_resources::{CustomResourceBenchArgs, custom_resources};
pub use exec::{ExecBenchArgs, exec};
pub use fanout::{FanoutBenchArgs, fanout};
pub use scale::{ScaleBenchArgs, scale};
pub use scheduler::{SchedulerBenchArgs, scheduler};
pub use sustained::{SustainedBenchArgs, sustained};
