//! Rules of the `flowcontrol` resources.

plain_strategy!(
    /// Rules of `FlowSchema`.
    FlowSchemaStrategy
);
plain_strategy!(
    /// Rules of `PriorityLevelConfiguration`.
    PriorityLevelConfigurationStrategy
);
