//! Bootloader config keys, compiled from Raspberry Pi's bootloader documentation
//! (`raspberrypi/documentation`: `documentation/asciidoc/computers/raspberry-pi/eeprom-bootloader.adoc`).

/// Keys that [`EepromSettings`](super::EepromSettings) sets through typed fields, with the
/// field to use instead. `extra` must not repeat them, so that each key has one spelling.
pub const TYPED_KEYS: &[(&str, &str)] = &[
    ("BOOT_ORDER", "boot_order"),
    ("TFTP_PREFIX", "tftp_prefix"),
    ("TFTP_PREFIX_STR", "tftp_prefix"),
    ("TFTP_IP", "tftp_ip"),
    ("DHCP_TIMEOUT", "dhcp_timeout"),
    ("DHCP_REQ_TIMEOUT", "dhcp_req_timeout"),
    ("TFTP_FILE_TIMEOUT", "tftp_file_timeout"),
    ("NET_BOOT_MAX_RETRIES", "net_boot_max_retries"),
    ("ENABLE_SELF_UPDATE", "enable_self_update"),
    ("BOOT_UART", "boot_uart"),
];

/// Documented keys that a Raspberry Pi 4 bootloader reads and that have no typed field:
/// the keys `extra` accepts.
pub const EXTRA_KEYS: &[&str] = &[
    "BOOTVAR0",
    "BOOT_WATCHDOG_PARTITION",
    "BOOT_WATCHDOG_TIMEOUT",
    "CLIENT_IP",
    "DHCP_OPTION97",
    "DISABLE_HDMI",
    "FREEZE_VERSION",
    "GATEWAY",
    "HDMI_DELAY",
    "HTTP_CACERT_HASH",
    "HTTP_HOST",
    "HTTP_PATH",
    "HTTP_PORT",
    "IMAGER_REPO_URL",
    "MAC_ADDRESS",
    "MAC_ADDRESS_OTP",
    "MAX_RESTARTS",
    "NETCONSOLE",
    "NET_INSTALL_AT_POWER_ON",
    "NET_INSTALL_ENABLED",
    "NET_INSTALL_KEYBOARD_WAIT",
    "PARTITION",
    "PARTITION_WALK",
    "POWER_OFF_ON_HALT",
    "PXE_OPTION43",
    "REBOOT_ON_FATAL_ERROR",
    "SDRAM_BANKLOW",
    "SD_BOOT_MAX_RETRIES",
    "SD_OVERCURRENT_CHECK",
    "SD_QUIRKS",
    "SUBNET",
    "USB_MSD_DISCOVER_TIMEOUT",
    "USB_MSD_EXCLUDE_VID_PID",
    "USB_MSD_LUN_TIMEOUT",
    "USB_MSD_PWR_OFF_TIME",
    "USB_MSD_STARTUP_DELAY",
    "VL805",
    "WAKE_ON_GPIO",
    "XHCI_DEBUG",
];

/// Documented keys that only Raspberry Pi 5 and later bootloaders read.
pub const PI5_ONLY_KEYS: &[&str] = &[
    "PCIE_PROBE",
    "PSU_MAX_CURRENT",
    "UART_BAUD",
    "WAIT_FOR_POWER_BUTTON",
];

/// The typed field that covers `key`, if any.
pub fn typed_field(key: &str) -> Option<&'static str> {
    TYPED_KEYS
        .iter()
        .find(|(typed, _)| *typed == key)
        .map(|(_, field)| *field)
}

/// Whether `key` looks like a bootloader key: `UPPER_SNAKE_CASE`, starting with a letter.
pub fn is_upper_snake(key: &str) -> bool {
    let mut chars = key.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && chars.all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
}
