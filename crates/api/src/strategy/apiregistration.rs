//! Rules of the `apiregistration` resources.

plain_strategy!(
    /// Rules of `ApiService`.
    ApiServiceStrategy
);
