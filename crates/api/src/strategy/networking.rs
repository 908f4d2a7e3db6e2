//! Rules of the `networking` resources.

plain_strategy!(
    /// Rules of `IngressClass`.
    IngressClassStrategy
);
plain_strategy!(
    /// Rules of `Ingress`.
    IngressStrategy
);
plain_strategy!(
    /// Rules of `IpAddress`.
    IpAddressStrategy
);
plain_strategy!(
    /// Rules of `NetworkPolicy`.
    NetworkPolicyStrategy
);
plain_strategy!(
    /// Rules of `ServiceCidr`.
    ServiceCidrStrategy
);
