//! Rules of the `scheduling` resources.

plain_strategy!(
    /// Rules of `PriorityClass`.
    PriorityClassStrategy
);
