//! The requester fields of a new CertificateSigningRequest, as upstream's
//! `csrStrategy.PrepareForCreate`: `spec.username`, `spec.uid`, `spec.groups` and
//! `spec.extra` are whoever creates it, whatever the body says.

use serde_json::{Value, json};

use crate::strategy::Requester;

/// Sets the requester fields of `csr` (served) to `user`'s; empty ones are left out.
pub fn record(csr: &mut Value, user: &Requester<'_>) {
    if !csr.get("spec").is_some_and(Value::is_object) {
        csr["spec"] = json!({});
    }
    let Some(spec) = csr["spec"].as_object_mut() else { return };
    for field in ["username", "uid", "groups", "extra"] {
        spec.remove(field);
    }
    if !user.name.is_empty() {
        spec.insert("username".into(), json!(user.name));
    }
    if !user.uid.is_empty() {
        spec.insert("uid".into(), json!(user.uid));
    }
    if !user.groups.is_empty() {
        spec.insert("groups".into(), json!(user.groups));
    }
    if !user.extra.is_empty() {
        spec.insert("extra".into(), json!(user.extra));
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    #[test]
    fn the_requester_replaces_what_the_body_claims() {
        let none = BTreeMap::new();
        let extra = BTreeMap::from([("k".to_string(), vec!["v".to_string()])]);
        let user_groups = ["dev".to_string(), "system:authenticated".to_string()];
        let sa_groups = ["system:serviceaccounts".to_string()];
        let cases = [
            (
                "a certificate user",
                Requester { name: "jane", uid: "", groups: &user_groups, extra: &none },
                json!({"username": "jane", "groups": ["dev", "system:authenticated"]}),
            ),
            (
                "a service account with a uid and extra",
                Requester {
                    name: "system:serviceaccount:a:b",
                    uid: "u1",
                    groups: &sa_groups,
                    extra: &extra,
                },
                json!({"username": "system:serviceaccount:a:b", "uid": "u1", "groups": ["system:serviceaccounts"], "extra": {"k": ["v"]}}),
            ),
        ];
        for (case, user, expected) in cases {
            let mut csr = json!({"spec": {"username": "admin", "groups": ["system:masters"], "request": "x"}});
            record(&mut csr, &user);
            let mut want = expected;
            want["request"] = json!("x");
            assert_eq!(csr["spec"], want, "{case}");
        }
    }
}
