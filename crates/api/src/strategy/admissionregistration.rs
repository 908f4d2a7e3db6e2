//! Rules of the `admissionregistration` resources.

plain_strategy!(
    /// Rules of `MutatingWebhookConfiguration`.
    MutatingWebhookConfigurationStrategy
);
plain_strategy!(
    /// Rules of `ValidatingAdmissionPolicy`.
    ValidatingAdmissionPolicyStrategy
);
plain_strategy!(
    /// Rules of `ValidatingAdmissionPolicyBinding`.
    ValidatingAdmissionPolicyBindingStrategy
);
plain_strategy!(
    /// Rules of `ValidatingWebhookConfiguration`.
    ValidatingWebhookConfigurationStrategy
);
