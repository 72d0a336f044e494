//! The report as a table (`status`), as JSON (`status --json`), and as YAML stanzas to paste
//! (`discover`).

use super::fold::Status;
use crate::config::Valid;

/// `status --json`: pretty, with a trailing newline.
pub fn render_json(s: &Status) -> String {
    serde_json::to_string_pretty(s).expect("status serialises") + "\n"
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn table(rows: &[Vec<String>]) -> String {
    let cols = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..cols)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|c| c.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        let mut line = String::new();
        for (i, c) in r.iter().enumerate() {
            if i + 1 == r.len() {
                line.push_str(c);
            } else {
                line.push_str(&format!("{c:<w$}  ", w = widths[i]));
            }
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The report as a table for a terminal (`printer` adds colour where it may).
pub fn render_text(s: &Status, printer: &crate::output::Printer) -> String {
    use crate::output::Style;
    let mut out = String::new();
    for line in crate::plan::origin_lines(s.server.as_deref(), None, s.source.as_ref()) {
        out.push_str(&line);
        out.push('\n');
    }
    out.push_str(&format!("Log: {}\n", s.log.describe()));
    if let Some(note) = &s.log.note {
        out.push_str(&printer.paint(Style::Warn, &format!("note: {note}")));
        out.push('\n');
    }
    out.push('\n');
    let mut rows = vec![
        [
            "CLIENT",
            "SERIAL",
            "MAC",
            "LAST DHCP",
            "BOOT MENU",
            "LAST FILE",
            "WHEN",
            "TO",
            "COUNTS",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for c in &s.clients {
        let mac = c.mac.clone().unwrap_or_else(|| "-".into());
        if !c.seen {
            rows.push(vec![
                c.name.clone(),
                c.serial.clone(),
                mac,
                "never seen".into(),
            ]);
            continue;
        }
        let (dhcp, menu) = match &c.dhcp {
            Some(d) => (
                format!("{} {}", d.time.as_deref().unwrap_or("?"), d.exchange),
                match d.boot_menu {
                    Some(true) => "offered".into(),
                    Some(false) => "not offered".into(),
                    None => "?".into(),
                },
            ),
            None if c.mac.is_none() => ("(no MAC declared)".into(), "-".into()),
            None => ("-".into(), "-".into()),
        };
        let (file, when, to, counts) = match &c.tftp {
            Some(t) => {
                let (file, when, to) = match &t.last_file {
                    Some(f) => (
                        f.file.clone(),
                        f.time.clone().unwrap_or_else(|| "?".into()),
                        f.ip.clone(),
                    ),
                    None => (
                        "(none)".into(),
                        t.last_seen.clone().unwrap_or_else(|| "?".into()),
                        t.last_ip.clone().unwrap_or_else(|| "?".into()),
                    ),
                };
                let counts = format!(
                    "{} sent, {}, {}, {} not found",
                    t.sent,
                    plural(t.probes, "probe", "probes"),
                    plural(t.failed, "failed", "failed"),
                    t.not_found
                );
                (file, when, to, counts)
            }
            None => (
                "(no TFTP request)".into(),
                "-".into(),
                "-".into(),
                "-".into(),
            ),
        };
        rows.push(vec![
            c.name.clone(),
            c.serial.clone(),
            mac,
            dhcp,
            menu,
            file,
            when,
            to,
            counts,
        ]);
    }
    let t = table(&rows);
    let mut lines = t.lines();
    if let Some(head) = lines.next() {
        out.push_str(&printer.paint(Style::Bold, head));
        out.push('\n');
    }
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
    if !s.undeclared.is_empty() {
        out.push('\n');
        out.push_str(&printer.paint(
            Style::Warn,
            &format!(
                "{} not declared asked for files (see `pinetboot discover`):",
                plural(s.undeclared.len(), "Pi", "Pis")
            ),
        ));
        out.push('\n');
        for u in &s.undeclared {
            out.push_str(&format!(
                "  {} from {} at {}{}\n",
                u.serial,
                u.ip.as_deref().unwrap_or("?"),
                u.time.as_deref().unwrap_or("?"),
                u.mac
                    .as_ref()
                    .map(|m| format!(" (MAC {m})"))
                    .unwrap_or_default()
            ));
        }
    }
    out
}

/// `discover`: YAML stanzas to paste under `clients:` (two-space indent), one per
/// undeclared serial. `image_hint` is written into each stanza (give it when the config has
/// no `defaults.image`, so the stanza validates as pasted).
pub fn render_discover(s: &Status, valid: &Valid, image_hint: Option<&str>) -> String {
    if s.undeclared.is_empty() {
        return format!(
            "# No undeclared Raspberry Pi asked for files ({}).\n",
            s.log.describe()
        );
    }
    let mut out = String::from(
        "# Raspberry Pis that asked for files but are not declared; paste under `clients:`.\n",
    );
    let mut taken: Vec<String> = valid.clients.keys().cloned().collect();
    for u in &s.undeclared {
        let base = format!("pi-{}", u.serial);
        let mut name = base.clone();
        let mut n = 2;
        while taken.contains(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        taken.push(name.clone());
        let seen = format!(
            "seen {} from {}",
            u.time.as_deref().unwrap_or("?"),
            u.ip.as_deref().unwrap_or("?")
        );
        out.push_str(&format!("  {name}:\n"));
        match (&u.mac, &u.mac_declared_for) {
            (Some(mac), None) => {
                out.push_str(&format!("    serial: {}\n", u.serial));
                out.push_str(&format!("    mac: {mac}  # {seen}\n"));
            }
            (Some(mac), Some(other)) => {
                out.push_str(&format!("    serial: {}  # {seen}\n", u.serial));
                out.push_str(&format!(
                    "    # mac {mac} is already declared for client `{other}`\n"
                ));
            }
            (None, _) => {
                out.push_str(&format!(
                    "    serial: {}  # {seen}; MAC not in the log\n",
                    u.serial
                ));
            }
        }
        if let Some(image) = image_hint {
            out.push_str(&format!("    image: {image}\n"));
        }
        // In a fleet, the Pi asked this server: place it here.
        if let Some(server) = &valid.server {
            out.push_str(&format!("    server: {server}\n"));
        }
    }
    out
}
