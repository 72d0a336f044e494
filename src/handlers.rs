//! Daemon handlers fired by changes: the dnsmasq drop-in is checked by `dnsmasq --test` before
//! it is written, then dnsmasq is restarted; exports changes run `exportfs -ra`; fstab changes
//! run `systemctl daemon-reload`. With `--root` other than `/` the host's daemons are not ours:
//! those handlers are reported as skipped (the check still runs when dnsmasq is installed).

use std::path::Path;
use std::process::Command;

use anyhow::Context as _;

use crate::host::{Host, tools};
use crate::resource::Handler;

/// Checks dnsmasq drop-in content with the real dnsmasq (`--test`) in a folder of its own in
/// `scratch` (pinetboot's scratch space, [`crate::host::scratch`]).
pub fn dnsmasq_test(host_path: &str, content: &str, scratch: &Path) -> anyhow::Result<()> {
    let Some(dnsmasq) = tools::which("dnsmasq") else {
        tracing::warn!("dnsmasq is not installed: {host_path} was not checked with dnsmasq --test");
        return Ok(());
    };
    let dir = crate::host::scratch::tempdir(scratch, "dnsmasq --test")?;
    crate::host::scratch::populate(dir.path(), &[], &[("pinetboot.conf", content.as_bytes())])?;
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

/// What a handler does on a host, decided from the facts alone (no host access).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Run these commands, in order.
    Run(Vec<Vec<&'static str>>),
    /// Do nothing, and say why.
    Skip(String),
}

/// Decides what `handler` does: nothing under `--root` other than `/` (`real` false); where
/// systemd is PID 1, dnsmasq is restarted and the fstab re-read through `systemctl`; where it
/// is not, they are skipped with what to do by hand. `exportfs -ra` runs either way: it talks
/// to the kernel directly (nfs-server.service's own reload is `exportfs -r`, and fails when
/// the unit is not active), and updates `/var/lib/nfs/etab`, which nfsd reads when it starts.
pub fn decide(handler: Handler, real: bool, root: &std::path::Path, systemd: bool) -> Decision {
    if !real {
        return Decision::Skip(format!(
            "--root is {}, not /: the host's daemons are left alone",
            root.display()
        ));
    }
    match (handler, systemd) {
        (Handler::ReloadExports, _) => Decision::Run(vec![vec!["exportfs", "-ra"]]),
        (Handler::RestartDnsmasq, true) => {
            Decision::Run(vec![vec!["systemctl", "restart", "dnsmasq.service"]])
        }
        (Handler::RestartDnsmasq, false) => Decision::Skip(
            "systemd is not PID 1 here: restart dnsmasq yourself (e.g. `service dnsmasq restart`) so it reads the new drop-in".into(),
        ),
        (Handler::DaemonReload, true) => Decision::Run(vec![vec!["systemctl", "daemon-reload"]]),
        (Handler::DaemonReload, false) => Decision::Skip(
            "systemd is not PID 1 here: no mount units to regenerate (the bind mounts are made already)".into(),
        ),
    }
}

/// Runs one handler on the host.
pub fn run(host: &Host, handler: Handler) -> anyhow::Result<Outcome> {
    let systemd = host.is_real() && tools::systemd_running();
    match decide(handler, host.is_real(), host.root(), systemd) {
        Decision::Skip(why) => Ok(Outcome::Skipped(why)),
        Decision::Run(commands) => {
            for argv in commands {
                let program = tools::which(argv[0]).with_context(|| match argv[0] {
                    "exportfs" => {
                        "exportfs is not installed (apt install nfs-kernel-server)".to_owned()
                    }
                    p => format!("{p} is not installed"),
                })?;
                tools::run(Command::new(program).args(&argv[1..]))?;
            }
            Ok(Outcome::Ran)
        }
    }
}

#[cfg(test)]
mod decide_tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn under_another_root_nothing_runs() {
        for h in [
            Handler::ReloadExports,
            Handler::RestartDnsmasq,
            Handler::DaemonReload,
        ] {
            assert_eq!(
                decide(h, false, Path::new("/tmp/r"), true),
                Decision::Skip("--root is /tmp/r, not /: the host's daemons are left alone".into())
            );
        }
    }

    /// What runs on the real host, with systemd as PID 1 and without it: `exportfs -ra` either
    /// way; dnsmasq's restart and daemon-reload only through systemd.
    #[test]
    fn on_the_real_host() {
        let run = |argv: &[&'static str]| Decision::Run(vec![argv.to_vec()]);
        for (systemd, handler, want) in [
            (
                true,
                Handler::ReloadExports,
                Some(run(&["exportfs", "-ra"])),
            ),
            (
                false,
                Handler::ReloadExports,
                Some(run(&["exportfs", "-ra"])),
            ),
            (
                true,
                Handler::RestartDnsmasq,
                Some(run(&["systemctl", "restart", "dnsmasq.service"])),
            ),
            (
                true,
                Handler::DaemonReload,
                Some(run(&["systemctl", "daemon-reload"])),
            ),
            (false, Handler::RestartDnsmasq, None),
            (false, Handler::DaemonReload, None),
        ] {
            let got = decide(handler, true, Path::new("/"), systemd);
            match want {
                Some(want) => assert_eq!(got, want, "{handler:?}, systemd {systemd}"),
                None => assert!(
                    matches!(&got, Decision::Skip(m) if m.starts_with("systemd is not PID 1 here: ")),
                    "{handler:?}: {got:?}"
                ),
            }
        }
        assert!(
            matches!(decide(Handler::RestartDnsmasq, true, Path::new("/"), false), Decision::Skip(ref m) if m.starts_with("systemd is not PID 1 here: restart dnsmasq yourself"))
        );
    }
}
