//! Rendering doctor's findings: readable text for a terminal (✔/!/✘ with colour, `ok`/`warn`/
//! `FAIL` in plain output) and versioned JSON for scripts.

use serde::Serialize;

use super::checks::counts;
use super::{Finding, Severity};
use crate::output::{Printer, Style};

/// The JSON format's version; bumped on any incompatible change.
pub const JSON_FORMAT_VERSION: u32 = 1;

/// The findings as text.
pub fn render_text(findings: &[Finding], p: &Printer) -> String {
    let mut out = String::new();
    for f in findings {
        let mark = match (f.severity, p.color()) {
            (Severity::Ok, true) => p.paint(Style::Add, "✔"),
            (Severity::Warning, true) => p.paint(Style::Warn, "!"),
            (Severity::Problem, true) => p.paint(Style::Remove, "✘"),
            (Severity::Ok, false) => "ok  ".to_owned(),
            (Severity::Warning, false) => "warn".to_owned(),
            (Severity::Problem, false) => "FAIL".to_owned(),
        };
        let indent = if p.color() { "  " } else { "     " };
        let mut lines = f.detail.lines();
        out.push_str(&format!(
            "{mark} {}: {}\n",
            p.paint(Style::Bold, &f.check),
            lines.next().unwrap_or_default()
        ));
        for l in lines {
            out.push_str(&format!("{indent}{l}\n"));
        }
        if let Some(fix) = &f.fix {
            out.push_str(&format!("{indent}{} {fix}\n", p.paint(Style::Bold, "fix:")));
        }
    }
    let (ok, warn, problem) = counts(findings);
    let plural =
        |n: usize, one: &str, many: &str| format!("{n} {}", if n == 1 { one } else { many });
    out.push_str(&format!(
        "\n{}, {}, {}.\n",
        plural(ok, "check ok", "checks ok"),
        plural(warn, "warning", "warnings"),
        plural(problem, "problem", "problems")
    ));
    out
}

#[derive(Serialize)]
struct Json<'a> {
    format_version: u32,
    summary: Summary,
    findings: &'a [Finding],
}

#[derive(Serialize)]
struct Summary {
    ok: usize,
    warning: usize,
    problem: usize,
}

/// The findings as JSON: `{"format_version": 1, "summary": {"ok", "warning", "problem"},
/// "findings": [{"id", "severity", "check", "detail", "fix"?}]}`.
pub fn render_json(findings: &[Finding]) -> String {
    let (ok, warning, problem) = counts(findings);
    let mut s = serde_json::to_string_pretty(&Json {
        format_version: JSON_FORMAT_VERSION,
        summary: Summary {
            ok,
            warning,
            problem,
        },
        findings,
    })
    .expect("findings serialise");
    s.push('\n');
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<Finding> {
        vec![
            Finding::ok("a", "dnsmasq is running", "pid 1"),
            Finding::warning("b", "plan is empty", "2 changes:\n+ x\n~ y", "apply"),
            Finding::problem("c", "NFS runs", "not mounted", "start it"),
        ]
    }

    #[test]
    fn plain_text() {
        let t = render_text(&sample(), &Printer::plain());
        assert_eq!(
            t,
            "ok   dnsmasq is running: pid 1\n\
             warn plan is empty: 2 changes:\n     + x\n     ~ y\n     fix: apply\n\
             FAIL NFS runs: not mounted\n     fix: start it\n\
             \n1 check ok, 1 warning, 1 problem.\n"
        );
    }

    #[test]
    fn json() {
        let v: serde_json::Value = serde_json::from_str(&render_json(&sample())).unwrap();
        assert_eq!(v["format_version"], 1);
        assert_eq!(v["summary"]["problem"], 1);
        assert_eq!(v["findings"][2]["severity"], "problem");
        assert_eq!(v["findings"][2]["fix"], "start it");
        assert!(v["findings"][0].get("fix").is_none());
    }
}
