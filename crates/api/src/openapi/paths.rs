//! The operations of each resource, as upstream's installer publishes them: list, create and
//! delete a collection; read, replace, patch and delete an object; the `status` and `scale`
//! subresources. Each carries `x-kubernetes-action` and `x-kubernetes-group-version-kind`,
//! which clients read: kubectl's `explain` finds a resource's kind through them, and its
//! `QueryParamVerifier` decides from the `fieldValidation` parameter of a kind's PATCH that
//! the server validates fields itself.

use serde_json::{Map, Value, json};

use super::Flavor;
use crate::catalog::{ResourceInfo, SubresourceInfo};

/// The name of `meta/v1.Status`'s definition.
pub const STATUS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Status";
/// The name of `meta/v1.DeleteOptions`'s definition.
pub const DELETE_OPTIONS: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.DeleteOptions";
/// The name of `meta/v1.Patch`'s definition.
pub const PATCH: &str = "io.k8s.apimachinery.pkg.apis.meta.v1.Patch";

/// A query or path parameter: name, type, description.
type Param = (&'static str, &'static str, &'static str);

const DRY_RUN: Param = (
    "dryRun",
    "string",
    "When present, indicates that modifications should not be persisted. An invalid or unrecognized dryRun directive will result in an error response and no further processing of the request. Valid values are: - All: all dry run stages will be processed",
);
const FIELD_MANAGER: Param = (
    "fieldManager",
    "string",
    "fieldManager is a name associated with the actor or entity that is making these changes. The value must be less than or 128 characters long, and only contain printable characters, as defined by https://golang.org/pkg/unicode/#IsPrint.",
);
const FIELD_VALIDATION: Param = (
    "fieldValidation",
    "string",
    "fieldValidation instructs the server on how to handle objects in the request (POST/PUT/PATCH) containing unknown or duplicate fields. Valid values are: - Ignore: This will ignore any unknown fields that are silently dropped from the object, and will ignore all but the last duplicate field that the decoder encounters. This is the default behavior prior to v1.23. - Warn: This will send a warning via the standard warning response header for each unknown field that is dropped from the object, and for each duplicate field that is encountered. The request will still succeed if there are no other errors, and will only persist the last of any duplicate fields. This is the default in v1.23+ - Strict: This will fail the request with a BadRequest error if any unknown fields would be dropped from the object, or if any duplicate fields are present. The error returned from the server will contain all unknown and duplicate fields encountered.",
);
const FORCE: Param = (
    "force",
    "boolean",
    "Force is going to \"force\" Apply requests. It means user will re-acquire conflicting fields owned by other people. Force flag must be unset for non-apply patch requests.",
);
const PRETTY: Param = ("pretty", "string", "If 'true', then the output is pretty printed.");
const GRACE_PERIOD: Param = (
    "gracePeriodSeconds",
    "integer",
    "The duration in seconds before the object should be deleted. Value must be non-negative integer. The value zero indicates delete immediately. If this value is nil, the default grace period for the specified type will be used. Defaults to a per object value if not specified. zero means delete immediately.",
);
const ORPHAN: Param = (
    "orphanDependents",
    "boolean",
    "Deprecated: please use the PropagationPolicy, this field will be deprecated in 1.7. Should the dependent objects be orphaned. If true/false, the \"orphan\" finalizer will be added to/removed from the object's finalizers list. Either this field or PropagationPolicy may be set, but not both.",
);
const PROPAGATION: Param = (
    "propagationPolicy",
    "string",
    "Whether and how garbage collection will be performed. Either this field or OrphanDependents may be set, but not both. The default policy is decided by the existing finalizer set in the metadata.finalizers and the resource-specific default policy. Acceptable values are: 'Orphan' - orphan the dependents; 'Background' - allow the garbage collector to delete the dependents in the background; 'Foreground' - a cascading policy that deletes all dependents in the foreground.",
);
const LIST: &[Param] = &[
    (
        "allowWatchBookmarks",
        "boolean",
        "allowWatchBookmarks requests watch events with type \"BOOKMARK\". Servers that do not implement bookmarks may ignore this flag and bookmarks are sent at the server's discretion. Clients should not assume bookmarks are returned at any specific interval, nor may they assume the server will send any BOOKMARK event during a session. If this is not a watch, this field is ignored.",
    ),
    (
        "continue",
        "string",
        "The continue option should be set when retrieving more results from the server. Since this value is server defined, clients may only use the continue value from a previous query result with identical query parameters (except for the value of continue) and the server may reject a continue value it does not recognize.",
    ),
    (
        "fieldSelector",
        "string",
        "A selector to restrict the list of returned objects by their fields. Defaults to everything.",
    ),
    (
        "labelSelector",
        "string",
        "A selector to restrict the list of returned objects by their labels. Defaults to everything.",
    ),
    (
        "limit",
        "integer",
        "limit is a maximum number of responses to return for a list call. If more items exist, the server will set the `continue` field on the list metadata to a value that can be used with the same initial query to retrieve the next set of results.",
    ),
    (
        "resourceVersion",
        "string",
        "resourceVersion sets a constraint on what resource versions a request may be served from. See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset",
    ),
    (
        "resourceVersionMatch",
        "string",
        "resourceVersionMatch determines how resourceVersion is applied to list calls. It is highly recommended that resourceVersionMatch be set for list calls where resourceVersion is set See https://kubernetes.io/docs/reference/using-api/api-concepts/#resource-versions for details.\n\nDefaults to unset",
    ),
    (
        "sendInitialEvents",
        "boolean",
        "`sendInitialEvents=true` may be set together with `watch=true`. In that case, the watch stream will begin with synthetic events to produce the current state of objects in the collection.",
    ),
    (
        "timeoutSeconds",
        "integer",
        "Timeout for the list/watch call. This limits the duration of the call, regardless of any activity or inactivity.",
    ),
    (
        "watch",
        "boolean",
        "Watch for changes to the described resources and return them as a stream of add, update, and remove notifications. Specify resourceVersion.",
    ),
];

/// The kinds a resource's operations answer with: definition names.
pub struct Kinds<'a> {
    /// The resource's kind.
    pub kind: &'a str,
    /// Its list kind.
    pub list: &'a str,
    /// `autoscaling/v1` `Scale`, when the resource has the `scale` subresource.
    pub scale: Option<&'a str>,
    /// The resource's other subresources, with their kinds' definitions when they have one.
    pub subresources: &'a [(SubresourceInfo, Option<String>)],
}

/// The URL prefix of a group version: `/api/v1`, `/apis/apps/v1`.
pub fn prefix(group: &str, version: &str) -> String {
    if group.is_empty() { format!("/api/{version}") } else { format!("/apis/{group}/{version}") }
}

/// Adds the paths of resource `info` to `paths`.
pub fn add(paths: &mut Map<String, Value>, flavor: Flavor, info: &ResourceInfo, kinds: &Kinds) {
    let builtin = info.definition.is_empty();
    let op = Operations { flavor, info, builtin };
    let base = prefix(info.group, info.version);
    let namespaced = info.namespaced();
    let collection = if namespaced {
        format!("{base}/namespaces/{{namespace}}/{}", info.plural)
    } else {
        format!("{base}/{}", info.plural)
    };
    let item = format!("{collection}/{{name}}");
    let gvk = (info.group, info.version, info.kind);
    let scope = if namespaced { "Namespaced" } else { "" };
    let kind = info.kind;
    let can = |verb: &str| info.verbs.contains(&verb);

    let mut path_params = Vec::new();
    if namespaced {
        path_params.push(op.param(
            ("namespace", "string", "object name and auth scope, such as for teams and projects"),
            "path",
        ));
    }
    path_params.push(op.param(PRETTY, "query"));
    let mut ops = Map::new();
    if can("list") {
        ops.insert(
            "get".into(),
            op.operation(
                &format!("list{scope}{kind}"),
                &format!("list or watch objects of kind {kind}"),
                "list",
                gvk,
                LIST,
                None,
                &[("200", "OK", kinds.list)],
                true,
            ),
        );
    }
    if can("create") {
        ops.insert(
            "post".into(),
            op.operation(
                &format!("create{scope}{kind}"),
                &format!("create a {kind}"),
                "post",
                gvk,
                &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION],
                Some(Body::Object(kinds.kind)),
                &[
                    ("200", "OK", kinds.kind),
                    ("201", "Created", kinds.kind),
                    ("202", "Accepted", kinds.kind),
                ],
                false,
            ),
        );
    }
    if can("deletecollection") {
        let params: Vec<Param> = [DRY_RUN, GRACE_PERIOD, ORPHAN, PROPAGATION]
            .into_iter()
            .chain(LIST.iter().copied())
            .collect();
        ops.insert(
            "delete".into(),
            op.operation(
                &format!("deletecollection{scope}{kind}"),
                &format!("delete collection of {kind}"),
                "deletecollection",
                gvk,
                &params,
                Some(Body::Object(DELETE_OPTIONS)),
                &[("200", "OK", STATUS)],
                false,
            ),
        );
    }
    op.insert(paths, collection, ops, path_params.clone());

    let mut item_params = vec![op.param(("name", "string", "name of the resource"), "path")];
    item_params.extend(path_params.iter().cloned());
    let mut ops = Map::new();
    if can("get") {
        ops.insert(
            "get".into(),
            op.operation(
                &format!("read{scope}{kind}"),
                &format!("read the specified {kind}"),
                "get",
                gvk,
                &[],
                None,
                &[("200", "OK", kinds.kind)],
                false,
            ),
        );
    }
    if can("update") {
        ops.insert(
            "put".into(),
            op.operation(
                &format!("replace{scope}{kind}"),
                &format!("replace the specified {kind}"),
                "put",
                gvk,
                &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION],
                Some(Body::Object(kinds.kind)),
                &[("200", "OK", kinds.kind), ("201", "Created", kinds.kind)],
                false,
            ),
        );
    }
    if can("patch") {
        ops.insert(
            "patch".into(),
            op.operation(
                &format!("patch{scope}{kind}"),
                &format!("partially update the specified {kind}"),
                "patch",
                gvk,
                &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION, FORCE],
                Some(Body::Patch),
                &[("200", "OK", kinds.kind), ("201", "Created", kinds.kind)],
                false,
            ),
        );
    }
    if can("delete") {
        ops.insert(
            "delete".into(),
            op.operation(
                &format!("delete{scope}{kind}"),
                &format!("delete a {kind}"),
                "delete",
                gvk,
                &[DRY_RUN, GRACE_PERIOD, ORPHAN, PROPAGATION],
                Some(Body::Object(DELETE_OPTIONS)),
                &[("200", "OK", STATUS), ("202", "Accepted", STATUS)],
                false,
            ),
        );
    }
    op.insert(paths, item.clone(), ops, item_params.clone());

    if namespaced && can("list") {
        let mut ops = Map::new();
        ops.insert(
            "get".into(),
            op.operation(
                &format!("list{kind}ForAllNamespaces"),
                &format!("list or watch objects of kind {kind}"),
                "list",
                gvk,
                LIST,
                None,
                &[("200", "OK", kinds.list)],
                true,
            ),
        );
        op.insert(paths, format!("{base}/{}", info.plural), ops, vec![op.param(PRETTY, "query")]);
    }

    let mut subresources = Vec::new();
    if info.status {
        subresources.push(Subresource::own("status", gvk, kinds.kind));
    }
    if let (Some(_), Some(scale)) = (info.scale, kinds.scale) {
        subresources.push(Subresource::own("scale", ("autoscaling", "v1", "Scale"), scale));
    }
    for (sub, answer) in kinds.subresources {
        // `log` answers text; the streaming and proxy subresources (their kinds are options)
        // are connections, as upstream's `connect` operations.
        let connect = sub.kind.ends_with("Options");
        let answer = if connect || sub.name == "log" { Some("") } else { answer.as_deref() };
        let Some(answer) = answer else { continue };
        subresources.push(Subresource {
            name: sub.name,
            gvk: (sub.group, sub.version, sub.kind),
            answer,
            verbs: sub.verbs,
            connect,
        });
    }
    for sub in subresources {
        let (name, answer, gvk) = (sub.name, sub.answer, sub.gvk);
        let suffix = capitalize(name);
        let mut ops = Map::new();
        for verb in sub.verbs {
            let method = match *verb {
                "get" => "get",
                "create" => "post",
                "update" => "put",
                "patch" => "patch",
                "delete" => "delete",
                _ => continue,
            };
            let operation = if sub.connect {
                op.operation(
                    &format!("connect{}{scope}{kind}{suffix}", capitalize(method)),
                    &format!("connect {} requests to {name} of {kind}", method.to_uppercase()),
                    "connect",
                    gvk,
                    &[],
                    None,
                    &[("200", "OK", "")],
                    false,
                )
            } else {
                match *verb {
                    "get" => op.operation(
                        &format!("read{scope}{kind}{suffix}"),
                        &format!("read {name} of the specified {kind}"),
                        "get",
                        gvk,
                        &[],
                        None,
                        &[("200", "OK", answer)],
                        false,
                    ),
                    "create" => op.operation(
                        &format!("create{scope}{kind}{suffix}"),
                        &format!("create {name} of a {kind}"),
                        "post",
                        gvk,
                        &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION],
                        Some(Body::Object(answer)),
                        &[
                            ("200", "OK", answer),
                            ("201", "Created", answer),
                            ("202", "Accepted", answer),
                        ],
                        false,
                    ),
                    "update" => op.operation(
                        &format!("replace{scope}{kind}{suffix}"),
                        &format!("replace {name} of the specified {kind}"),
                        "put",
                        gvk,
                        &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION],
                        Some(Body::Object(answer)),
                        &[("200", "OK", answer), ("201", "Created", answer)],
                        false,
                    ),
                    "patch" => op.operation(
                        &format!("patch{scope}{kind}{suffix}"),
                        &format!("partially update {name} of the specified {kind}"),
                        "patch",
                        gvk,
                        &[DRY_RUN, FIELD_MANAGER, FIELD_VALIDATION, FORCE],
                        Some(Body::Patch),
                        &[("200", "OK", answer), ("201", "Created", answer)],
                        false,
                    ),
                    _ => continue,
                }
            };
            ops.insert(method.into(), operation);
        }
        op.insert(paths, format!("{item}/{name}"), ops, item_params.clone());
    }
}

/// A subresource's operations: its verbs, the kind its operations carry and the definition
/// they take and answer (empty: text).
struct Subresource<'a> {
    name: &'a str,
    gvk: (&'a str, &'a str, &'a str),
    answer: &'a str,
    verbs: &'a [&'a str],
    connect: bool,
}

impl<'a> Subresource<'a> {
    /// `status` or `scale`: read, replaced and patched.
    fn own(name: &'a str, gvk: (&'a str, &'a str, &'a str), answer: &'a str) -> Self {
        Self { name, gvk, answer, verbs: &["get", "update", "patch"], connect: false }
    }
}

/// What an operation takes as its body.
enum Body<'a> {
    /// An object of this definition.
    Object(&'a str),
    /// A patch, in the patch media types the resource takes.
    Patch,
}

struct Operations<'a> {
    flavor: Flavor,
    info: &'a ResourceInfo,
    builtin: bool,
}

impl Operations<'_> {
    fn param(&self, (name, ty, description): Param, location: &str) -> Value {
        let mut param = match self.flavor {
            Flavor::V2 => {
                json!({"description": description, "in": location, "name": name, "type": ty, "uniqueItems": true})
            }
            Flavor::V3 => {
                json!({"description": description, "in": location, "name": name, "schema": {"type": ty, "uniqueItems": true}})
            }
        };
        if location == "path" {
            param["required"] = Value::Bool(true);
        }
        param
    }

    /// The media types of objects: requests and responses.
    fn media_types(&self, watch: bool) -> Vec<&'static str> {
        let mut types = vec!["application/json", "application/yaml"];
        if self.builtin {
            types.push("application/vnd.kubernetes.protobuf");
        }
        if watch {
            types.push("application/json;stream=watch");
            if self.builtin {
                types.push("application/vnd.kubernetes.protobuf;stream=watch");
            }
        }
        types
    }

    /// The patch media types: strategic merge patches only for built-in kinds, as upstream.
    fn patch_types(&self) -> Vec<&'static str> {
        let mut types = vec![
            "application/apply-patch+yaml",
            "application/json-patch+json",
            "application/merge-patch+json",
        ];
        if self.builtin {
            types.push("application/strategic-merge-patch+json");
        }
        types
    }

    /// A reference to definition `name`; a string when `name` is empty (text answers).
    fn reference(&self, name: &str) -> Value {
        if name.is_empty() {
            return json!({"type": "string"});
        }
        json!({"$ref": format!("{}{name}", self.flavor.prefix())})
    }

    #[allow(clippy::too_many_arguments)]
    fn operation(
        &self,
        id: &str,
        description: &str,
        action: &str,
        (group, version, kind): (&str, &str, &str),
        params: &[Param],
        body: Option<Body>,
        responses: &[(&str, &str, &str)],
        watch: bool,
    ) -> Value {
        let id = operation_id(id, self.info.group, self.info.version);
        let mut parameters: Vec<Value> = Vec::new();
        let mut operation = Map::new();
        operation.insert("description".into(), Value::from(description));
        operation.insert("operationId".into(), Value::from(id));
        let tag = format!("{}_{}", group_tag(self.info.group), self.info.version);
        match self.flavor {
            Flavor::V2 => {
                operation.insert(
                    "consumes".into(),
                    json!(match &body {
                        Some(Body::Patch) => self.patch_types(),
                        _ => vec!["*/*"],
                    }),
                );
                if let Some(body) = &body {
                    let target = match body {
                        Body::Object(name) => name,
                        Body::Patch => PATCH,
                    };
                    parameters.push(json!({"in": "body", "name": "body", "required": !matches!(body, Body::Object(DELETE_OPTIONS)), "schema": self.reference(target)}));
                }
                operation.insert("produces".into(), json!(self.media_types(watch)));
                let mut answers = Map::new();
                for (code, text, name) in responses {
                    answers.insert(
                        (*code).into(),
                        json!({"description": text, "schema": self.reference(name)}),
                    );
                }
                answers.insert("401".into(), json!({"description": "Unauthorized"}));
                operation.insert("responses".into(), Value::Object(answers));
                operation.insert("schemes".into(), json!(["https"]));
            }
            Flavor::V3 => {
                if let Some(body) = &body {
                    let (types, target) = match body {
                        Body::Object(name) => (self.media_types(false), *name),
                        Body::Patch => (self.patch_types(), PATCH),
                    };
                    let content: Map<String, Value> = types
                        .into_iter()
                        .map(|t| (t.to_string(), json!({"schema": self.reference(target)})))
                        .collect();
                    let mut request = json!({"content": content});
                    if !matches!(body, Body::Object(DELETE_OPTIONS)) {
                        request["required"] = Value::Bool(true);
                    }
                    operation.insert("requestBody".into(), request);
                }
                let mut answers = Map::new();
                for (code, text, name) in responses {
                    let content: Map<String, Value> = self
                        .media_types(watch)
                        .into_iter()
                        .map(|t| (t.to_string(), json!({"schema": self.reference(name)})))
                        .collect();
                    answers
                        .insert((*code).into(), json!({"content": content, "description": text}));
                }
                answers.insert("401".into(), json!({"description": "Unauthorized"}));
                operation.insert("responses".into(), Value::Object(answers));
            }
        }
        parameters.extend(params.iter().map(|p| self.param(*p, "query")));
        if !parameters.is_empty() {
            operation.insert("parameters".into(), Value::Array(parameters));
        }
        operation.insert("tags".into(), json!([tag]));
        operation.insert("x-kubernetes-action".into(), Value::from(action));
        operation.insert(
            "x-kubernetes-group-version-kind".into(),
            json!({"group": group, "kind": kind, "version": version}),
        );
        Value::Object(operation)
    }

    fn insert(
        &self,
        paths: &mut Map<String, Value>,
        path: String,
        operations: Map<String, Value>,
        parameters: Vec<Value>,
    ) {
        if operations.is_empty() {
            return;
        }
        let mut item = operations;
        item.insert("parameters".into(), Value::Array(parameters));
        paths.insert(path, Value::Object(item));
    }
}

/// `listNamespacedDeployment` → `listAppsV1NamespacedDeployment`: upstream's operation ids
/// put the group and version after the verb.
fn operation_id(id: &str, group: &str, version: &str) -> String {
    let verb_end = id.find(|c: char| c.is_ascii_uppercase()).unwrap_or(id.len());
    format!("{}{}{}{}", &id[..verb_end], group_camel(group), capitalize(version), &id[verb_end..])
}

/// `apps` → `Apps`, `rbac.authorization.k8s.io` → `RbacAuthorization`, core → `Core`.
fn group_camel(group: &str) -> String {
    if group.is_empty() {
        return "Core".into();
    }
    let group = group.strip_suffix(".k8s.io").unwrap_or(group);
    group.split(['.', '-']).map(capitalize).collect()
}

/// `rbac.authorization.k8s.io` → `rbacAuthorization` (the tags of operations), core → `core`.
fn group_tag(group: &str) -> String {
    let camel = group_camel(group);
    let mut chars = camel.chars();
    chars.next().map(|c| c.to_ascii_lowercase().to_string() + chars.as_str()).unwrap_or_default()
}

fn capitalize(word: &str) -> String {
    let mut chars = word.chars();
    chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
}
