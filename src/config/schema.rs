//! The JSON schema of the config, generated from the Rust types (draft-07, which editors'
//! YAML language servers read). `schema/pinetboot.schema.json` is this output, checked in.

use super::model::Config;

/// The schema as pretty-printed JSON with a trailing newline.
pub fn schema_json() -> String {
    let generator = schemars::generate::SchemaSettings::draft07().into_generator();
    let schema = generator.into_root_schema_for::<Config>();
    serde_json::to_string_pretty(&schema).expect("a schema always serialises") + "\n"
}
