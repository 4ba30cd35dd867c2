//! Refusals at the firewall, told to the daemon: which sandbox tried to reach what.
//!
//! The egress fence REJECTs everything from a sandbox subnet but the proxy and the
//! credentials endpoint; just before each REJECT an `NFLOG` rule hands the refused packet's
//! first [`COPY_BYTES`] bytes to a netlink group this module reads. That is the IPv4 header
//! and the ports — never a byte of payload. The source address names the sandbox (as the
//! proxy knows it); the refusal lands in that sandbox's record and log like the proxy's
//! own (`EgressProxy::refused_by_firewall`).
//!
//! The NFLOG rules carry a rate limit ([`LOG_RATE`]): every packet is refused, at most that
//! many a second are told, so a sandbox flooding a closed port costs the daemon nothing.
//! The kernel's queue to the socket is bounded too: when the daemon falls behind, the kernel
//! drops log messages (never the refusal).
//!
//! One group per daemon: [`FirewallLog::bind`] takes the first free group from
//! [`FIRST_GROUP`] (another daemon or a test on the same host holds its own). Without
//! `CAP_NET_ADMIN` (or on a kernel without `nfnetlink_log`) nothing is told, the fence
//! works the same, and the daemon says so once.

use std::future::Future;
use std::net::Ipv4Addr;
use std::time::Duration;

use netlink_packet_core::{NetlinkMessage, NetlinkPayload};
use netlink_packet_netfilter::nflog::nlas::config::{ConfigCmd, ConfigMode, Timeout};
use netlink_packet_netfilter::nflog::nlas::packet::PacketNla;
use netlink_packet_netfilter::nflog::{NfLogMessage, config_request};
use netlink_packet_netfilter::{NetfilterMessage, NetfilterMessageInner};
use netlink_sys::constants::NETLINK_NETFILTER;
use netlink_sys::{AsyncSocket, AsyncSocketExt, TokioSocket};

/// Groups tried, from this one on ("AH").
const FIRST_GROUP: u16 = 0x4148;
/// How many groups are tried before giving up.
const GROUPS_TRIED: u16 = 64;
/// Bytes copied of each refused packet: a 20-byte IPv4 header and the 4 bytes of ports.
/// Never payload (IPv4 options, rare, push the ports out of reach: the port reads 0).
const COPY_BYTES: u32 = 24;
/// Refusals told per second, for the `-m limit` of each NFLOG rule (one per chain and
/// subnet, shared by the subnet's sandboxes).
pub const LOG_RATE: &str = "20/sec";
/// Refusals told at once before [`LOG_RATE`] applies.
pub const LOG_BURST: &str = "40";
/// How long the kernel batches log messages before sending them.
const FLUSH_AFTER: Duration = Duration::from_millis(50);
/// The kernel batches at most a page or so per message; this holds many.
const RECEIVE_BUFFER: usize = 64 * 1024;
/// The kernel answers a configuration request at once.
const ANSWER_WITHIN: Duration = Duration::from_secs(2);
/// The family the group is bound for.
const AF_INET: u8 = libc::AF_INET as u8;
/// A netlink message header's length.
const NLMSG_HEADER: usize = 16;

/// One refused packet, as much as the daemon reads of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Refused {
    pub source: Ipv4Addr,
    pub destination: Ipv4Addr,
    /// The destination port (TCP, UDP); 0 for other protocols.
    pub port: u16,
    pub protocol: &'static str,
}

/// A bound netlink socket for one NFLOG group.
pub struct FirewallLog {
    socket: TokioSocket,
    group: u16,
}

impl FirewallLog {
    /// Binds the first free group from [`FIRST_GROUP`]; answers why not when none can be.
    pub async fn bind() -> Result<Self, String> {
        if !has_cap_net_admin() {
            return Err("the daemon lacks CAP_NET_ADMIN".into());
        }
        let mut socket = TokioSocket::new(NETLINK_NETFILTER)
            .map_err(|e| format!("cannot open a netfilter netlink socket: {e}"))?;
        socket
            .socket_mut()
            .bind_auto()
            .map_err(|e| format!("cannot bind a netfilter netlink socket: {e}"))?;
        let mut last = String::new();
        for group in FIRST_GROUP..FIRST_GROUP + GROUPS_TRIED {
            match configure(&socket, group).await {
                Ok(()) => return Ok(Self { socket, group }),
                Err(Refusal::Taken(reason)) => last = reason,
                Err(Refusal::Other(reason)) => return Err(reason),
            }
        }
        Err(format!(
            "no NFLOG group free in {FIRST_GROUP}..{}: {last}",
            FIRST_GROUP + GROUPS_TRIED
        ))
    }

    /// The group the fence's NFLOG rules name.
    pub fn group(&self) -> u16 {
        self.group
    }

    /// Reads refused packets, handing each to `told`, until `until` completes or the socket
    /// fails.
    pub async fn run(self, until: impl Future<Output = ()>, mut told: impl FnMut(Refused)) {
        let mut buffer = Vec::with_capacity(RECEIVE_BUFFER);
        tokio::pin!(until);
        loop {
            buffer.clear();
            let received = tokio::select! {
                () = &mut until => return,
                received = self.socket.recv(&mut buffer) => received,
            };
            match received {
                Ok(()) => {}
                // ENOBUFS: the kernel dropped messages the daemon was too slow for.
                Err(e) if e.raw_os_error() == Some(libc::ENOBUFS) => continue,
                Err(e) => {
                    tracing::warn!(error = %e, "firewall refusals are no longer told: the netlink socket failed");
                    return;
                }
            }
            // Each message by its own length (`nlmsg_len`, the header's first 4 bytes), so one
            // that does not parse is skipped, not the rest of the datagram.
            let mut offset = 0;
            while buffer.len() - offset >= NLMSG_HEADER {
                let length =
                    u32::from_ne_bytes(buffer[offset..offset + 4].try_into().expect("4 bytes"))
                        as usize;
                if length < NLMSG_HEADER || offset + length > buffer.len() {
                    break;
                }
                let bytes = &buffer[offset..offset + length];
                if let Ok(message) = NetlinkMessage::<NetfilterMessage>::deserialize(bytes)
                    && let Some(refused) = refused_packet(&message)
                {
                    told(refused);
                }
                offset += (length + 3) & !3;
            }
        }
    }
}

/// Whether this process's effective capabilities hold CAP_NET_ADMIN (bit 12 of `CapEff`).
fn has_cap_net_admin() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            let hex = status.lines().find_map(|l| l.strip_prefix("CapEff:"))?;
            u64::from_str_radix(hex.trim(), 16).ok()
        })
        .is_some_and(|caps| caps & (1 << 12) != 0)
}

/// Why a group could not be bound: another socket holds it (try the next), or anything
/// else (no group will do: no CAP_NET_ADMIN, no `nfnetlink_log`).
enum Refusal {
    Taken(String),
    Other(String),
}

/// Binds `group` on `socket` with a copy range of [`COPY_BYTES`].
async fn configure(socket: &TokioSocket, group: u16) -> Result<(), Refusal> {
    let timeout: Timeout = FLUSH_AFTER.into();
    let request = config_request(
        AF_INET,
        group,
        vec![
            ConfigCmd::Bind.into(),
            ConfigMode::new_packet(COPY_BYTES).into(),
            timeout.into(),
        ],
    );
    let mut bytes = vec![0; request.header.length as usize];
    request.serialize(&mut bytes[..]);
    socket
        .send(&bytes)
        .await
        .map_err(|e| Refusal::Other(format!("cannot configure NFLOG group {group}: {e}")))?;
    let mut answer = Vec::with_capacity(4096);
    let received = tokio::time::timeout(ANSWER_WITHIN, socket.recv(&mut answer))
        .await
        .map_err(|_| Refusal::Other(format!("no answer configuring NFLOG group {group}")))?;
    received
        .map_err(|e| Refusal::Other(format!("no answer configuring NFLOG group {group}: {e}")))?;
    let message = NetlinkMessage::<NetfilterMessage>::deserialize(&answer).map_err(|e| {
        Refusal::Other(format!(
            "an unreadable answer configuring NFLOG group {group}: {e}"
        ))
    })?;
    match message.payload {
        NetlinkPayload::Error(error) => match error.code {
            None => Ok(()),
            Some(code) => {
                let reason = format!(
                    "NFLOG group {group}: {}",
                    std::io::Error::from_raw_os_error(-code.get())
                );
                // The kernel answers EPERM for a group another socket holds (EBUSY for one
                // this socket holds already); a missing CAP_NET_ADMIN is checked before.
                Err(match -code.get() {
                    libc::EPERM | libc::EBUSY => Refusal::Taken(reason),
                    _ => Refusal::Other(reason),
                })
            }
        },
        other => Err(Refusal::Other(format!(
            "NFLOG group {group}: unexpected answer {other:?}"
        ))),
    }
}

/// The refused packet a log message carries, if it is one.
fn refused_packet(message: &NetlinkMessage<NetfilterMessage>) -> Option<Refused> {
    let NetlinkPayload::InnerMessage(NetfilterMessage {
        inner: NetfilterMessageInner::NfLog(NfLogMessage::Packet(nlas)),
        ..
    }) = &message.payload
    else {
        return None;
    };
    nlas.iter().find_map(|nla| match nla {
        PacketNla::Payload(packet) => parse_ipv4(packet),
        _ => None,
    })
}

/// Source, destination, protocol and destination port of an IPv4 packet's first bytes (the
/// port only from a first fragment: later ones carry payload where ports would be).
fn parse_ipv4(packet: &[u8]) -> Option<Refused> {
    if packet.len() < 20 || packet[0] >> 4 != 4 {
        return None;
    }
    let header = usize::from(packet[0] & 0x0f) * 4;
    if header < 20 {
        return None;
    }
    let first_fragment = u16::from_be_bytes([packet[6], packet[7]]) & 0x1fff == 0;
    let address =
        |at: usize| Ipv4Addr::new(packet[at], packet[at + 1], packet[at + 2], packet[at + 3]);
    let protocol = match packet[9] {
        1 => "icmp",
        6 => "tcp",
        17 => "udp",
        _ => "ip",
    };
    let port = match protocol {
        "tcp" | "udp" if first_fragment && packet.len() >= header + 4 => {
            u16::from_be_bytes([packet[header + 2], packet[header + 3]])
        }
        _ => 0,
    };
    Some(Refused {
        source: address(12),
        destination: address(16),
        port,
        protocol,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An IPv4 header (no options) and the first four bytes of a TCP/UDP header.
    fn packet(protocol: u8, source: [u8; 4], destination: [u8; 4], port: u16) -> Vec<u8> {
        let mut bytes = vec![0x45, 0, 0, 60, 0, 0, 0x40, 0, 64, protocol, 0, 0];
        bytes.extend_from_slice(&source);
        bytes.extend_from_slice(&destination);
        bytes.extend_from_slice(&40000u16.to_be_bytes());
        bytes.extend_from_slice(&port.to_be_bytes());
        bytes
    }

    #[test]
    fn reads_addresses_protocol_and_port() {
        let tcp = parse_ipv4(&packet(6, [198, 18, 1, 2], [198, 18, 9, 9], 8080)).unwrap();
        assert_eq!(
            tcp,
            Refused {
                source: Ipv4Addr::new(198, 18, 1, 2),
                destination: Ipv4Addr::new(198, 18, 9, 9),
                port: 8080,
                protocol: "tcp",
            }
        );
        let udp = parse_ipv4(&packet(17, [198, 18, 1, 2], [192, 0, 2, 1], 53)).unwrap();
        assert_eq!((udp.protocol, udp.port), ("udp", 53));
        let icmp = parse_ipv4(&packet(1, [198, 18, 1, 2], [192, 0, 2, 1], 53)).unwrap();
        assert_eq!((icmp.protocol, icmp.port), ("icmp", 0));
    }

    #[test]
    fn short_or_foreign_packets_are_not_read() {
        assert_eq!(parse_ipv4(&[0x45; 19]), None);
        let mut v6 = packet(6, [1, 2, 3, 4], [5, 6, 7, 8], 1);
        v6[0] = 0x60;
        assert_eq!(parse_ipv4(&v6), None);
        // Cut before the ports (the copy range is 24 bytes: options leave no room).
        let mut options = packet(6, [1, 2, 3, 4], [5, 6, 7, 8], 443);
        options[0] = 0x46;
        assert_eq!(parse_ipv4(&options[..24]).map(|r| r.port), Some(0));
        // A header length under 20 bytes is no IPv4 header.
        let mut short = packet(6, [1, 2, 3, 4], [5, 6, 7, 8], 443);
        short[0] = 0x44;
        assert_eq!(parse_ipv4(&short), None);
        // A later fragment: no ports in it.
        let mut fragment = packet(17, [1, 2, 3, 4], [5, 6, 7, 8], 53);
        fragment[7] = 0x10;
        assert_eq!(parse_ipv4(&fragment).map(|r| r.port), Some(0));
    }
}
