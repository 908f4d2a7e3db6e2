//! Rules of the `discovery` resources.

plain_strategy!(
    /// Rules of `EndpointSlice`.
    EndpointSliceStrategy
);
