//! Peer address lists, shared by the BBDO listeners (`bbdo.allow`) and the
//! HTTP server (trusted proxies, the reserve's allow-list). A leaf module:
//! the layers that use it need nothing else from `config`.

use std::net::IpAddr;

/// Peers a listener accepts (BBDO `allow`, the HTTP reserve, trusted
/// proxies): addresses and networks. Empty means every peer.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AllowList(Vec<ipnet::IpNet>);

impl AllowList {
    /// Parses `127.0.0.1`, `::1`, `10.0.0.0/8`, `fd00::/8`…
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<AllowList, String> {
        entries
            .iter()
            .map(|entry| {
                let entry = entry.as_ref().trim();
                entry
                    .parse::<ipnet::IpNet>()
                    .or_else(|_| entry.parse::<IpAddr>().map(ipnet::IpNet::from))
                    .map(|net| net.trunc())
                    .map_err(|_| {
                        format!(
                            "`{entry}` is not an IP address or network (such as 192.0.2.7, 10.0.0.0/8 or ::1)"
                        )
                    })
            })
            .collect::<Result<_, _>>()
            .map(AllowList)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Each entry as a network (`127.0.0.1/32`).
    pub fn entries(&self) -> Vec<String> {
        self.0.iter().map(ToString::to_string).collect()
    }

    pub fn allows(&self, peer: IpAddr) -> bool {
        // A dual-stack listener sees IPv4 peers as ::ffff:a.b.c.d.
        let peer = peer.to_canonical();
        self.0.is_empty() || self.0.iter().any(|net| net.contains(&peer))
    }
}

impl std::fmt::Display for AllowList {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.entries().join(", "))
    }
}

/// `--bbdo-allow`: a comma-separated list; empty for every peer.
pub fn parse_allow_list(text: &str) -> Result<AllowList, String> {
    let entries: Vec<&str> = text
        .split(',')
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .collect();
    AllowList::parse(&entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_lists_take_addresses_and_networks() {
        let allow = AllowList::parse(&["127.0.0.1", "10.0.0.0/8", "::1", "fd00::/8"]).unwrap();
        for ok in ["127.0.0.1", "10.1.2.3", "::1", "fd12::1", "::ffff:10.9.9.9"] {
            assert!(allow.allows(ok.parse().unwrap()), "{ok}");
        }
        for refused in ["127.0.0.2", "11.0.0.1", "::2", "::ffff:127.0.0.2"] {
            assert!(!allow.allows(refused.parse().unwrap()), "{refused}");
        }
        assert!(AllowList::default().allows("192.0.2.1".parse().unwrap()));
        // A network written with host bits set means the network.
        assert_eq!(
            AllowList::parse(&["10.1.2.3/8"]).unwrap().entries(),
            ["10.0.0.0/8"]
        );
        let error = AllowList::parse(&["10.0.0.0/33"]).unwrap_err();
        assert!(
            error.contains("`10.0.0.0/33` is not an IP address or network"),
            "{error}"
        );
        assert!(AllowList::parse(&["localhost"]).is_err());
        assert_eq!(parse_allow_list(" "), Ok(AllowList::default()));
        assert_eq!(
            parse_allow_list("127.0.0.1, 10.0.0.0/8").unwrap().entries(),
            ["127.0.0.1/32", "10.0.0.0/8"]
        );
    }
}
