//! pinetboot: a declarative network-boot server for Raspberry Pi 4 boards.
//!
//! The one data flow (see ARCHITECTURE.md): the YAML file is loaded and validated into a
//! [`config::Valid`]; [`expand`] turns it into desired [`resource`]s, the host is observed,
//! and the [`plan`] is their difference; [`engine::apply`] executes the plan under a lock,
//! runs [`handlers`], records [`state`] and observes again.

pub mod bootloader;
pub mod bootlog;
pub mod bootmount;
pub mod cli;
pub mod clientos;
pub mod commands;
pub mod config;
pub mod date;
pub mod digest;
pub mod doctor;
pub mod eeprom;
pub mod engine;
pub mod error;
pub mod expand;
pub mod facts;
pub mod gc;
pub mod handlers;
pub mod host;
pub mod image;
pub mod ioerr;
pub mod lifecycle;
pub mod output;
pub mod pios;
pub mod plan;
pub mod progress;
pub mod pull;
pub mod render;
pub mod resource;
pub mod source;
pub mod sshkeys;
pub mod state;
pub mod status;
pub mod tree;
pub mod validate_tools;
