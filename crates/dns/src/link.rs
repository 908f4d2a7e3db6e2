//! The node's link that holds the DNS server's addresses (as NodeLocal DNSCache's
//! `nodelocaldns`): the addresses are local to the host, so pods reach the server through
//! their default route to the bridge, with no proxying or NAT. The link is a bridge without
//! ports rather than a dummy link, which not every kernel has.

use std::net::IpAddr;

use futures::TryStreamExt;

use crate::Error;

fn failed(what: String) -> impl FnOnce(rtnetlink::Error) -> Error {
    move |e| Error::Link(format!("{what}: {e}"))
}

fn exists(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -nix::libc::EEXIST)
}

async fn index_of(handle: &rtnetlink::Handle, name: &str) -> Result<Option<u32>, Error> {
    let mut links = handle.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(link) => Ok(link.map(|l| l.header.index)),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -nix::libc::ENODEV => Ok(None),
        Err(e) => Err(failed(format!("cannot look up link {name}"))(e)),
    }
}

/// Makes the link `name` if it is missing, brings it up and gives it `addresses`
/// (each as a host address, /32 or /128).
pub async fn hold(name: &str, addresses: &[IpAddr]) -> Result<(), Error> {
    let (connection, handle, _) = rtnetlink::new_connection()
        .map_err(|e| Error::Link(format!("cannot open a netlink socket: {e}")))?;
    let task = tokio::spawn(connection);
    let result = async {
        if index_of(&handle, name).await?.is_none() {
            handle
                .link()
                .add(rtnetlink::LinkBridge::new(name).build())
                .execute()
                .await
                .or_else(|e| if exists(&e) { Ok(()) } else { Err(e) })
                .map_err(failed(format!("cannot create link {name}")))?;
        }
        let index = index_of(&handle, name)
            .await?
            .ok_or_else(|| Error::Link(format!("link {name} vanished")))?;
        handle
            .link()
            .set(rtnetlink::LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
            .map_err(failed(format!("cannot bring {name} up")))?;
        for ip in addresses {
            let prefix = if ip.is_ipv4() { 32 } else { 128 };
            handle
                .address()
                .add(index, *ip, prefix)
                .replace()
                .execute()
                .await
                .map_err(failed(format!("cannot give {name} the address {ip}")))?;
        }
        Ok(())
    }
    .await;
    task.abort();
    result
}
