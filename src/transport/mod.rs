//! How matrixctl reaches a host. Every transport runs the same POSIX shell
//! program (`remote/*.sh` joined, plus a generated `main`), sent on stdin: the local
//! transport runs it with `sh` on this machine, the SSH transport on the
//! host. One program per plan, one more per apply: never one per file.

pub(crate) mod functions;
pub(crate) mod local;
pub(crate) mod program;
pub(crate) mod ssh;

use std::sync::Arc;

use anyhow::Result;

use crate::inventory::{Connection, Host};
use ssh::{Ssh, SshSettings};

/// What the program printed and how it ended.
#[derive(Debug)]
pub(crate) struct Output {
    pub success: bool,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// The program never reached the host (no connection could be made, or
/// sudo refused to start it): nothing ran there. Any other error of a run
/// may have happened after the host received the whole program.
#[derive(Debug)]
pub(crate) struct NotSent(pub String);

impl std::fmt::Display for NotSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotSent {}

/// A way to run the program on one host.
#[derive(Debug, Clone)]
pub(crate) struct Transport {
    /// The host, as the inventory names it (for `-v`).
    name: String,
    kind: Kind,
}

#[derive(Debug, Clone)]
enum Kind {
    Local(local::Local),
    Ssh(Box<Ssh>),
}

impl Transport {
    /// The transport for `host`. Nothing connects until the first `run`.
    pub(crate) fn for_host(host: &Host, settings: &Arc<SshSettings>) -> Transport {
        let kind = match &host.connection {
            Connection::Local => Kind::Local(local::Local),
            Connection::Ssh(target) => Kind::Ssh(Box::new(Ssh::new(
                target.clone(),
                host.vars.ssh_options.clone(),
                host.vars.become_,
                settings.clone(),
            ))),
        };
        Transport {
            name: host.name.to_string(),
            kind,
        }
    }

    /// Runs `program` to completion on the host.
    pub(crate) async fn run(&self, program: String) -> Result<Output> {
        let started = std::time::Instant::now();
        let mut output = match &self.kind {
            Kind::Local(local) => local.run(program).await,
            Kind::Ssh(ssh) => ssh.run(program).await,
        }?;
        crate::trace::report(&self.name, &mut output.stderr, started.elapsed());
        Ok(output)
    }

    /// The same host through a new connection (for SSH, a new master), to
    /// prove a change did not cut matrixctl off.
    pub(crate) fn fresh(&self) -> Transport {
        let kind = match &self.kind {
            Kind::Local(local) => Kind::Local(local.clone()),
            Kind::Ssh(ssh) => Kind::Ssh(Box::new(ssh.fresh())),
        };
        Transport {
            name: self.name.clone(),
            kind,
        }
    }

    /// Closes the connection an earlier run kept to this host; whether
    /// there was one.
    pub(crate) async fn disconnect(&self) -> bool {
        match &self.kind {
            Kind::Ssh(ssh) => ssh.disconnect().await,
            Kind::Local(_) => false,
        }
    }

    /// Ends the run's use of the connection (a kept one stays open).
    pub(crate) async fn close(&self) {
        if let Kind::Ssh(ssh) = &self.kind {
            ssh.close().await;
        }
    }
}
