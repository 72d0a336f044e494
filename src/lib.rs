//! pinetboot: a declarative network-boot server for Raspberry Pi 4 boards.
//!
//! The one data flow (see ARCHITECTURE.md): the YAML file is loaded and validated into a
//! [`config::Valid`]; it is expanded into desired resources, the live host is observed, and
//! the plan is the pure difference of the two; `apply` executes the plan and observes again.

pub mod cli;
pub mod commands;
pub mod config;
pub mod error;
pub mod output;
