//! Custom resource definitions: `pkg/apis/apiextensions/v1/defaults.go` and the strategy of
//! `apiextensions-apiserver`.

use serde_json::{Value, json};

use super::Strategy;
use super::util::{array_at, default_field, keep_status, str_at};
use crate::customresource::StructuralSchema;
use crate::jsonpath::JsonPath;
use crate::table::{Column, TableContext};
use crate::validation::FieldError;

/// Rules of `CustomResourceDefinition`.
#[derive(Debug, Clone, Copy, Default)]
pub struct CustomResourceDefinitionStrategy;

fn storage_version(obj: &Value) -> Option<String> {
    array_at(obj, "spec.versions")
        .iter()
        .find(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
        .and_then(|v| v.get("name").and_then(Value::as_str))
        .map(str::to_string)
}

impl Strategy for CustomResourceDefinitionStrategy {
    fn default(&self, obj: &mut Value) {
        let Some(spec) = obj.get_mut("spec").filter(|s| s.is_object()) else {
            return;
        };
        if let Some(names) = spec.get_mut("names").filter(|n| n.is_object())
            && let Some(kind) = names.get("kind").and_then(Value::as_str).map(str::to_string)
        {
            default_field(names, "singular", json!(kind.to_lowercase()));
            default_field(names, "listKind", json!(format!("{kind}List")));
        }
        default_field(spec, "conversion", json!({"strategy": "None"}));
        if let Some(service) =
            spec.pointer_mut("/conversion/webhook/clientConfig/service").filter(|s| s.is_object())
        {
            default_field(service, "port", json!(443));
        }
    }

    fn prepare_for_create(&self, obj: &mut Value) {
        let stored: Vec<String> = storage_version(obj).into_iter().collect();
        if let Some(map) = obj.as_object_mut() {
            map.insert(
                "status".into(),
                json!({"acceptedNames": {"kind": "", "plural": ""}, "storedVersions": stored}),
            );
        }
    }

    /// The first delete only marks a definition, as upstream's REST `Delete`: the cleanup
    /// finalizer then holds it until its objects are gone.
    fn deletion_held(&self, obj: &Value) -> bool {
        crate::object::meta_str(obj, "deletionTimestamp").is_none()
    }

    fn prepare_for_delete(&self, obj: &mut Value) {
        let finalizer = json!(crate::catalog::custom::CLEANUP_FINALIZER);
        let meta = crate::object::metadata_mut(obj);
        let list = meta.entry("finalizers").or_insert_with(|| json!([]));
        if let Some(list) = list.as_array_mut()
            && !list.contains(&finalizer)
        {
            list.push(finalizer);
        }
        let terminating = json!({
            "type": "Terminating",
            "status": "True",
            "reason": "InstanceDeletionPending",
            "message": "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
            "lastTransitionTime": crate::object::meta_str(obj, "deletionTimestamp").unwrap_or_default(),
        });
        if let Some(status) = obj.get_mut("status").and_then(Value::as_object_mut) {
            let conditions = status.entry("conditions").or_insert_with(|| json!([]));
            if let Some(list) = conditions.as_array_mut() {
                list.retain(|c| c["type"] != "Terminating");
                list.push(terminating);
            }
        }
    }

    fn prepare_for_update(&self, new: &mut Value, old: &Value) {
        keep_status(new, old);
        if let Some(version) = storage_version(new) {
            let stored = new.pointer_mut("/status/storedVersions").and_then(Value::as_array_mut);
            match stored {
                Some(list) => {
                    if !list.iter().any(|v| v.as_str() == Some(&version)) {
                        list.push(json!(version));
                    }
                }
                None => crate::object::set_path(new, "status.storedVersions", json!([version])),
            }
        }
    }

    fn validate(&self, obj: &Value) -> Vec<FieldError> {
        let mut errors = Vec::new();
        let group = str_at(obj, "spec.group").unwrap_or_default();
        let plural = str_at(obj, "spec.names.plural").unwrap_or_default();
        if group.is_empty() {
            errors.push(FieldError::required("spec.group"));
        } else if group.split('.').count() < 2 {
            errors.push(FieldError::invalid(
                "spec.group",
                json!(group),
                "should be a domain with at least one dot",
            ));
        }
        if plural.is_empty() {
            errors.push(FieldError::required("spec.names.plural"));
        }
        if str_at(obj, "spec.names.kind").is_none_or(str::is_empty) {
            errors.push(FieldError::required("spec.names.kind"));
        }
        let protected = ["k8s.io", "kubernetes.io"]
            .iter()
            .any(|suffix| group == *suffix || group.ends_with(&format!(".{suffix}")));
        let approval = crate::object::path(obj, "metadata.annotations")
            .and_then(|a| a.get("api-approved.kubernetes.io"))
            .and_then(Value::as_str);
        if protected && approval.is_none_or(str::is_empty) {
            errors.push(
                FieldError::required("metadata.annotations[api-approved.kubernetes.io]").with_detail(
                    "protected groups must have approval annotation \"api-approved.kubernetes.io\", see https://github.com/kubernetes/enhancements/pull/1111",
                ),
            );
        }
        let name = crate::object::name(obj).unwrap_or_default();
        if !group.is_empty() && !plural.is_empty() && name != format!("{plural}.{group}") {
            errors.push(FieldError::invalid(
                "metadata.name",
                json!(name),
                "must be spec.names.plural+\".\"+spec.group",
            ));
        }
        match str_at(obj, "spec.scope") {
            None | Some("") => errors.push(FieldError::required("spec.scope")),
            Some(s) if s != "Cluster" && s != "Namespaced" => errors.push(
                FieldError::not_supported("spec.scope", json!(s), &["Cluster", "Namespaced"]),
            ),
            Some(_) => {}
        }
        let versions = array_at(obj, "spec.versions");
        if versions.is_empty() {
            errors.push(FieldError::invalid(
                "spec.versions",
                json!([]),
                "must have exactly one version marked as storage version",
            ));
        } else {
            let storage = versions
                .iter()
                .filter(|v| v.get("storage").and_then(Value::as_bool) == Some(true))
                .count();
            if storage != 1 {
                errors.push(FieldError::invalid(
                    "spec.versions",
                    Value::Array(versions.to_vec()),
                    "must have exactly one version marked as storage version",
                ));
            }
        }
        let mut seen = Vec::new();
        for (i, version) in versions.iter().enumerate() {
            let base = format!("spec.versions[{i}]");
            let name = version.get("name").and_then(Value::as_str).unwrap_or_default();
            if name.is_empty() {
                errors.push(FieldError::required(format!("{base}.name")));
            } else if seen.contains(&name) {
                errors.push(FieldError::invalid(
                    format!("{base}.name"),
                    json!(name),
                    "must be unique",
                ));
            } else if let Some(problem) = crate::validation::dns1123_label(name).into_iter().next()
            {
                errors.push(FieldError::invalid(format!("{base}.name"), json!(name), problem));
            }
            seen.push(name);
            match version.pointer("/schema/openAPIV3Schema") {
                None => errors.push(
                    FieldError::required(format!("{base}.schema.openAPIV3Schema"))
                        .with_detail("schemas are required"),
                ),
                Some(schema) => {
                    let path = format!("{base}.schema.openAPIV3Schema");
                    match StructuralSchema::new(schema, &path) {
                        Ok(structural) => {
                            if let Some(fields) = version.get("selectableFields") {
                                let at = format!("{base}.selectableFields");
                                errors.extend(structural.selectable_fields_errors(fields, &at));
                            }
                        }
                        Err(problems) => errors.extend(problems),
                    }
                    if version.pointer("/subresources/status").is_some() {
                        errors.extend(StructuralSchema::status_subresource_errors(schema, &path));
                    }
                }
            }
            for (c, column) in array_at(version, "additionalPrinterColumns").iter().enumerate() {
                let path = column.get("jsonPath").and_then(Value::as_str).unwrap_or_default();
                if let Err(e) = JsonPath::parse(path) {
                    errors.push(FieldError::invalid(
                        format!("{base}.additionalPrinterColumns[{c}].jsonPath"),
                        json!(path),
                        e.to_string(),
                    ));
                }
            }
        }
        errors.extend(conversion_errors(obj));
        for (field, value) in [
            ("spec.names.plural", plural),
            ("spec.names.singular", str_at(obj, "spec.names.singular").unwrap_or_default()),
        ] {
            if let Some(problem) = crate::validation::dns1123_label(value).into_iter().next()
                && !value.is_empty()
            {
                errors.push(FieldError::invalid(field, json!(value), problem));
            }
        }
        errors
    }

    fn validate_update(&self, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errors = self.validate(new);
        for field in ["spec.group", "spec.names.plural", "spec.scope"] {
            let (n, o) = (str_at(new, field), str_at(old, field));
            if n != o {
                errors.push(FieldError::invalid(
                    field,
                    json!(n.unwrap_or_default()),
                    "field is immutable",
                ));
            }
        }
        errors
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn columns(&self) -> &[Column] {
        const COLUMNS: &[Column] = &[Column::new(
            "Created At",
            "date",
            "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata",
        )];
        COLUMNS
    }

    fn cells(&self, obj: &Value, _ctx: &TableContext) -> Vec<Value> {
        vec![obj.pointer("/metadata/creationTimestamp").cloned().unwrap_or(Value::Null)]
    }
}

/// Upstream's checks of `spec.conversion` (`validateCustomResourceConversion`).
fn conversion_errors(obj: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let Some(conversion) = obj.pointer("/spec/conversion").filter(|c| !c.is_null()) else {
        return errors;
    };
    let strategy = conversion.get("strategy").and_then(Value::as_str).unwrap_or_default();
    let webhook = conversion.get("webhook").filter(|w| !w.is_null());
    match strategy {
        "None" => {
            if webhook.is_some() {
                errors.push(FieldError::forbidden(
                    "spec.conversion.webhook",
                    "should not be set when strategy is not set to Webhook",
                ));
            }
        }
        "Webhook" => {
            if obj.pointer("/spec/preserveUnknownFields") == Some(&Value::Bool(true)) {
                errors.push(FieldError::invalid(
                    "spec.conversion.strategy",
                    json!(strategy),
                    "must be None if spec.preserveUnknownFields is true",
                ));
            }
            match webhook {
                None => errors.push(FieldError::required("spec.conversion.webhook")),
                Some(webhook) => errors.extend(conversion_webhook_errors(webhook)),
            }
        }
        other => errors.push(FieldError::not_supported(
            "spec.conversion.strategy",
            json!(other),
            &["None", "Webhook"],
        )),
    }
    errors
}

/// The versions of `ConversionReview` the API server can send.
const CONVERSION_REVIEW_VERSIONS: &[&str] = &["v1", "v1beta1"];

fn conversion_webhook_errors(webhook: &Value) -> Vec<FieldError> {
    let mut errors = Vec::new();
    let base = "spec.conversion.webhook";
    let versions: Vec<&str> = array_at(webhook, "conversionReviewVersions")
        .iter()
        .map(|v| v.as_str().unwrap_or_default())
        .collect();
    let accepted =
        format!("must include at least one of {}", CONVERSION_REVIEW_VERSIONS.join(", "));
    let field = format!("{base}.conversionReviewVersions");
    if versions.is_empty() {
        errors.push(FieldError::required(&field).with_detail(accepted));
    } else if !versions.iter().any(|v| CONVERSION_REVIEW_VERSIONS.contains(v)) {
        errors.push(FieldError::invalid(&field, json!(versions), accepted));
    }
    for (i, version) in versions.iter().enumerate() {
        if versions[..i].contains(version) {
            errors.push(FieldError::invalid(
                format!("{field}[{i}]"),
                json!(version),
                "duplicate version",
            ));
        }
    }
    let field = format!("{base}.clientConfig");
    let Some(client) = webhook.get("clientConfig").filter(|c| c.is_object()) else {
        errors.push(FieldError::required(field));
        return errors;
    };
    let url = client.get("url").and_then(Value::as_str);
    let service = client.get("service").filter(|s| s.is_object());
    match (url, service) {
        (Some(url), None) => {
            if let Some(problem) = webhook_url_problem(url) {
                errors.push(FieldError::invalid(format!("{field}.url"), json!(url), problem));
            }
        }
        (None, Some(service)) => {
            for key in ["name", "namespace"] {
                if service.get(key).and_then(Value::as_str).is_none_or(str::is_empty) {
                    errors.push(FieldError::required(format!("{field}.service.{key}")));
                }
            }
            if let Some(path) = service.get("path").and_then(Value::as_str)
                && !path.starts_with('/')
            {
                errors.push(FieldError::invalid(
                    format!("{field}.service.path"),
                    json!(path),
                    "must start with a '/'",
                ));
            }
            if let Some(port) = service.get("port").and_then(Value::as_i64)
                && !(1..=65535).contains(&port)
            {
                errors.push(FieldError::invalid(
                    format!("{field}.service.port"),
                    json!(port),
                    "port is not valid: must be between 1 and 65535, inclusive",
                ));
            }
        }
        _ => errors.push(
            FieldError::required(field).with_detail("exactly one of url or service is required"),
        ),
    }
    errors
}

/// What is wrong with a webhook's `url`, as upstream's `ValidateWebhookURL`.
fn webhook_url_problem(url: &str) -> Option<&'static str> {
    let Some(rest) = url.strip_prefix("https://") else {
        return Some("'https' is the only allowed URL scheme");
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    if authority.contains('@') {
        return Some("user information is not permitted in the URL");
    }
    if authority.is_empty() {
        return Some("host must be specified");
    }
    if url.contains('#') {
        return Some("fragments are not permitted in the URL");
    }
    if url.contains('?') {
        return Some("query parameters are not permitted in the URL");
    }
    None
}
