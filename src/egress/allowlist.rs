//! Which destinations a sandbox's egress proxy lets through.
//!
//! By default exactly the hosts the integration's tools call in its region — CloudWatch Logs
//! (`logs`), CloudWatch (`monitoring`), `ec2`, `ecs`, `eks`, `elasticache`, and STS (regional
//! and global) — on port 443; plus the integration's `endpoint_url` host on its own port
//! (emulators); plus `sandbox.egress_allow` patterns (`name.example` or `*.example`, port
//! 443). Everything else is refused with a reason the agent can read.
//!
//! An `endpoint_url` on the host's loopback (an emulator next to the daemon) is not the
//! sandbox's loopback: the sandbox is told [`MAPPED_ENDPOINT_HOST`] instead, which the proxy
//! maps back to the configured host.

use crate::config::HostPattern;

/// The name a sandbox uses for an `endpoint_url` on the host's loopback.
pub const MAPPED_ENDPOINT_HOST: &str = "aws-endpoint.autoheal.internal";
/// The only port for AWS names and `egress_allow` patterns.
pub const HTTPS_PORT: u16 = 443;
/// The services the tools call (their endpoint prefixes).
const SERVICES: [&str; 7] = [
    "logs",
    "monitoring",
    "ec2",
    "ecs",
    "eks",
    "elasticache",
    "sts",
];

/// Where an allowed request goes, and how the proxy may treat its addresses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Destination {
    /// The host to resolve and connect to (the configured one for a mapped endpoint).
    pub host: String,
    pub port: u16,
    /// True for the integration's `endpoint_url`: loopback and the host's own addresses
    /// are allowed for it (an emulator next to the daemon).
    pub endpoint: bool,
}

/// The integration's `endpoint_url`, as the proxy knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Endpoint {
    host: String,
    port: u16,
    /// `http://` (plain forwarding of absolute-form requests) rather than `https://`.
    plain: bool,
    /// The sandbox calls it [`MAPPED_ENDPOINT_HOST`].
    mapped: bool,
}

/// One sandbox's allowlist.
#[derive(Debug, Clone)]
pub struct Allowlist {
    aws_hosts: Vec<String>,
    endpoint: Option<Endpoint>,
    patterns: Vec<HostPattern>,
}

impl Allowlist {
    /// The allowlist for an integration in `region`, with its `endpoint_url` and the
    /// configured `egress_allow` patterns.
    pub fn new(region: &str, endpoint_url: Option<&str>, patterns: &[HostPattern]) -> Self {
        let suffix = if region.starts_with("cn-") {
            "amazonaws.com.cn"
        } else {
            "amazonaws.com"
        };
        let mut aws_hosts: Vec<String> = SERVICES
            .iter()
            .map(|service| format!("{service}.{region}.{suffix}"))
            .collect();
        aws_hosts.push(format!("sts.{suffix}"));
        let endpoint = endpoint_url
            .and_then(|url| url::Url::parse(url).ok())
            .and_then(|url| {
                let host = url
                    .host_str()?
                    .trim_matches(['[', ']'])
                    .to_ascii_lowercase();
                let port = url.port_or_known_default()?;
                let mapped = is_loopback_name(&host);
                Some(Endpoint {
                    host,
                    port,
                    plain: url.scheme() == "http",
                    mapped,
                })
            });
        Self {
            aws_hosts,
            endpoint,
            patterns: patterns.to_vec(),
        }
    }

    /// The `AWS_ENDPOINT_URL` a sandbox behind the proxy gets for `endpoint_url`: the same
    /// URL, with a host on the host's loopback replaced by [`MAPPED_ENDPOINT_HOST`].
    pub fn sandbox_endpoint_url(endpoint_url: &str) -> String {
        match url::Url::parse(endpoint_url) {
            Ok(mut url)
                if url
                    .host_str()
                    .is_some_and(|h| is_loopback_name(h.trim_matches(['[', ']']))) =>
            {
                if url.set_host(Some(MAPPED_ENDPOINT_HOST)).is_ok() {
                    url.to_string().trim_end_matches('/').to_owned()
                } else {
                    endpoint_url.to_owned()
                }
            }
            _ => endpoint_url.to_owned(),
        }
    }

    /// Where a tunnel (`CONNECT host:port`) to `host:port` may go, or why not.
    pub fn tunnel(&self, host: &str, port: u16) -> Result<Destination, String> {
        self.decide(host, port, false)
    }

    /// Where a plain-HTTP request (absolute-form) to `host:port` may go, or why not: only the
    /// integration's `http://` `endpoint_url` (an emulator) is reached without TLS.
    pub fn plain(&self, host: &str, port: u16) -> Result<Destination, String> {
        self.decide(host, port, true)
    }

    fn decide(&self, host: &str, port: u16, plain: bool) -> Result<Destination, String> {
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        if let Some(endpoint) = &self.endpoint {
            let named = if endpoint.mapped {
                host == MAPPED_ENDPOINT_HOST
            } else {
                host == endpoint.host
            };
            if named {
                if port != endpoint.port {
                    return Err(format!(
                        "{host}:{port}: the integration's endpoint_url is reached on port {} only",
                        endpoint.port
                    ));
                }
                if plain && !endpoint.plain {
                    return Err(format!(
                        "{host}: the integration's endpoint_url is https; use a CONNECT tunnel"
                    ));
                }
                return Ok(Destination {
                    host: endpoint.host.clone(),
                    port,
                    endpoint: true,
                });
            }
        }
        let listed =
            self.aws_hosts.contains(&host) || self.patterns.iter().any(|p| p.matches(&host));
        if !listed {
            return Err(format!(
                "{host} is not on this sandbox's egress allowlist (the integration's AWS endpoints; add others with sandbox.egress_allow)"
            ));
        }
        if plain {
            return Err(format!(
                "{host}: plain HTTP is refused; AWS endpoints are reached over HTTPS (CONNECT)"
            ));
        }
        if port != HTTPS_PORT {
            return Err(format!("{host}:{port}: only port {HTTPS_PORT} is allowed"));
        }
        Ok(Destination {
            host,
            port,
            endpoint: false,
        })
    }
}

fn is_loopback_name(host: &str) -> bool {
    host == "localhost"
        || host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patterns(texts: &[&str]) -> Vec<HostPattern> {
        texts
            .iter()
            .map(|t| HostPattern::parse(t).unwrap())
            .collect()
    }

    #[test]
    fn the_integrations_aws_endpoints_on_443_and_nothing_else() {
        let list = Allowlist::new("eu-west-1", None, &[]);
        for host in [
            "logs.eu-west-1.amazonaws.com",
            "monitoring.eu-west-1.amazonaws.com",
            "ec2.eu-west-1.amazonaws.com",
            "ecs.eu-west-1.amazonaws.com",
            "eks.eu-west-1.amazonaws.com",
            "elasticache.eu-west-1.amazonaws.com",
            "sts.eu-west-1.amazonaws.com",
            "sts.amazonaws.com",
            "LOGS.eu-west-1.amazonaws.com.",
        ] {
            let to = list.tunnel(host, 443).unwrap_or_else(|e| panic!("{e}"));
            assert!(!to.endpoint);
        }
        for (host, port) in [
            ("logs.us-east-1.amazonaws.com", 443),
            ("s3.eu-west-1.amazonaws.com", 443),
            ("attacker.example", 443),
            ("logs.eu-west-1.amazonaws.com", 80),
            ("logs.eu-west-1.amazonaws.com.attacker.example", 443),
        ] {
            let refused = list.tunnel(host, port).unwrap_err();
            assert!(!refused.is_empty());
        }
        assert!(list.plain("logs.eu-west-1.amazonaws.com", 443).is_err());
        let china = Allowlist::new("cn-north-1", None, &[]);
        assert!(
            china
                .tunnel("logs.cn-north-1.amazonaws.com.cn", 443)
                .is_ok()
        );
    }

    #[test]
    fn patterns_add_names_and_subdomains_not_the_apex() {
        let list = Allowlist::new(
            "us-east-1",
            None,
            &patterns(&["*.vpce.amazonaws.com", "proxy.corp.example"]),
        );
        assert!(
            list.tunnel("vpce-1.logs.us-east-1.vpce.amazonaws.com", 443)
                .is_ok()
        );
        assert!(list.tunnel("vpce.amazonaws.com", 443).is_err());
        assert!(list.tunnel("xvpce.amazonaws.com", 443).is_err());
        assert!(list.tunnel("proxy.corp.example", 443).is_ok());
        assert!(list.tunnel("a.proxy.corp.example", 443).is_err());
        for bad in ["", "*.", "a b", "-x.example/..", "a..b"] {
            assert!(HostPattern::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_emulator_on_the_hosts_loopback_is_reached_by_its_mapped_name() {
        let list = Allowlist::new("us-east-1", Some("http://127.0.0.1:5000"), &[]);
        assert_eq!(
            Allowlist::sandbox_endpoint_url("http://127.0.0.1:5000"),
            format!("http://{MAPPED_ENDPOINT_HOST}:5000")
        );
        let to = list.plain(MAPPED_ENDPOINT_HOST, 5000).unwrap();
        assert_eq!(
            to,
            Destination {
                host: "127.0.0.1".into(),
                port: 5000,
                endpoint: true
            }
        );
        assert!(list.tunnel(MAPPED_ENDPOINT_HOST, 5000).is_ok());
        assert!(
            list.plain(MAPPED_ENDPOINT_HOST, 5001).is_err(),
            "its port only"
        );
        assert!(
            list.plain("127.0.0.1", 5000).is_err(),
            "loopback by its own name: no"
        );
        // An endpoint elsewhere keeps its name, and https stays https.
        let vpce = Allowlist::new("us-east-1", Some("https://vpce-1.example:8443"), &[]);
        assert_eq!(
            Allowlist::sandbox_endpoint_url("https://vpce-1.example:8443"),
            "https://vpce-1.example:8443"
        );
        assert!(vpce.tunnel("vpce-1.example", 8443).unwrap().endpoint);
        assert!(vpce.plain("vpce-1.example", 8443).is_err());
    }
}
