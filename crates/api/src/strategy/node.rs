//! Rules of the `node` resources.

plain_strategy!(
    /// Rules of `RuntimeClass`.
    RuntimeClassStrategy
);
