//! The declared bootloader settings of a client (`eeprom:` in the YAML config), their
//! validation, and their rendering into a `bootconf.txt`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::Ipv4Addr;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{keys, render};

/// Most boot modes `BOOT_ORDER` can hold: one per nibble of a 32-bit number.
pub const MAX_BOOT_MODES: usize = 8;
/// Longest `TFTP_PREFIX_STR` the bootloader accepts.
pub const MAX_TFTP_PREFIX_LEN: usize = 32;
/// The bootloader's minimum `DHCP_TIMEOUT`, in milliseconds.
pub const MIN_DHCP_TIMEOUT: u32 = 5000;
/// The bootloader's minimum `DHCP_REQ_TIMEOUT`, in milliseconds.
pub const MIN_DHCP_REQ_TIMEOUT: u32 = 500;
/// The bootloader's minimum `TFTP_FILE_TIMEOUT`, in milliseconds.
pub const MIN_TFTP_FILE_TIMEOUT: u32 = 5000;

/// A boot mode: one nibble of `BOOT_ORDER`.
#[derive(Deserialize, Serialize, Debug, Clone, Copy, PartialEq, Eq, Hash, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum BootMode {
    /// `0x0`: try the SD card, then wait for card-detect to signal a new card (deprecated:
    /// use `sd` and `restart`).
    SdDetect,
    /// `0x1`: SD card (eMMC on a Compute Module 4).
    Sd,
    /// `0x2`: network boot (DHCP and TFTP).
    Network,
    /// `0x3`: RPIBOOT, USB device boot from a host running usbboot. Has no timeout: put it last.
    Rpiboot,
    /// `0x4`: USB mass storage.
    UsbMsd,
    /// `0x5`: USB 2.0 mass storage from the USB type C socket (CM4: type A on the IO board).
    BcmUsbMsd,
    /// `0x6`: NVMe SSD on PCIe (Compute Module 4 only among Pi 4 boards).
    Nvme,
    /// `0x7`: HTTP boot over Ethernet.
    Http,
    /// `0xe`: stop and show the error pattern until power-cycled.
    Stop,
    /// `0xf`: start again from the first boot mode.
    Restart,
}

impl BootMode {
    /// Every boot mode, in nibble order.
    pub const ALL: [BootMode; 10] = [
        Self::SdDetect,
        Self::Sd,
        Self::Network,
        Self::Rpiboot,
        Self::UsbMsd,
        Self::BcmUsbMsd,
        Self::Nvme,
        Self::Http,
        Self::Stop,
        Self::Restart,
    ];

    /// The mode's nibble in `BOOT_ORDER`.
    pub fn nibble(self) -> u8 {
        match self {
            Self::SdDetect => 0x0,
            Self::Sd => 0x1,
            Self::Network => 0x2,
            Self::Rpiboot => 0x3,
            Self::UsbMsd => 0x4,
            Self::BcmUsbMsd => 0x5,
            Self::Nvme => 0x6,
            Self::Http => 0x7,
            Self::Stop => 0xe,
            Self::Restart => 0xf,
        }
    }

    /// The word that names the mode in YAML.
    pub fn word(self) -> &'static str {
        match self {
            Self::SdDetect => "sd-detect",
            Self::Sd => "sd",
            Self::Network => "network",
            Self::Rpiboot => "rpiboot",
            Self::UsbMsd => "usb-msd",
            Self::BcmUsbMsd => "bcm-usb-msd",
            Self::Nvme => "nvme",
            Self::Http => "http",
            Self::Stop => "stop",
            Self::Restart => "restart",
        }
    }

    /// Why no mode after this one is ever tried, for modes that end the list.
    fn ends_list(self) -> Option<&'static str> {
        match self {
            Self::Stop => Some("`stop` halts the bootloader"),
            Self::Restart => Some("`restart` goes back to the first mode"),
            Self::Rpiboot => Some("`rpiboot` waits for a USB host without a timeout"),
            _ => None,
        }
    }
}

impl fmt::Display for BootMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.word())
    }
}

/// The folder the bootloader prefixes to every TFTP file name.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum TftpPrefix {
    /// The low 8 hex digits of the board's serial number, e.g. `9ffefdef/` (`TFTP_PREFIX=0`).
    Serial,
    /// The board's MAC address, e.g. `dc-a6-32-01-36-c2/` (`TFTP_PREFIX=2`).
    Mac,
    /// A folder of the TFTP root, written as its name and a `/`, e.g. `pi-lab/`, at most 32
    /// characters (`TFTP_PREFIX=1` and `TFTP_PREFIX_STR`: the bootloader puts the string in
    /// front of every file name).
    String(
        #[schemars(
            length(min = 2, max = 32),
            regex(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]*/$"),
            description = "The TFTP folder: one folder name and a `/`, e.g. `pi-lab/`, at most 32 characters."
        )]
        String,
    ),
}

/// Bootloader (EEPROM) settings of a client: embedded into its `bootconf.txt`. Keys left
/// out keep the value of the base image's config.
#[derive(Deserialize, Serialize, Debug, Clone, PartialEq, Eq, Default, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct EepromSettings {
    /// Boot modes, tried left to right (`BOOT_ORDER`, at most 8), e.g.
    /// `[sd, network, restart]` for `BOOT_ORDER=0xf21`.
    #[schemars(length(min = 1, max = 8))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_order: Option<Vec<BootMode>>,
    /// TFTP folder prefix (`TFTP_PREFIX`, `TFTP_PREFIX_STR`): `serial`, `mac` (needs the
    /// client's `mac`), or `{string: "folder/"}`. pinetboot serves the client's boot folder in
    /// that folder of the TFTP root, and in its serial folder (where a bootloader asks until
    /// it has flashed this setting).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tftp_prefix: Option<TftpPrefix>,
    /// TFTP server address overriding the one from DHCP (`TFTP_IP`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tftp_ip: Option<Ipv4Addr>,
    /// Timeout for the whole DHCP exchange in ms (`DHCP_TIMEOUT`, minimum 5000, default 45000).
    #[schemars(range(min = 5000))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dhcp_timeout: Option<u32>,
    /// Timeout before repeating a DHCP DISCOVER or REQUEST in ms (`DHCP_REQ_TIMEOUT`, minimum
    /// 500, default 4000).
    #[schemars(range(min = 500))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dhcp_req_timeout: Option<u32>,
    /// Timeout for one TFTP file download in ms (`TFTP_FILE_TIMEOUT`, minimum 5000, default
    /// 30000).
    #[schemars(range(min = 5000))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tftp_file_timeout: Option<u32>,
    /// Network boot retries before the next boot mode (`NET_BOOT_MAX_RETRIES`, -1 for
    /// infinite, default 0).
    #[schemars(range(min = -1))]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub net_boot_max_retries: Option<i32>,
    /// Let the bootloader flash `pieeprom.upd` from its boot folder (`ENABLE_SELF_UPDATE`,
    /// default on).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub enable_self_update: Option<bool>,
    /// Bootloader debug output on the UART, GPIO 14 and 15 at 115200 baud (`BOOT_UART`,
    /// default off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub boot_uart: Option<bool>,
    /// Other documented bootloader keys by name, e.g. `NET_INSTALL_AT_POWER_ON: "1"`.
    /// Keys with a field above must be set there.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

/// One problem found by [`EepromSettings::validate`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsProblem {
    /// Path of the value relative to the settings, e.g. `dhcp_timeout`, `boot_order[3]` or
    /// `extra.FOO`.
    pub field: String,
    /// What is wrong.
    pub message: String,
    /// How to fix it.
    pub hint: String,
}

impl SettingsProblem {
    /// A problem at `field`.
    fn new(field: impl Into<String>, message: impl Into<String>, hint: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
            hint: hint.into(),
        }
    }
}

impl fmt::Display for SettingsProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {} (hint: {})", self.field, self.message, self.hint)
    }
}

impl EepromSettings {
    /// Every problem in the settings; empty when they can be rendered.
    pub fn validate(&self) -> Vec<SettingsProblem> {
        let mut problems = Vec::new();
        if let Some(order) = &self.boot_order {
            check_boot_order(order, &mut problems);
        }
        if let Some(TftpPrefix::String(prefix)) = &self.tftp_prefix {
            check_tftp_prefix(prefix, &mut problems);
        }
        let timeouts = [
            ("dhcp_timeout", self.dhcp_timeout, MIN_DHCP_TIMEOUT, 45000),
            (
                "dhcp_req_timeout",
                self.dhcp_req_timeout,
                MIN_DHCP_REQ_TIMEOUT,
                4000,
            ),
            (
                "tftp_file_timeout",
                self.tftp_file_timeout,
                MIN_TFTP_FILE_TIMEOUT,
                30000,
            ),
        ];
        for (field, value, min, default) in timeouts {
            check_timeout(field, value, min, default, &mut problems);
        }
        if let Some(retries) = self.net_boot_max_retries.filter(|&r| r < -1) {
            problems.push(SettingsProblem::new(
                "net_boot_max_retries",
                format!("{retries} is not a retry count"),
                "use 0 or more retries, or -1 to retry forever",
            ));
        }
        for (key, value) in &self.extra {
            check_extra(key, value, &mut problems);
        }
        problems
    }

    /// The `KEY=VALUE` pairs these settings set, in rendering order: the typed fields in
    /// declaration order, then `extra` sorted by key.
    pub fn entries(&self) -> Vec<(&'static str, String)> {
        let mut entries = Vec::new();
        if let Some(order) = self.boot_order.as_deref().filter(|o| !o.is_empty()) {
            entries.push(("BOOT_ORDER", boot_order_value(order)));
        }
        match &self.tftp_prefix {
            Some(TftpPrefix::Serial) => entries.push(("TFTP_PREFIX", "0".to_owned())),
            Some(TftpPrefix::Mac) => entries.push(("TFTP_PREFIX", "2".to_owned())),
            Some(TftpPrefix::String(prefix)) => {
                entries.push(("TFTP_PREFIX", "1".to_owned()));
                entries.push(("TFTP_PREFIX_STR", prefix.clone()));
            }
            None => {}
        }
        let numbers = [
            ("TFTP_IP", self.tftp_ip.map(|ip| ip.to_string())),
            ("DHCP_TIMEOUT", self.dhcp_timeout.map(|v| v.to_string())),
            (
                "DHCP_REQ_TIMEOUT",
                self.dhcp_req_timeout.map(|v| v.to_string()),
            ),
            (
                "TFTP_FILE_TIMEOUT",
                self.tftp_file_timeout.map(|v| v.to_string()),
            ),
            (
                "NET_BOOT_MAX_RETRIES",
                self.net_boot_max_retries.map(|v| v.to_string()),
            ),
            ("ENABLE_SELF_UPDATE", self.enable_self_update.map(flag)),
            ("BOOT_UART", self.boot_uart.map(flag)),
        ];
        entries.extend(numbers.into_iter().filter_map(|(key, v)| Some((key, v?))));
        entries.extend(self.extra.iter().filter_map(|(key, value)| {
            let key = known_extra_key(key)?;
            Some((key, value.clone()))
        }));
        entries
    }

    /// The `bootconf.txt` to embed: `base_config` (the base image's embedded config) with
    /// these settings applied.
    ///
    /// Each `KEY=…` line of the top section or an `[all]` section whose key is set here gets
    /// the new value in place; every other line stays byte for byte. Keys not present are
    /// appended in [`entries`](Self::entries) order after the last non-blank line of the
    /// top section if it holds settings (or there is no `[all]`), else of the first `[all]`
    /// section. The result ends in a newline, and rendering it again changes nothing.
    /// Call [`validate`](Self::validate) first: `extra` keys that are not documented
    /// bootloader keys are skipped here.
    pub fn render(&self, base_config: &str) -> String {
        render::set_keys(base_config, &self.entries())
    }
}

/// `BOOT_ORDER` as hex: the first-tried mode is the lowest nibble.
pub fn boot_order_value(order: &[BootMode]) -> String {
    let digits: String = order
        .iter()
        .rev()
        .map(|mode| char::from_digit(u32::from(mode.nibble()), 16).unwrap_or('f'))
        .collect();
    format!("0x{digits}")
}

/// A boolean as the bootloader spells it.
fn flag(on: bool) -> String {
    if on { "1" } else { "0" }.to_owned()
}

/// The static spelling of a documented extra key.
fn known_extra_key(key: &str) -> Option<&'static str> {
    keys::EXTRA_KEYS.iter().copied().find(|known| *known == key)
}

/// Length and reachability of the boot modes.
fn check_boot_order(order: &[BootMode], problems: &mut Vec<SettingsProblem>) {
    if order.is_empty() {
        problems.push(SettingsProblem::new(
            "boot_order",
            "the list is empty",
            "list at least one boot mode, e.g. [sd, network, restart], or leave boot_order out",
        ));
    }
    if order.len() > MAX_BOOT_MODES {
        problems.push(SettingsProblem::new(
            "boot_order",
            format!(
                "{} boot modes, the bootloader reads at most {MAX_BOOT_MODES}",
                order.len()
            ),
            "drop modes; end with `restart` to loop over the list instead of repeating it",
        ));
    }
    check_unreachable(order, problems);
    if order.last() == Some(&BootMode::SdDetect) {
        let last = order.len() - 1;
        problems.push(SettingsProblem::new(
            format!("boot_order[{last}]"),
            "`sd-detect` (0x0) cannot be tried last: as the highest nibble of BOOT_ORDER its 0 is lost",
            "use `sd` instead, or end the list with `restart`",
        ));
    }
}

/// Modes after `stop`, `restart` or `rpiboot` are never tried.
fn check_unreachable(order: &[BootMode], problems: &mut Vec<SettingsProblem>) {
    let Some(first_ender) = order.iter().position(|mode| mode.ends_list().is_some()) else {
        return;
    };
    let ender = order.get(first_ender).copied().unwrap_or(BootMode::Restart);
    let reason = ender.ends_list().unwrap_or_default();
    for (index, mode) in order.iter().enumerate().skip(first_ender + 1) {
        problems.push(SettingsProblem::new(
            format!("boot_order[{index}]"),
            format!("`{mode}` is never tried: {reason}"),
            format!("move it before `{ender}` or drop it"),
        ));
    }
}

/// A custom TFTP prefix: one folder name and a `/`, at most 32 characters. The bootloader
/// puts the string in front of every file name it asks for (`pi-lab/start4.elf`), and
/// pinetboot serves each client's boot folder as one folder of the TFTP root, so a string
/// without the `/` (files in the root itself), with more folders, or naming `.`/`..` cannot
/// be served.
fn check_tftp_prefix(prefix: &str, problems: &mut Vec<SettingsProblem>) {
    let field = "tftp_prefix.string";
    if prefix.is_empty() {
        problems.push(SettingsProblem::new(
            field,
            "the prefix is empty",
            "use `serial` or `mac`, or give a folder name such as `pi-lab/`",
        ));
        return;
    }
    if prefix.chars().count() > MAX_TFTP_PREFIX_LEN {
        problems.push(SettingsProblem::new(
            field,
            format!(
                "{} characters, the bootloader takes at most {MAX_TFTP_PREFIX_LEN}",
                prefix.chars().count()
            ),
            "use a shorter folder name",
        ));
    }
    if !prefix.chars().all(|c| c.is_ascii_graphic()) {
        problems.push(SettingsProblem::new(
            field,
            "the prefix has spaces, control or non-ASCII characters",
            "use letters, digits, `-`, `_`, `.` and a final `/`, e.g. `pi-lab/`",
        ));
        return;
    }
    let Some(name) = prefix.strip_suffix('/') else {
        problems.push(SettingsProblem::new(
            field,
            format!(
                "`{prefix}` does not end in `/`: the bootloader would ask for `{prefix}start4.elf` in the TFTP root, which serves only folders"
            ),
            format!("end it with `/`: `{prefix}/`"),
        ));
        return;
    };
    if !is_folder_name(name) {
        problems.push(SettingsProblem::new(
            field,
            format!("`{prefix}` is not one folder name and a `/`"),
            "each client is served from one folder of the TFTP root: letters, digits, `-`, `_` and `.` (not first), then `/`, e.g. `pi-lab/`",
        ));
    }
}

/// A plain folder name: letters, digits, `-`, `_`, and `.` except first (no `.`, `..` or
/// hidden folders).
fn is_folder_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

impl TftpPrefix {
    /// The prefix a rendered `bootconf.txt` sets for every board (its unconditional
    /// `TFTP_PREFIX` and `TFTP_PREFIX_STR`; none set is the default, the serial). `Err` with
    /// the value when it is not one of 0, 1, 2.
    pub fn of_config(config: &str) -> Result<TftpPrefix, String> {
        match render::unconditional_value(config, "TFTP_PREFIX") {
            None | Some("0") => Ok(Self::Serial),
            Some("2") => Ok(Self::Mac),
            Some("1") => Ok(Self::String(
                render::unconditional_value(config, "TFTP_PREFIX_STR")
                    .unwrap_or_default()
                    .to_owned(),
            )),
            Some(other) => Err(other.to_owned()),
        }
    }

    /// The folder of the TFTP root in which a bootloader with this prefix asks for its files:
    /// the board's serial (`0c4c21e5`), its MAC in lower case with dashes
    /// (`dc-a6-32-01-02-03`, from `mac` in the `aa:bb:…` form), or the string's folder
    /// (`pi-lab/` → `pi-lab`). `None` for `mac` without a MAC, and for a string that is not
    /// one folder name and a `/` (see [`EepromSettings::validate`]).
    pub fn folder(&self, serial: &str, mac: Option<&str>) -> Option<String> {
        match self {
            Self::Serial => Some(serial.to_owned()),
            Self::Mac => mac.map(|m| m.to_ascii_lowercase().replace(':', "-")),
            Self::String(s) => s
                .strip_suffix('/')
                .filter(|name| s.len() <= MAX_TFTP_PREFIX_LEN && is_folder_name(name))
                .map(str::to_owned),
        }
    }
}

/// A timeout must not be below the bootloader's minimum.
fn check_timeout(
    field: &str,
    value: Option<u32>,
    min: u32,
    default: u32,
    problems: &mut Vec<SettingsProblem>,
) {
    if let Some(ms) = value.filter(|&ms| ms < min) {
        problems.push(SettingsProblem::new(
            field,
            format!("{ms} ms is below the bootloader's minimum of {min} ms"),
            format!("use at least {min} (the default is {default})"),
        ));
    }
}

/// An `extra` key must be a documented Pi 4 key without a typed field; its value one line
/// of printable ASCII.
fn check_extra(key: &str, value: &str, problems: &mut Vec<SettingsProblem>) {
    let field = format!("extra.{key}");
    if let Some(message) = extra_key_problem(key) {
        problems.push(SettingsProblem::new(&field, message.0, message.1));
    }
    if !value.chars().all(|c| c == ' ' || c.is_ascii_graphic()) {
        problems.push(SettingsProblem::new(
            field,
            "the value has line breaks, control or non-ASCII characters",
            "bootloader values are one line of printable ASCII",
        ));
    }
}

/// What is wrong with an `extra` key and how to fix it, if anything.
fn extra_key_problem(key: &str) -> Option<(String, String)> {
    if let Some(field) = keys::typed_field(key) {
        return Some((
            format!("`{key}` has its own setting"),
            format!("set `{field}` instead of `extra.{key}`"),
        ));
    }
    if !keys::is_upper_snake(key) {
        return Some((
            format!("`{key}` is not a bootloader key name"),
            "bootloader keys are UPPER_SNAKE_CASE, e.g. NET_INSTALL_AT_POWER_ON".to_owned(),
        ));
    }
    if keys::PI5_ONLY_KEYS.contains(&key) {
        return Some((
            format!("`{key}` is read only by Raspberry Pi 5 bootloaders"),
            "drop it: a Pi 4 ignores it".to_owned(),
        ));
    }
    if known_extra_key(key).is_none() {
        return Some((
            format!("`{key}` is not a documented Raspberry Pi 4 bootloader key"),
            format!("known keys: {}", keys::EXTRA_KEYS.join(", ")),
        ));
    }
    None
}
