//! `/proc/self/mountinfo`, parsed by hand: procfs crates leave `\040` escapes undecoded.

/// One mount.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    /// Mount ID (changes on every remount: used to prove "nothing was remounted").
    pub id: u64,
    /// Parent mount ID.
    pub parent: u64,
    /// The path inside the source filesystem that is mounted here (shows bind sources).
    pub root: String,
    /// Where it is mounted.
    pub mount_point: String,
    /// Per-mount options (`ro,nosuid,nodev,noexec,relatime,nosymfollow`).
    pub options: String,
    /// Filesystem type.
    pub fstype: String,
}

impl Mount {
    /// Whether every option in `wanted` is among this mount's per-mount options.
    pub fn has_options(&self, wanted: &[&str]) -> bool {
        let have: Vec<&str> = self.options.split(',').collect();
        wanted.iter().all(|w| have.contains(w))
    }
}

/// Decodes mountinfo's octal escapes (`\040` space, `\011` tab, `\012` newline, `\134` `\`).
pub fn unescape(field: &str) -> String {
    let b = field.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c))
        {
            let v = (b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0');
            out.push(v);
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses mountinfo text; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<Mount> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<Mount> {
    let (left, right) = line.split_once(" - ")?;
    let mut f = left.split(' ');
    let id = f.next()?.parse().ok()?;
    let parent = f.next()?.parse().ok()?;
    let _devno = f.next()?;
    let root = unescape(f.next()?);
    let mount_point = unescape(f.next()?);
    let options = f.next()?.to_owned();
    let fstype = right.split(' ').next()?.to_owned();
    Some(Mount {
        id,
        parent,
        root,
        mount_point,
        options,
        fstype,
    })
}

/// The mounts of this process's mount namespace.
pub fn read() -> std::io::Result<Vec<Mount>> {
    Ok(parse(&std::fs::read_to_string("/proc/self/mountinfo")?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_escaped_paths() {
        let text = "36 35 98:0 /mnt\\040a /tftp\\134x rw,noatime master:1 - ext3 /dev/root rw\n\
                    bogus line\n";
        let m = parse(text);
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].id, 36);
        assert_eq!(m[0].parent, 35);
        assert_eq!(m[0].root, "/mnt a");
        assert_eq!(m[0].mount_point, "/tftp\\x");
        assert_eq!(m[0].fstype, "ext3");
        assert_eq!(m[0].options, "rw,noatime");
    }

    #[test]
    fn unescape_leaves_other_backslashes() {
        assert_eq!(unescape("a\\0b"), "a\\0b");
        assert_eq!(unescape("a\\011b\\012"), "a\tb\n");
        assert_eq!(unescape("\\"), "\\");
    }
}
