//! Hosts for tests: Linux network namespaces made by the test (`ip netns`,
//! from Debian's iproute2, which `scripts/test.sh` installs; it needs
//! root). One host, `sched`, holds a bridge; the others are joined to it
//! by veth pairs, each with its own address.
#![allow(dead_code)]

use std::process::{Child, Command, Stdio};

fn ip(args: &[&str]) {
    let out = Command::new("ip")
        .args(args)
        .output()
        .expect("`ip` (Debian's iproute2) makes the test's hosts: scripts/test.sh installs it");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Network namespaces named after this process, deleted (with every
/// process started in them) when dropped.
pub struct Hosts {
    prefix: String,
    names: Vec<String>,
    children: Vec<Child>,
}

impl Hosts {
    /// The host `sched` with a bridge at `bridge_ip`, and one
    /// host per `(name, address)` joined to it by a veth pair.
    pub fn new(bridge_ip: &str, hosts: &[(&str, &str)]) -> Self {
        let mut made = Self {
            prefix: format!("spate{}", std::process::id()),
            names: Vec::new(),
            children: Vec::new(),
        };
        let sched = made.add("sched");
        ip(&["-n", &sched, "link", "set", "lo", "up"]);
        ip(&["-n", &sched, "link", "add", "br0", "type", "bridge"]);
        ip(&[
            "-n",
            &sched,
            "addr",
            "add",
            &format!("{bridge_ip}/24"),
            "dev",
            "br0",
        ]);
        ip(&["-n", &sched, "link", "set", "br0", "up"]);
        for (name, address) in hosts {
            let ns = made.add(name);
            let port = format!("to-{name}");
            ip(&["-n", &ns, "link", "set", "lo", "up"]);
            ip(&[
                "-n", &sched, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", &ns,
            ]);
            ip(&["-n", &sched, "link", "set", &port, "master", "br0"]);
            ip(&["-n", &sched, "link", "set", &port, "up"]);
            ip(&[
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{address}/24"),
                "dev",
                "eth0",
            ]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        }
        made
    }

    fn add(&mut self, name: &str) -> String {
        let ns = format!("{}-{name}", self.prefix);
        // A namespace of an earlier run of this process id.
        let _ = Command::new("ip")
            .args(["netns", "del", &ns])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", &ns]);
        self.names.push(ns.clone());
        ns
    }

    /// `program args` on host `name`.
    pub fn command(&self, name: &str, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &format!("{}-{name}", self.prefix), program]);
        cmd
    }

    /// Starts `cmd`; it is killed when the hosts go.
    pub fn spawn(&mut self, mut cmd: Command) {
        // `ip netns exec` runs the program in its own place: its pid is the
        // program's. Standard input is a pipe from here, so spate's roles
        // (`--exit-with-stdin`) also end if this test is killed.
        let child = cmd.stdin(Stdio::piped()).spawn().unwrap();
        self.children.push(child);
    }
}

impl Drop for Hosts {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
        for ns in &self.names {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}
