//! Test support: a namespace lab ([`netlab`]) and an emulated Pi 4
//! bootloader ([`pi4`]). Used from integration tests with `mod support;`.
#![allow(dead_code)]

pub mod mountns;
pub mod netlab;
pub mod pi4;
pub mod roots;
