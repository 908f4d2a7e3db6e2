//! Rules of the core (`v1`) resources.

mod data;
mod event;
mod misc;
mod namespace;
mod node;
mod pod;
pub(crate) mod podspec;
mod replicationcontroller;
mod service;
mod volume;

pub use data::{ConfigMapStrategy, SecretStrategy};
pub use event::EventStrategy;
pub(crate) use event::{EVENT_COLUMNS, event_cells, event_selectable_fields};
pub use misc::{
    ComponentStatusStrategy, EndpointsStrategy, LimitRangeStrategy, PodTemplateStrategy,
    ResourceQuotaStrategy, ServiceAccountStrategy,
};
pub use namespace::NamespaceStrategy;
pub use node::NodeStrategy;
pub use pod::PodStrategy;
pub use replicationcontroller::ReplicationControllerStrategy;
pub use service::{ServiceStrategy, gets_node_ports};
pub use volume::{PersistentVolumeClaimStrategy, PersistentVolumeStrategy};
