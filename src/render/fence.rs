//! `# BEGIN pinetboot` … `# END pinetboot` blocks inside files others own (`/etc/fstab`, a
//! client's `etc/hosts`). Bytes outside the fence never change.

/// The opening fence line.
pub const BEGIN: &str = "# BEGIN pinetboot";
/// The closing fence line.
pub const END: &str = "# END pinetboot";

/// Where the fenced block sits: byte range of the whole block including fences.
fn find(text: &str) -> Option<(usize, usize)> {
    let mut offset = 0;
    let mut start = None;
    for line in text.split_inclusive('\n') {
        let bare = line.trim_end_matches(['\n', '\r']);
        if start.is_none() && bare == BEGIN {
            start = Some(offset);
        } else if let Some(s) = start
            && bare == END
        {
            return Some((s, offset + line.len()));
        }
        offset += line.len();
    }
    None
}

/// The lines inside the block, if there is one.
pub fn extract(text: &str) -> Option<Vec<String>> {
    let (s, e) = find(text)?;
    let block = &text[s..e];
    let lines: Vec<String> = block.lines().map(str::to_owned).collect();
    Some(lines[1..lines.len().saturating_sub(1)].to_vec())
}

/// `text` with the block replaced by `lines` (appended when absent; removed when `lines` is
/// empty). Everything outside the block is kept byte for byte.
pub fn splice(text: &str, lines: &[String]) -> String {
    let mut block = String::new();
    if !lines.is_empty() {
        block.push_str(BEGIN);
        block.push('\n');
        for l in lines {
            block.push_str(l);
            block.push('\n');
        }
        block.push_str(END);
        block.push('\n');
    }
    match find(text) {
        Some((s, e)) => format!("{}{}{}", &text[..s], block, &text[e..]),
        None if block.is_empty() => text.to_owned(),
        None => {
            let sep = if text.is_empty() || text.ends_with('\n') {
                ""
            } else {
                "\n"
            };
            format!("{text}{sep}{block}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn appends_replaces_and_removes() {
        let base = "proc /proc proc defaults 0 0";
        let one = splice(base, &["a b".into()]);
        assert_eq!(
            one,
            "proc /proc proc defaults 0 0\n# BEGIN pinetboot\na b\n# END pinetboot\n"
        );
        let two = splice(&one, &["c d".into()]);
        assert_eq!(
            two,
            "proc /proc proc defaults 0 0\n# BEGIN pinetboot\nc d\n# END pinetboot\n"
        );
        assert_eq!(extract(&two), Some(vec!["c d".to_string()]));
        assert_eq!(splice(&two, &[]), "proc /proc proc defaults 0 0\n");
    }

    proptest! {
        #[test]
        fn bytes_outside_the_fence_survive(
            before in "[a-z /#\n]{0,80}",
            after in "[a-z /#\n]{0,80}",
            a in proptest::collection::vec("[a-z0-9 /]{1,20}", 0..4),
            b in proptest::collection::vec("[a-z0-9 /]{1,20}", 1..4),
        ) {
            prop_assume!(!before.contains("BEGIN") && !after.contains("BEGIN"));
            let before = if before.is_empty() || before.ends_with('\n') { before } else { format!("{before}\n") };
            let text = format!("{before}{BEGIN}\n{}{END}\n{after}", a.iter().map(|l| format!("{l}\n")).collect::<String>());
            let out = splice(&text, &b);
            prop_assert!(out.starts_with(&before));
            prop_assert!(out.ends_with(&after));
            prop_assert_eq!(extract(&out), Some(b.clone()));
            prop_assert_eq!(splice(&out, &b), out.clone());
        }
    }
}
