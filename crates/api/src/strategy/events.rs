//! Rules of the `events` resources.

plain_strategy!(
    /// Rules of `Event`.
    EventStrategy
);
