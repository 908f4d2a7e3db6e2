//! Rules of the `policy` resources.

plain_strategy!(
    /// Rules of `PodDisruptionBudget`.
    PodDisruptionBudgetStrategy
);
