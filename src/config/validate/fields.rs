//! Checks of single values that several sections share: addresses, host paths, names.

use std::net::Ipv4Addr;

use super::Checker;

pub(super) fn ipv4(c: &mut Checker<'_>, path: &str, text: &str) -> Option<Ipv4Addr> {
    match text.parse::<Ipv4Addr>() {
        Ok(a) => Some(a),
        Err(_) => {
            let hint = if text.contains('/') {
                "an address has no /prefix; the network goes in server.network"
            } else {
                "write an IPv4 address in dotted form, e.g. 192.168.2.51"
            };
            c.at_value(path, format!("`{text}` is not an IPv4 address"), hint);
            None
        }
    }
}

/// An absolute, normalised host path: no `.`/`..`/empty components, no control characters.
pub(super) fn clean_abs_path(p: &str) -> Result<(), &'static str> {
    if !p.starts_with('/') {
        return Err("is not an absolute path");
    }
    if p.chars().any(char::is_control) {
        return Err("contains control characters");
    }
    let rest = p.trim_start_matches('/');
    if rest.is_empty() {
        return Err("is the root folder");
    }
    if has_odd_component(rest) {
        return Err("is not normalised (empty, `.` or `..` components)");
    }
    Ok(())
}

pub(super) fn check_path(c: &mut Checker<'_>, field: &str, p: &str) {
    if let Err(why) = clean_abs_path(p) {
        c.at_value(
            field,
            format!("`{p}` {why}"),
            "write an absolute host path such as /srv/firmware/start4.elf (it is resolved under --root)",
        );
    }
}

/// A name usable as one path component and as a hostname label.
pub(super) fn safe_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("is empty");
    }
    if name.len() > 63 {
        return Err("is longer than 63 characters");
    }
    if name.chars().any(char::is_control) {
        return Err("contains control characters");
    }
    if name.contains('/') {
        return Err("contains `/`");
    }
    if name.starts_with('.') {
        return Err("starts with a dot");
    }
    if name.starts_with('-') || name.ends_with('-') {
        return Err("starts or ends with a dash");
    }
    if !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
        return Err("may hold only letters, digits and dashes");
    }
    Ok(())
}

/// A relative path inside a folder: no `..`, not absolute, no empty components.
pub(super) fn safe_relative(rel: &str) -> Result<(), &'static str> {
    if rel.is_empty() || rel.starts_with('/') {
        return Err("is not a relative path");
    }
    if rel.chars().any(char::is_control) {
        return Err("contains control characters");
    }
    if has_odd_component(rel) {
        return Err("has empty, `.` or `..` components");
    }
    Ok(())
}

/// Whether a `/`-separated path has an empty, `.` or `..` component.
fn has_odd_component(path: &str) -> bool {
    path.split('/')
        .any(|seg| seg.is_empty() || seg == "." || seg == "..")
}
