//! What the commands print: JSON, pretty, on standard output.

/// Prints `value` as pretty JSON and a newline.
pub fn print_json<T: serde::Serialize>(value: &T) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}
