//! Rules of the `rbac` resources.

plain_strategy!(
    /// Rules of `ClusterRoleBinding`.
    ClusterRoleBindingStrategy
);
plain_strategy!(
    /// Rules of `ClusterRole`.
    ClusterRoleStrategy
);
plain_strategy!(
    /// Rules of `RoleBinding`.
    RoleBindingStrategy
);
plain_strategy!(
    /// Rules of `Role`.
    RoleStrategy
);
