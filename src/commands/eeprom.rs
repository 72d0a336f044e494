//! `pinetboot eeprom show|render|sd-card`.

use anyhow::Context as _;

use crate::bootloader;
use crate::cli::{EepromCommand, GlobalArgs};
use crate::eeprom::EepromImage;
use crate::error::{CommandError, CommandResult, ExitStatus};
use crate::output::Printer;

/// Runs an eeprom subcommand.
pub fn run(global: &GlobalArgs, cmd: &EepromCommand, printer: &Printer) -> CommandResult {
    match cmd {
        EepromCommand::Show { file } => {
            let bytes = crate::host::bounded::read(file, crate::eeprom::MAX_FILE_BYTES)
                .map_err(|e| {
                    CommandError::user(
                        format!("cannot read the bootloader image: {e}"),
                        "name a Pi 4 bootloader image (`pieeprom-*.bin`, 512 KiB) or a `pieeprom.upd`",
                    )
                })?;
            let image = EepromImage::parse(bytes).with_context(|| format!("{}", file.display()))?;
            printer.raw(
                &image
                    .config()
                    .with_context(|| format!("{}", file.display()))?,
            );
            if let Some(ts) = image.timestamp() {
                tracing::info!("update timestamp {ts}");
            }
            Ok(ExitStatus::Success)
        }
        EepromCommand::Render { client } => {
            let host = super::host(global)?;
            let valid = super::load(global, &host)?.valid;
            let (settings, base) = settings_for(global, &valid, Some(client))?;
            printer.raw(&bootloader::render_config(&base, &settings)?);
            Ok(ExitStatus::Success)
        }
        EepromCommand::SdCard { dir, client } => {
            let host = super::host(global)?;
            let valid = super::load(global, &host)?.valid;
            let (settings, base) = settings_for(global, &valid, client.as_deref())?;
            let (_, recovery_path) = valid.bootloader.context("checked by settings_for")?;
            let recovery = host
                .read_max(&recovery_path, crate::eeprom::MAX_FILE_BYTES)
                .with_context(|| format!("reading {}", recovery_path.display()))?
                .with_context(|| {
                    format!(
                        "{} does not exist (set bootloader.recovery)",
                        recovery_path.display()
                    )
                })?;
            let update = bootloader::build(&base, &settings, None, crate::host::ops::now())?;
            crate::host::atomic::create_dir_all(dir)
                .with_context(|| format!("creating {}", dir.display()))?;
            for (name, bytes) in [
                ("recovery.bin", recovery.as_slice()),
                ("pieeprom.upd", update.image.as_slice()),
                ("pieeprom.sig", update.sig.as_bytes()),
            ] {
                crate::host::atomic::write_host_file(&dir.join(name), bytes, 0o644)
                    .with_context(|| format!("writing {}", dir.join(name).display()))?;
            }
            printer.line(&format!(
                "wrote recovery.bin, pieeprom.upd and pieeprom.sig to {} (update timestamp {}).\n\
                 Boot the Pi once from this card (its green LED blinks quickly when done), then remove it.",
                dir.display(),
                update.timestamp
            ));
            Ok(ExitStatus::Success)
        }
    }
}

fn settings_for(
    global: &GlobalArgs,
    valid: &crate::config::Valid,
    client: Option<&str>,
) -> Result<(crate::eeprom::EepromSettings, EepromImage), CommandError> {
    let settings = match client {
        Some(name) => {
            let c = valid.clients.get(name).ok_or_else(|| {
                CommandError::user(
                    format!("client {name} is not declared"),
                    "name a client from the config",
                )
            })?;
            c.eeprom.clone().ok_or_else(|| {
                CommandError::user(
                    format!("client {name} has no eeprom settings"),
                    "add `eeprom:` to the client or to `defaults`",
                )
            })?
        }
        None => valid.defaults_eeprom.clone().ok_or_else(|| {
            CommandError::user(
                "defaults.eeprom is not set",
                "set it, or pass --client NAME",
            )
        })?,
    };
    let (base_path, _) = valid.bootloader.clone().ok_or_else(|| {
        CommandError::user(
            "no bootloader image is declared",
            "add `bootloader: {image: …}` to the config",
        )
    })?;
    let host = super::host(global)?;
    Ok((settings, bootloader::base_image(&host, &base_path)?))
}
