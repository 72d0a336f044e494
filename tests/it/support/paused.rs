//! A pinetboot process stopped at a pause point, to be killed there (crash-safety tests).

use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::fixture::Env;
use super::tools::{bin, wait_until};

/// A pinetboot process stopped at a pause point (`PINETBOOT_PAUSE_AT`), to be killed there.
#[derive(Debug)]
pub struct Paused {
    child: Option<Child>,
}

impl Paused {
    /// Starts `pinetboot --root R --config C ARGS…` in the env's namespace (nsenter execs it:
    /// the child's pid is pinetboot's own) with `PINETBOOT_PAUSE_AT=label` and `vars`, and
    /// waits until it has stopped itself at that point. Panics if it ends first.
    pub fn start(env: &Env, label: &str, vars: &[(&str, &str)], args: &[&str]) -> Paused {
        let log = env.tmp.path().join(format!("paused-at-{label}.stderr"));
        let mut cmd = Command::new("nsenter");
        cmd.args(["-t", &env.ns.pid().to_string(), "-m", "--", bin()])
            .arg("--root")
            .arg(&env.root)
            .arg("--config")
            .arg(&env.config)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("creating the stderr file"))
            .env("NO_COLOR", "1")
            .env_remove("PINETBOOT_CRASH_AT")
            .env_remove("PINETBOOT_CONFIG")
            .env_remove("PINETBOOT_LOG")
            .env("PINETBOOT_PAUSE_AT", label);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("starting pinetboot under nsenter");
        let pid = child.id();
        let stopped = wait_until(Duration::from_secs(300), || {
            if let Ok(Some(status)) = child.try_wait() {
                let err = std::fs::read_to_string(&log).unwrap_or_default();
                panic!("pinetboot {args:?} ended ({status}) before pause point {label}:\n{err}");
            }
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| s.rsplit_once(") ").map(|(_, rest)| rest.starts_with('T')))
                .unwrap_or(false)
        });
        assert!(
            stopped,
            "pinetboot {args:?} did not reach pause point {label}"
        );
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        assert_eq!(comm.trim(), "pinetboot", "pid {pid} is not pinetboot");
        Paused { child: Some(child) }
    }

    /// Kills it with SIGKILL (by its pid) and reaps it.
    pub fn kill(mut self) {
        let mut child = self.child.take().expect("not killed yet");
        let pid = child.id();
        let out = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .output()
            .expect("running kill");
        assert!(out.status.success(), "kill -KILL {pid}: {out:?}");
        let status = child.wait().expect("reaping pinetboot");
        assert_eq!(
            status.signal(),
            Some(9),
            "pinetboot {pid} ended with {status}"
        );
    }
}

impl Drop for Paused {
    fn drop(&mut self) {
        // A failed test never leaves a stopped pinetboot (holding the lock) behind.
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
