//! JSON names of protobuf fields.
//!
//! Upstream names a protobuf field after its JSON name, with two kinds of exceptions, found
//! by comparing every message of the served group versions with its JSON schema:
//! - embedded Go structs (`json:",inline"`) are one message field in protobuf, but their
//!   fields sit directly in the parent's JSON object;
//! - a few fields took the Go field name instead of the JSON one.

/// What a protobuf field is in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonField<'a> {
    /// A member of this name.
    Named(&'a str),
    /// An embedded message whose fields belong to the parent object.
    Inline,
}

/// (message, protobuf field): message fields whose fields are inlined in the parent.
const INLINE: &[(&str, &str)] = &[
    // core/v1
    ("ConfigMapEnvSource", "localObjectReference"),
    ("ConfigMapKeySelector", "localObjectReference"),
    ("ConfigMapProjection", "localObjectReference"),
    ("ConfigMapVolumeSource", "localObjectReference"),
    ("SecretEnvSource", "localObjectReference"),
    ("SecretKeySelector", "localObjectReference"),
    ("SecretProjection", "localObjectReference"),
    ("EphemeralContainer", "ephemeralContainerCommon"),
    ("PersistentVolumeSpec", "persistentVolumeSource"),
    ("Probe", "handler"),
    ("Volume", "volumeSource"),
    // networking/v1, networking/v1beta1, extensions/v1beta1
    ("IngressRule", "ingressRuleValue"),
    // admissionregistration
    ("RuleWithOperations", "rule"),
    ("NamedRuleWithOperations", "ruleWithOperations"),
    // resource
    ("DeviceAllocationConfiguration", "deviceConfiguration"),
    ("DeviceClaimConfiguration", "deviceConfiguration"),
    ("DeviceClassConfiguration", "deviceConfiguration"),
];

/// (message, protobuf field, JSON name): fields named differently in protobuf.
const RENAMED: &[(&str, &str, &str)] = &[
    ("MutatingWebhookConfiguration", "Webhooks", "webhooks"),
    ("ValidatingWebhookConfiguration", "Webhooks", "webhooks"),
    ("Validation", "Expression", "expression"),
    ("Variable", "Name", "name"),
    ("Variable", "Expression", "expression"),
    ("BoundObjectReference", "uID", "uid"),
    ("IngressClassParametersReference", "aPIGroup", "apiGroup"),
];

/// The JSON form of field `field` of message `message` (the message's simple name).
pub fn json_field<'a>(message: &str, field: &'a str) -> JsonField<'a> {
    if INLINE.iter().any(|(m, f)| *m == message && *f == field) {
        return JsonField::Inline;
    }
    match RENAMED.iter().find(|(m, f, _)| *m == message && *f == field) {
        Some((_, _, json)) => JsonField::Named(json),
        None => JsonField::Named(field),
    }
}
