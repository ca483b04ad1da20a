//! How matrixctl reaches a host. Every transport runs the same POSIX shell
//! program (`remote.sh` plus a generated `main`), sent on stdin: the local
//! transport runs it with `sh` on this machine, the SSH transport on the
//! host. One program per plan, one more per apply: never one per file.

pub mod local;
pub mod program;

use anyhow::Result;

use crate::inventory::{Connection, Host};

/// What the program printed and how it ended.
#[derive(Debug)]
pub struct Output {
    pub success: bool,
    pub stdout: Vec<u8>,
    pub stderr: String,
}

/// A way to run the program on one host.
#[derive(Debug, Clone)]
pub enum Transport {
    Local(local::Local),
}

impl Transport {
    /// The transport for `host`, or why there is none yet.
    pub fn for_host(host: &Host) -> Result<Transport> {
        match &host.connection {
            Connection::Local => Ok(Transport::Local(local::Local)),
            Connection::Ssh(target) => anyhow::bail!(
                "cannot reach {}@{}:{}: the SSH transport is not built yet; use `connection: local` with a `root:` directory",
                target.user,
                target.host,
                target.port
            ),
        }
    }

    /// Runs `program` to completion on the host.
    pub async fn run(&self, program: String) -> Result<Output> {
        match self {
            Transport::Local(local) => local.run(program).await,
        }
    }
}
