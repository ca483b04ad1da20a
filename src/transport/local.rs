//! The local transport: the host is a directory on this machine (its
//! `root:`), and the program runs under this machine's `sh`.

use std::process::Stdio;

use anyhow::{Context, Result};
use tokio::io::AsyncWriteExt;

use super::Output;

#[derive(Debug, Clone)]
pub(crate) struct Local;

impl Local {
    pub(crate) async fn run(&self, program: String) -> Result<Output> {
        let mut child = tokio::process::Command::new("sh")
            .arg("-s")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start `sh` on this machine")?;
        let mut stdin = child.stdin.take().context("sh has no stdin")?;
        // Feed stdin while reading stdout, or a large program and a large
        // answer would wait on each other forever.
        let writer = tokio::spawn(async move {
            let result = stdin.write_all(program.as_bytes()).await;
            drop(stdin);
            result
        });
        let output = child.wait_with_output().await.context("waiting for `sh`")?;
        writer
            .await
            .context("feeding the program to `sh`")?
            .context("feeding the program to `sh`")?;
        Ok(Output {
            success: output.status.success(),
            stdout: output.stdout,
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }
}
