//! Rules of the `autoscaling` resources.

plain_strategy!(
    /// Rules of `HorizontalPodAutoscaler`.
    HorizontalPodAutoscalerStrategy
);
