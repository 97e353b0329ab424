//! Network faults without `tc netem` (its kernel module is not available on
//! the test machines): network namespaces joined to the host by a veth pair,
//! cut by taking the host end's link down, and an address of the case's own
//! on the host's loopback for the services the namespaces reach.
//!
//! Every name and address is random per case, so cases run in parallel, and
//! everything is removed again when dropped. Needs root and `ip` (iproute2).

use std::process::{Command, Stdio};

use anyhow::{Context as _, bail};

fn ip(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()
        .context("running `ip` (iproute2)")?;
    if !out.status.success() {
        bail!(
            "`ip {}`: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Whether network namespaces can be made here (root, iproute2).
#[must_use]
pub fn available() -> bool {
    let name = format!("orxprobe{}", rand::random::<u32>() % 100_000);
    let made = ip(&["netns", "add", &name]).is_ok();
    if made {
        let _ = ip(&["netns", "del", &name]);
    }
    made
}

/// A random `/30` in `10.232.0.0/16`: (host side, namespace side).
fn random_pair() -> (String, String) {
    let n: u16 = rand::random::<u16>() & 0x3fff;
    let (third, fourth) = (n >> 6, (n & 0x3f) * 4);
    (
        format!("10.232.{third}.{}", fourth + 1),
        format!("10.232.{third}.{}", fourth + 2),
    )
}

/// An address of this case's own on the host's loopback (`10.233.x.y/32`),
/// reachable from every [`Netns`] through its default route. Removed when
/// dropped.
#[derive(Debug)]
pub struct HostAddr {
    addr: String,
}

impl HostAddr {
    /// Adds a random address to `lo`.
    ///
    /// # Errors
    /// When `ip addr add` fails.
    pub fn add() -> anyhow::Result<Self> {
        let n: u16 = rand::random::<u16>() | 1;
        let addr = format!("10.233.{}.{}", n >> 8, (n & 0xff).clamp(1, 254));
        ip(&["addr", "add", &format!("{addr}/32"), "dev", "lo"])?;
        Ok(Self { addr })
    }

    /// The address.
    #[must_use]
    pub fn addr(&self) -> &str {
        &self.addr
    }
}

impl Drop for HostAddr {
    fn drop(&mut self) {
        let _ = ip(&["addr", "del", &format!("{}/32", self.addr), "dev", "lo"]);
    }
}

/// A network namespace joined to the host by a veth pair: the namespace
/// reaches the host's addresses (its default route is the host end), the
/// host reaches the namespace's address. [`cut`](Self::cut) takes the host
/// end's link down (a partition: packets are dropped both ways, TCP
/// connections stay open and time out or resume), [`heal`](Self::heal)
/// brings it up. Deleted (with its processes' sockets) when dropped.
#[derive(Debug)]
pub struct Netns {
    name: String,
    host_if: String,
    host_addr: String,
    ns_addr: String,
}

impl Netns {
    /// Makes a namespace with a random name and a random `/30`.
    ///
    /// # Errors
    /// When an `ip` command fails (not root, no iproute2).
    pub fn new() -> anyhow::Result<Self> {
        let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        let (host_addr, ns_addr) = random_pair();
        let ns = Self {
            name: format!("orxchaos{tag}"),
            host_if: format!("orxh{tag}"),
            host_addr,
            ns_addr,
        };
        let peer = format!("orxn{tag}");
        ip(&["netns", "add", &ns.name])?;
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer,
        ])?;
        ip(&["link", "set", &peer, "netns", &ns.name])?;
        ip(&[
            "addr",
            "add",
            &format!("{}/30", ns.host_addr),
            "dev",
            &ns.host_if,
        ])?;
        ip(&["link", "set", &ns.host_if, "up"])?;
        let inside = |args: &[&str]| {
            let mut all = vec!["-n", ns.name.as_str()];
            all.extend_from_slice(args);
            ip(&all)
        };
        inside(&["addr", "add", &format!("{}/30", ns.ns_addr), "dev", &peer])?;
        inside(&["link", "set", &peer, "up"])?;
        inside(&["link", "set", "lo", "up"])?;
        inside(&["route", "add", "default", "via", &ns.host_addr])?;
        Ok(ns)
    }

    /// The namespace's name (for `ip netns exec`).
    #[must_use]
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The namespace's own address (reachable from the host).
    #[must_use]
    pub fn addr(&self) -> &str {
        &self.ns_addr
    }

    /// A command that runs `program` inside the namespace.
    #[must_use]
    pub fn command(&self, program: impl AsRef<std::ffi::OsStr>) -> tokio::process::Command {
        let mut command = tokio::process::Command::new("ip");
        command
            .args(["netns", "exec", &self.name])
            .arg(program.as_ref());
        command
    }

    /// Cuts the namespace off: the host end of the veth pair goes down.
    ///
    /// # Errors
    /// When `ip link set down` fails.
    pub fn cut(&self) -> anyhow::Result<()> {
        ip(&["link", "set", &self.host_if, "down"])
    }

    /// Joins it again: the host end goes up.
    ///
    /// # Errors
    /// When `ip link set up` fails.
    pub fn heal(&self) -> anyhow::Result<()> {
        ip(&["link", "set", &self.host_if, "up"])
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = ip(&["link", "del", &self.host_if]);
        let _ = ip(&["netns", "del", &self.name]);
    }
}
