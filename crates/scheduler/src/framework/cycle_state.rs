//! What plugins compute once per scheduling cycle and read for every node: each plugin's
//! PreFilter or PreScore result, stored under the plugin's name.

use std::any::Any;

/// One cycle's plugin data: a few entries, read for every node, so a list searched by the
/// keys' addresses first (the plugins' own constants) rather than a hashed map.
#[derive(Default)]
pub struct CycleState {
    data: Vec<(&'static str, Box<dyn Any + Send + Sync>)>,
}

impl CycleState {
    /// Keeps `value` for the rest of the cycle under `key`.
    pub fn write<T: Any + Send + Sync>(&mut self, key: &'static str, value: T) {
        let value: Box<dyn Any + Send + Sync> = Box::new(value);
        match self.position(key) {
            Some(at) => self.data[at].1 = value,
            None => self.data.push((key, value)),
        }
    }

    /// What was kept under `key`, if it is a `T`.
    pub fn read<T: Any>(&self, key: &'static str) -> Option<&T> {
        self.data[self.position(key)?].1.downcast_ref()
    }

    fn position(&self, key: &'static str) -> Option<usize> {
        self.data
            .iter()
            .position(|(k, _)| std::ptr::eq(*k, key))
            .or_else(|| self.data.iter().position(|(k, _)| *k == key))
    }
}
