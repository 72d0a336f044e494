//! Setting keys in a `bootconf.txt` while keeping every other line byte for byte.
//!
//! The file has the syntax of `config.txt`: `KEY=VALUE` lines, `#` comments, and `[filter]`
//! lines that start conditional sections. Lines before the first filter (the top section)
//! and lines under `[all]` apply unconditionally. A `[config.txt]` line ends the bootloader
//! settings: what follows is appended to the OS's `config.txt` and is never touched here.

/// The unconditional sections of a config, and where new keys go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scope {
    /// Before the first filter line.
    Top,
    /// Under an `[all]` filter.
    All,
    /// Under any other filter: left alone.
    Conditional,
    /// From `[config.txt]` on: left alone.
    ConfigTxt,
}

/// One line split into its text and its ending (`"\n"`, `"\r\n"` or `""` at the end).
struct Line<'a> {
    text: &'a str,
    ending: &'a str,
}

/// Sets each `(key, value)` of `entries` in `base`.
///
/// Every `KEY=…` line of an unconditional section whose key is in `entries` becomes
/// `KEY=VALUE`; entries with no such line are appended, in the given order, after the last
/// non-blank line of the target section: the top section when it holds any setting or there
/// is no `[all]` section, else the first `[all]` section. The result ends in a newline.
pub(super) fn set_keys(base: &str, entries: &[(&'static str, String)]) -> String {
    let lines = split_lines(base);
    let scopes = scopes(&lines);
    let present = present_keys(&lines, &scopes, entries);
    let insert_at = insertion_point(&lines, &scopes);
    let mut out = String::with_capacity(base.len() + 32 * entries.len());
    for (index, (line, scope)) in lines.iter().zip(&scopes).enumerate() {
        if index == insert_at {
            append_missing(&mut out, entries, &present);
        }
        out.push_str(&rewrite_line(line, *scope, entries));
    }
    if insert_at >= lines.len() {
        append_missing(&mut out, entries, &present);
    }
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out
}

/// The value the last unconditional `KEY=…` line of `config` gives `key`, if any.
pub(super) fn unconditional_value<'a>(config: &'a str, key: &str) -> Option<&'a str> {
    let lines = split_lines(config);
    let scopes = scopes(&lines);
    lines
        .iter()
        .zip(&scopes)
        .filter(|(line, scope)| is_unconditional(**scope) && setting_key(line.text) == Some(key))
        .filter_map(|(line, _)| Some(line.text.split_once('=')?.1.trim()))
        .next_back()
}

/// Whether a line in `scope` applies on every board.
fn is_unconditional(scope: Scope) -> bool {
    matches!(scope, Scope::Top | Scope::All)
}

/// For each entry, whether an unconditional line already sets its key.
fn present_keys(
    lines: &[Line<'_>],
    scopes: &[Scope],
    entries: &[(&'static str, String)],
) -> Vec<bool> {
    entries
        .iter()
        .map(|(key, _)| {
            lines.iter().zip(scopes).any(|(line, scope)| {
                is_unconditional(*scope) && setting_key(line.text) == Some(*key)
            })
        })
        .collect()
}

/// The line with its value replaced if it sets one of `entries` unconditionally.
fn rewrite_line(line: &Line<'_>, scope: Scope, entries: &[(&'static str, String)]) -> String {
    let entry = setting_key(line.text)
        .filter(|_| is_unconditional(scope))
        .and_then(|key| entries.iter().find(|(name, _)| *name == key));
    match entry {
        Some((key, value)) => format!("{key}={value}{}", line.ending),
        None => format!("{}{}", line.text, line.ending),
    }
}

/// Appends `KEY=VALUE` lines for the entries no unconditional line sets.
fn append_missing(out: &mut String, entries: &[(&'static str, String)], present: &[bool]) {
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    for ((key, value), seen) in entries.iter().zip(present) {
        if !seen {
            out.push_str(key);
            out.push('=');
            out.push_str(value);
            out.push('\n');
        }
    }
}

/// Splits text into lines, keeping each line's ending apart from its text.
fn split_lines(text: &str) -> Vec<Line<'_>> {
    text.split_inclusive('\n')
        .map(|raw| {
            let body = raw.strip_suffix('\n').unwrap_or(raw);
            let text = body.strip_suffix('\r').unwrap_or(body);
            Line {
                text,
                ending: &raw[text.len()..],
            }
        })
        .collect()
}

/// The scope each line belongs to; a filter line belongs to the section it opens.
fn scopes(lines: &[Line<'_>]) -> Vec<Scope> {
    let mut scope = Scope::Top;
    lines
        .iter()
        .map(|line| {
            if scope != Scope::ConfigTxt
                && let Some(filter) = filter_name(line.text)
            {
                scope = match filter {
                    f if f.eq_ignore_ascii_case("all") => Scope::All,
                    f if f.eq_ignore_ascii_case("config.txt") => Scope::ConfigTxt,
                    _ => Scope::Conditional,
                };
            }
            scope
        })
        .collect()
}

/// For a filter line such as `[all]` or `[gpio7=0]`, the text between the brackets.
fn filter_name(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix('[')?;
    Some(inner.strip_suffix(']').unwrap_or(inner).trim())
}

/// The key of a `KEY=VALUE` line, or `None` for comments, blanks and filters.
fn setting_key(text: &str) -> Option<&str> {
    let text = text.trim_start();
    if text.starts_with('#') || text.starts_with('[') {
        return None;
    }
    let (key, _) = text.split_once('=')?;
    Some(key.trim())
}

/// How many lines come before the appended keys (0: at the very start).
fn insertion_point(lines: &[Line<'_>], scopes: &[Scope]) -> usize {
    let top_len = scopes
        .iter()
        .position(|scope| *scope != Scope::Top)
        .unwrap_or(scopes.len());
    let top_has_settings = lines
        .iter()
        .take(top_len)
        .any(|line| setting_key(line.text).is_some());
    let first_all = scopes.iter().position(|scope| *scope == Scope::All);
    let section = match first_all {
        Some(start) if !top_has_settings => start..section_end(scopes, start),
        _ => 0..top_len,
    };
    let start = section.start;
    lines
        .get(section)
        .and_then(|section| {
            section
                .iter()
                .rposition(|line| !line.text.trim().is_empty())
        })
        .map_or(start, |last| start + last + 1)
}

/// The index after the last line of the section whose filter line is at `start`.
fn section_end(scopes: &[Scope], start: usize) -> usize {
    scopes
        .iter()
        .enumerate()
        .skip(start + 1)
        .find(|(_, scope)| **scope != Scope::All)
        .map_or(scopes.len(), |(index, _)| index)
}
