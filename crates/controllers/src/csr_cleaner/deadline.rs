//! When a CertificateSigningRequest has served its purpose (upstream's csrcleaner rules):
//! an hour after it was issued, denied or failed, a day after it was made while still pending.

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::certificates::v1::{
    CertificateSigningRequest, CertificateSigningRequestCondition,
};

/// How long an issued, denied or failed request stays.
pub const DECIDED: SignedDuration = SignedDuration::from_hours(1);
/// How long a pending request stays.
pub const PENDING: SignedDuration = SignedDuration::from_hours(24);

/// When `csr` is to be deleted; `None` when it never is (an approved request not issued yet
/// waits for its signer).
pub fn expires_at(csr: &CertificateSigningRequest) -> Option<Timestamp> {
    let status = csr.status.as_ref();
    let conditions: &[CertificateSigningRequestCondition] =
        status.and_then(|s| s.conditions.as_deref()).unwrap_or_default();
    let when = |kind: &str| {
        conditions.iter().find(|c| c.type_ == kind && c.status == "True").map(|c| {
            c.last_update_time
                .as_ref()
                .or(c.last_transition_time.as_ref())
                .or(csr.metadata.creation_timestamp.as_ref())
                .map_or(Timestamp::UNIX_EPOCH, |t| t.0)
        })
    };
    let issued = status.and_then(|s| s.certificate.as_ref()).is_some_and(|c| !c.0.is_empty());
    let decided = [when("Failed"), when("Denied"), when("Approved").filter(|_| issued)]
        .into_iter()
        .flatten()
        .min();
    if let Some(at) = decided {
        return at.checked_add(DECIDED).ok();
    }
    if conditions.iter().any(|c| c.type_ == "Approved" && c.status == "True") {
        return None;
    }
    let created = csr.metadata.creation_timestamp.as_ref()?.0;
    created.checked_add(PENDING).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::ByteString;
    use k8s_openapi::api::certificates::v1::CertificateSigningRequestStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};

    fn at(s: &str) -> Timestamp {
        s.parse().expect("a timestamp")
    }

    fn csr(conditions: &[(&str, &str)], issued: bool) -> CertificateSigningRequest {
        CertificateSigningRequest {
            metadata: ObjectMeta {
                creation_timestamp: Some(Time(at("2026-01-01T00:00:00Z"))),
                ..ObjectMeta::default()
            },
            status: Some(CertificateSigningRequestStatus {
                certificate: issued.then(|| ByteString(b"cert".to_vec())),
                conditions: Some(
                    conditions
                        .iter()
                        .map(|(kind, time)| CertificateSigningRequestCondition {
                            type_: (*kind).into(),
                            status: "True".into(),
                            last_update_time: Some(Time(at(time))),
                            ..CertificateSigningRequestCondition::default()
                        })
                        .collect(),
                ),
            }),
            ..CertificateSigningRequest::default()
        }
    }

    #[test]
    fn deadlines() {
        assert_eq!(expires_at(&csr(&[], false)), Some(at("2026-01-02T00:00:00Z")));
        assert_eq!(
            expires_at(&csr(&[("Denied", "2026-01-01T05:00:00Z")], false)),
            Some(at("2026-01-01T06:00:00Z"))
        );
        assert_eq!(expires_at(&csr(&[("Approved", "2026-01-01T05:00:00Z")], false)), None);
        assert_eq!(
            expires_at(&csr(&[("Approved", "2026-01-01T05:00:00Z")], true)),
            Some(at("2026-01-01T06:00:00Z"))
        );
        let failed =
            csr(&[("Approved", "2026-01-01T05:00:00Z"), ("Failed", "2026-01-01T05:10:00Z")], false);
        assert_eq!(expires_at(&failed), Some(at("2026-01-01T06:10:00Z")));
    }
}
