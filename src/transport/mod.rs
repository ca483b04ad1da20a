//! How matrixctl reaches a host. Every transport runs the same POSIX shell
//! program (`remote.sh` plus a generated `main`), sent on stdin: the local
//! transport runs it with `sh` on this machine, the SSH transport on the
//! host. One program per plan, one more per apply: never one per file.

pub mod local;
pub mod program;
pub mod ssh;

use std::sync::Arc;

use anyhow::Result;

use crate::inventory::{Connection, Host};
use ssh::{Ssh, SshSettings};

/// What the program printed and how it ended.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// The program never reached the host (no connection could be made, or
/// sudo refused to start it): nothing ran there. Any other error of a run
/// may have happened after the host received the whole program.
#[derive(Debug)]
pub struct NotSent(pub String);

impl std::fmt::Display for NotSent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for NotSent {}

/// A way to run the program on one host.
#[derive(Debug, Clone)]
pub enum Transport {
    Local(local::Local),
    Ssh(Box<Ssh>),
}

impl Transport {
    /// The transport for `host`. Nothing connects until the first `run`.
    pub fn for_host(host: &Host, settings: &Arc<SshSettings>) -> Transport {
        match &host.connection {
            Connection::Local => Transport::Local(local::Local),
            Connection::Ssh(target) => Transport::Ssh(Box::new(Ssh::new(
                target.clone(),
                host.vars.ssh_options.clone(),
                host.vars.become_,
                settings.clone(),
            ))),
        }
    }

    /// Runs `program` to completion on the host.
    pub async fn run(&self, program: String) -> Result<Output> {
        match self {
            Transport::Local(local) => local.run(program).await,
            Transport::Ssh(ssh) => ssh.run(program).await,
        }
    }

    /// The same host through a new connection (for SSH, a new master), to
    /// prove a change did not cut matrixctl off.
    pub fn fresh(&self) -> Transport {
        match self {
            Transport::Local(local) => Transport::Local(local.clone()),
            Transport::Ssh(ssh) => Transport::Ssh(Box::new(ssh.fresh())),
        }
    }

    /// Ends the connection, if there is one.
    pub async fn close(&self) {
        if let Transport::Ssh(ssh) = self {
            ssh.close().await;
        }
    }
}
