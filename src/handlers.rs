//! Daemon handlers fired by changes: the dnsmasq drop-in is checked by `dnsmasq --test` before
//! it is written, then dnsmasq is restarted; exports changes run `exportfs -ra`; fstab changes
//! run `systemctl daemon-reload`. With `--root` other than `/` the host's daemons are not ours:
//! those handlers are reported as skipped (the check still runs when dnsmasq is installed).

use std::process::Command;

use anyhow::Context as _;

use crate::host::{Host, tools};
use crate::resource::Handler;

/// Checks dnsmasq drop-in content with the real dnsmasq (`--test`) in a scratch folder.
pub fn dnsmasq_test(host_path: &str, content: &str) -> anyhow::Result<()> {
    let Some(dnsmasq) = tools::which("dnsmasq") else {
        tracing::warn!("dnsmasq is not installed: {host_path} was not checked with dnsmasq --test");
        return Ok(());
    };
    let dir = tempfile::tempdir().context("making a scratch folder for dnsmasq --test")?;
    std::fs::write(dir.path().join("pinetboot.conf"), content)?;
    tools::run(
        Command::new(dnsmasq)
            .arg("--test")
            .arg("--conf-file=/dev/null")
            .arg(format!("--conf-dir={},*.conf", dir.path().display())),
    )
    .with_context(|| format!("dnsmasq rejects the generated {host_path}; nothing was written"))?;
    Ok(())
}

/// What running a handler did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// It ran.
    Ran,
    /// It was not run, and why.
    Skipped(String),
}

/// Runs one handler on the host.
pub fn run(host: &Host, handler: Handler) -> anyhow::Result<Outcome> {
    if !host.is_real() {
        return Ok(Outcome::Skipped(format!(
            "--root is {}, not /: the host's daemons are left alone",
            host.root().display()
        )));
    }
    let systemd = tools::systemd_running();
    match handler {
        Handler::ReloadExports => {
            let exportfs = tools::which("exportfs")
                .context("exportfs is not installed (apt install nfs-kernel-server)")?;
            tools::run(Command::new(exportfs).arg("-ra"))?;
            Ok(Outcome::Ran)
        }
        Handler::RestartDnsmasq if systemd => {
            tools::run(Command::new("systemctl").args(["restart", "dnsmasq.service"]))?;
            Ok(Outcome::Ran)
        }
        Handler::RestartDnsmasq => Ok(Outcome::Skipped(
            "systemd is not running here: restart dnsmasq yourself".into(),
        )),
        Handler::DaemonReload if systemd => {
            tools::run(Command::new("systemctl").arg("daemon-reload"))?;
            Ok(Outcome::Ran)
        }
        Handler::DaemonReload => Ok(Outcome::Skipped("systemd is not running here".into())),
    }
}
