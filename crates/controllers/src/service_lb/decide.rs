//! Which address a LoadBalancer Service gets on bare hosts, as k3s's service load balancer
//! gives it: the addresses of the ready nodes, where the service proxy answers on the
//! Service's ports. Pure.

use k8s_openapi::api::core::v1::{LoadBalancerIngress, Node, Service};

/// Whether this controller owns the Service's load balancer: type LoadBalancer without a
/// `loadBalancerClass` (a class names another implementation).
pub fn owned(service: &Service) -> bool {
    let spec = service.spec.as_ref();
    spec.and_then(|s| s.type_.as_deref()) == Some("LoadBalancer")
        && spec.and_then(|s| s.load_balancer_class.as_ref()).is_none()
}

/// The addresses of the ready nodes: each one's InternalIP (else its ExternalIP), sorted.
pub fn node_addresses<'a>(nodes: impl Iterator<Item = &'a Node>) -> Vec<String> {
    let mut out: Vec<String> = nodes
        .filter(|node| {
            let conditions = node.status.as_ref().and_then(|s| s.conditions.as_ref());
            conditions.into_iter().flatten().any(|c| c.type_ == "Ready" && c.status == "True")
        })
        .filter_map(|node| {
            let addresses = node.status.as_ref()?.addresses.as_ref()?;
            let pick = |kind: &str| addresses.iter().find(|a| a.type_ == kind);
            Some(pick("InternalIP").or_else(|| pick("ExternalIP"))?.address.clone())
        })
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The ingress `service` should have given the nodes' `addresses`, or `None` when its
/// status is not this controller's to write (another class) or already right. A Service that
/// stopped being a LoadBalancer loses the ingress it had.
pub fn ingress(service: &Service, addresses: &[String]) -> Option<Vec<LoadBalancerIngress>> {
    let current: Vec<LoadBalancerIngress> = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.clone())
        .unwrap_or_default();
    let wanted: Vec<LoadBalancerIngress> = if owned(service) {
        addresses
            .iter()
            .map(|ip| LoadBalancerIngress {
                ip: Some(ip.clone()),
                ip_mode: Some("VIP".into()),
                ..Default::default()
            })
            .collect()
    } else if service.spec.as_ref().and_then(|s| s.type_.as_deref()) != Some("LoadBalancer") {
        Vec::new()
    } else {
        return None;
    };
    (wanted != current).then_some(wanted)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        LoadBalancerStatus, NodeAddress, NodeCondition, NodeStatus, ServiceSpec, ServiceStatus,
    };

    fn node(ip: &str, ready: &str) -> Node {
        Node {
            status: Some(NodeStatus {
                addresses: Some(vec![NodeAddress {
                    type_: "InternalIP".into(),
                    address: ip.into(),
                }]),
                conditions: Some(vec![NodeCondition {
                    type_: "Ready".into(),
                    status: ready.into(),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn service(kind: &str, class: Option<&str>, ingress: &[&str]) -> Service {
        Service {
            spec: Some(ServiceSpec {
                type_: Some(kind.into()),
                load_balancer_class: class.map(str::to_string),
                ..Default::default()
            }),
            status: Some(ServiceStatus {
                load_balancer: Some(LoadBalancerStatus {
                    ingress: Some(
                        ingress
                            .iter()
                            .map(|ip| LoadBalancerIngress {
                                ip: Some(ip.to_string()),
                                ip_mode: Some("VIP".into()),
                                ..Default::default()
                            })
                            .collect(),
                    ),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_load_balancer_gets_the_ready_nodes_addresses() {
        let nodes =
            [node("192.0.2.9", "True"), node("192.0.2.3", "True"), node("192.0.2.5", "False")];
        let addresses = node_addresses(nodes.iter());
        assert_eq!(addresses, vec!["192.0.2.3", "192.0.2.9"]);
        let wanted = ingress(&service("LoadBalancer", None, &[]), &addresses);
        assert_eq!(wanted.map(|w| w.len()), Some(2));
        assert_eq!(
            ingress(&service("LoadBalancer", None, &["192.0.2.3", "192.0.2.9"]), &addresses),
            None
        );
    }

    #[test]
    fn other_classes_are_left_alone_and_former_load_balancers_cleared() {
        let addresses = vec!["192.0.2.3".to_string()];
        assert_eq!(ingress(&service("LoadBalancer", Some("x.io/lb"), &[]), &addresses), None);
        assert_eq!(ingress(&service("ClusterIP", None, &["192.0.2.3"]), &addresses), Some(vec![]));
        assert_eq!(ingress(&service("ClusterIP", None, &[]), &addresses), None);
    }
}
