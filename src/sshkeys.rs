//! Per-client SSH host keys and the `known_hosts` file that pins them.
//!
//! An image must not carry host keys (every Pi cloned from it would share them), and not every
//! image has a first-boot unit that generates them (Debian's raspi images need one of their
//! own; without keys `ssh.service` fails). So pinetboot generates one ed25519 host key per
//! client root that has none, in the client root, and writes the public halves of every
//! client's key into `known_hosts` on the server, so the admin can pin them
//! (`ssh -o UserKnownHostsFile=/var/lib/pinetboot/known_hosts root@raspi1`).

use ssh_key::rand_core::OsRng;
use ssh_key::{Algorithm, LineEnding, PrivateKey, PublicKey};

/// Where the host key lives in a client root (relative), and its public half.
pub const HOST_KEY: &str = "etc/ssh/ssh_host_ed25519_key";
/// The public half of [`HOST_KEY`].
pub const HOST_KEY_PUB: &str = "etc/ssh/ssh_host_ed25519_key.pub";

/// A new host key: (private key in OpenSSH format, public key line).
pub fn generate(comment: &str) -> anyhow::Result<(Vec<u8>, Vec<u8>)> {
    let mut key = PrivateKey::random(&mut OsRng, Algorithm::Ed25519)?;
    key.set_comment(comment);
    let private = key.to_openssh(LineEnding::LF)?;
    let public = key.public_key().to_openssh()? + "\n";
    Ok((private.as_bytes().to_vec(), public.into_bytes()))
}

/// The public line of an existing private key (to restore a missing `.pub`).
pub fn public_of(private: &[u8]) -> anyhow::Result<Vec<u8>> {
    let key = PrivateKey::from_openssh(private)?;
    Ok((key.public_key().to_openssh()? + "\n").into_bytes())
}

/// A public key file's key as `ALGORITHM BASE64` (comment dropped), if it is one. The file
/// comes from a client root, which the Pi's root owns: only a key that parses is used, and
/// it is re-encoded, so nothing else from the file reaches `known_hosts`.
pub fn sanitize_public(text: &[u8]) -> Option<String> {
    let line = std::str::from_utf8(text).ok()?.lines().next()?.trim();
    let key = PublicKey::from_openssh(line).ok()?;
    let mut key = key;
    key.set_comment("");
    Some(key.to_openssh().ok()?.trim().to_owned())
}

/// One client's entry in `known_hosts`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KnownHost {
    /// The client's name (for the comment line).
    pub client: String,
    /// Names and addresses the Pi is reached by (hostname, declared address).
    pub names: Vec<String>,
    /// Its public key, `ALGORITHM BASE64`.
    pub key: String,
}

/// The `known_hosts` file: one line per client with a key, sorted by client.
pub fn render_known_hosts(hosts: &[KnownHost]) -> String {
    let mut out = String::from(
        "# Managed by pinetboot: the SSH host keys of its clients (from each client root).\n\
         # ssh -o UserKnownHostsFile=THIS_FILE root@HOSTNAME\n",
    );
    let mut hosts = hosts.to_vec();
    hosts.sort_by(|a, b| a.client.cmp(&b.client));
    for h in hosts {
        out.push_str(&format!("{} {}\n", h.names.join(","), h.key));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_keys_round_trip() {
        let (private, public) = generate("root@raspi1").unwrap();
        assert!(
            std::str::from_utf8(&private)
                .unwrap()
                .starts_with("-----BEGIN OPENSSH PRIVATE KEY-----\n")
        );
        let public = String::from_utf8(public).unwrap();
        assert!(public.starts_with("ssh-ed25519 AAAA"), "{public}");
        assert!(public.ends_with(" root@raspi1\n"), "{public}");
        assert_eq!(public_of(&private).unwrap(), public.as_bytes());
        let clean = sanitize_public(public.as_bytes()).unwrap();
        assert_eq!(format!("{clean} root@raspi1\n"), public);
        // Two clients never share a key.
        assert_ne!(generate("x").unwrap().0, private);
    }

    #[test]
    fn planted_public_keys_are_refused_or_cleaned() {
        assert_eq!(sanitize_public(b"not a key\n"), None);
        assert_eq!(sanitize_public(b"\xff\xfe"), None);
        assert_eq!(
            sanitize_public(b"ssh-ed25519 AAAA\n@cert-authority * ssh-rsa AAAA"),
            None
        );
        let (_, public) = generate("evil\n@revoked * x").unwrap();
        let clean = sanitize_public(&public).unwrap();
        assert!(!clean.contains('\n') && !clean.contains('@'), "{clean}");
    }

    #[test]
    fn known_hosts_lines() {
        let text = render_known_hosts(&[
            KnownHost {
                client: "b".into(),
                names: vec!["pi-b".into(), "10.0.0.9".into()],
                key: "ssh-ed25519 BBBB".into(),
            },
            KnownHost {
                client: "a".into(),
                names: vec!["pi-a".into()],
                key: "ssh-ed25519 AAAA".into(),
            },
        ]);
        assert!(text.ends_with("pi-a ssh-ed25519 AAAA\npi-b,10.0.0.9 ssh-ed25519 BBBB\n"));
    }
}
