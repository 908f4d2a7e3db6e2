//! Rules of the `certificates` resources.

plain_strategy!(
    /// Rules of `CertificateSigningRequest`.
    CertificateSigningRequestStrategy
);
