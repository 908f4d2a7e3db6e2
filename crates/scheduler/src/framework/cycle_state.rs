//! What plugins compute once per scheduling cycle and read for every node: each plugin's
//! PreFilter or PreScore result, stored under the plugin's name.

use std::any::Any;
use std::collections::HashMap;

/// One cycle's plugin data.
#[derive(Default)]
pub struct CycleState {
    data: HashMap<&'static str, Box<dyn Any + Send + Sync>>,
}

impl CycleState {
    /// Keeps `value` for the rest of the cycle under `key`.
    pub fn write<T: Any + Send + Sync>(&mut self, key: &'static str, value: T) {
        self.data.insert(key, Box::new(value));
    }

    /// What was kept under `key`, if it is a `T`.
    pub fn read<T: Any>(&self, key: &'static str) -> Option<&T> {
        self.data.get(key)?.downcast_ref()
    }
}
