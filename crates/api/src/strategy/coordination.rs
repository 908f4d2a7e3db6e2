//! Rules of the `coordination` resources.

plain_strategy!(
    /// Rules of `Lease`.
    LeaseStrategy
);
