//! Making command output deterministic for insta snapshots: temporary paths become
//! placeholders, generated SSH host keys become `[HOST KEY]`.
//!
//! Review a changed snapshot with `cargo insta review` (or accept all with
//! `INSTA_UPDATE=always cargo test`); with `CI=true` a mismatch fails the test.

use std::path::Path;

/// `text` with each `(path, placeholder)` replaced (longest path first, so a folder inside
/// another is named by its own placeholder) and every ed25519 key that is not one of the
/// fixture's configured keys replaced by `[HOST KEY]`.
pub fn redact(text: &str, paths: &[(&Path, &str)]) -> String {
    let mut paths: Vec<(String, &str)> = paths
        .iter()
        .map(|(p, name)| (p.to_string_lossy().into_owned(), *name))
        .collect();
    paths.sort_by_key(|(p, _)| std::cmp::Reverse(p.len()));
    let mut out = text.to_owned();
    for (p, name) in paths {
        out = out.replace(&p, name);
    }
    redact_host_keys(&out)
}

/// Replaces the base64 of every `ssh-ed25519` key other than the fixture's configured ones
/// (generated per client at apply, so different every run) by `[HOST KEY]`.
pub fn redact_host_keys(text: &str) -> String {
    const TAG: &str = "ssh-ed25519 ";
    let fixed: Vec<&str> = [super::fixture::KEY1, super::fixture::KEY2, EXAMPLE_KEY]
        .iter()
        .filter_map(|k| k.split_whitespace().nth(1))
        .collect();
    replace_words_after(
        text,
        TAG,
        |c| c.is_ascii_alphanumeric() || "+/=".contains(c),
        |key| !key.is_empty() && !fixed.contains(&key),
        "[HOST KEY]",
    )
}

/// Replaces the word (the longest run of `in_word` characters) after every `prefix` by
/// `placeholder` where `replace` says so, and keeps it otherwise.
fn replace_words_after(
    text: &str,
    prefix: &str,
    in_word: impl Fn(char) -> bool,
    replace: impl Fn(&str) -> bool,
    placeholder: &str,
) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(i) = rest.find(prefix) {
        let (before, after) = rest.split_at(i + prefix.len());
        out.push_str(before);
        let end = after.find(|c: char| !in_word(c)).unwrap_or(after.len());
        let word = &after[..end];
        out.push_str(if replace(word) { placeholder } else { word });
        rest = &after[end..];
    }
    out.push_str(rest);
    out
}

/// The key in `examples/single-pi.yaml`.
const EXAMPLE_KEY: &str =
    "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGV4YW1wbGUta2V5LW5vdC1yZWFsLXJlcGxhY2UtbWU admin@example";

/// Replaces every run of 10 digits (a Unix time of this century) by `[TIME]` and every
/// 64-character hex word (a digest over such a time) by `[SHA256]`: for output that embeds
/// the clock, such as a bootloader update's timestamp and its signature file.
pub fn redact_times_and_hashes(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut word = String::new();
    let flush = |word: &mut String, out: &mut String| {
        if word.len() == 10 && word.bytes().all(|b| b.is_ascii_digit()) {
            out.push_str("[TIME]");
        } else if word.len() == 64 && word.bytes().all(|b| b.is_ascii_hexdigit()) {
            out.push_str("[SHA256]");
        } else {
            out.push_str(word);
        }
        word.clear();
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            word.push(c);
        } else {
            flush(&mut word, &mut out);
            out.push(c);
        }
    }
    flush(&mut word, &mut out);
    out
}

/// Replaces the word (letters, digits, `-`, `_`) after every `prefix` by `placeholder` when
/// it starts with a digit: for process ids (`"pid "`) and names that carry one (`"pnb-"`, the
/// lab's namespaces).
pub fn redact_after(text: &str, prefix: &str, placeholder: &str) -> String {
    replace_words_after(
        text,
        prefix,
        |c| c.is_ascii_alphanumeric() || c == '-' || c == '_',
        |word| word.starts_with(|c: char| c.is_ascii_digit()),
        placeholder,
    )
}
