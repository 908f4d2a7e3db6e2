//! The server's resources, from its aggregated discovery (or the per-group documents when it
//! serves none): what the namespace controller empties and the garbage collector watches.

use kube::Client;
use kube::discovery::{ApiCapabilities, ApiResource, Discovery};

/// Every group's preferred version's resources, with what each supports.
pub async fn resources(
    client: &Client,
) -> Result<Vec<(ApiResource, ApiCapabilities)>, kube::Error> {
    let discovery = match Discovery::new(client.clone()).run_aggregated().await {
        Ok(discovery) => discovery,
        Err(_) => Discovery::new(client.clone()).run().await?,
    };
    Ok(discovery.groups().flat_map(|g| g.recommended_resources()).collect())
}
