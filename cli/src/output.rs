//! What a command prints: a table for people (columns like dcmanager's), the API's JSON or
//! YAML for scripts (keys sorted, so stable), or ids alone with `-q`.

use crate::args::Format;
use crate::error::CliError;
use comfy_table::{presets, Cell, Color, ContentArrangement, Table};
use serde_json::Value;
use std::io::{IsTerminal, Write};

/// How to print, and whether colour is wanted (stdout a terminal and `NO_COLOR` unset).
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    pub format: Format,
    pub quiet: bool,
    pub color: bool,
}

/// One command's result in every form it can be printed in.
pub struct View {
    pub data: Value,
    /// Printed one after the other, a blank line between.
    pub tables: Vec<Table>,
    pub ids: Vec<String>,
}

impl Printer {
    /// A printer for this format; colour decided once, from stdout and `NO_COLOR`.
    pub fn new(format: Format, quiet: bool) -> Printer {
        let color = std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none();
        Printer {
            format,
            quiet,
            color,
        }
    }

    /// Prints the view on stdout in the chosen form; a closed pipe is not an error.
    pub fn print(&self, view: View) -> Result<(), CliError> {
        let text = if self.quiet {
            view.ids.iter().map(|id| format!("{id}\n")).collect()
        } else {
            match self.format {
                Format::Json => format!(
                    "{}\n",
                    serde_json::to_string_pretty(&view.data).expect("JSON values always serialise")
                ),
                Format::Yaml => {
                    serde_yaml::to_string(&view.data).expect("JSON values always serialise as YAML")
                }
                Format::Table if view.tables.is_empty() => String::new(),
                Format::Table => {
                    let tables: Vec<String> = view.tables.iter().map(Table::to_string).collect();
                    format!("{}\n", tables.join("\n\n"))
                }
            }
        };
        let mut stdout = std::io::stdout().lock();
        match stdout
            .write_all(text.as_bytes())
            .and_then(|()| stdout.flush())
        {
            // A reader that stopped reading (`| head`) wanted no more: not an error.
            Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
                Err(CliError::Usage(format!("cannot write the output: {e}")))
            }
            _ => Ok(()),
        }
    }

    /// An empty table with a header row, styled for this output.
    pub fn table<H: Into<comfy_table::Row>>(&self, header: H) -> Table {
        let mut table = Table::new();
        table
            .load_preset(presets::UTF8_FULL_CONDENSED)
            .set_content_arrangement(ContentArrangement::Dynamic)
            .set_header(header);
        if !self.color {
            table.force_no_tty();
        }
        table
    }

    /// A cell coloured when colour is on.
    pub fn cell(&self, text: impl ToString, color: Option<Color>) -> Cell {
        let cell = Cell::new(text.to_string());
        match color {
            Some(c) if self.color => cell.fg(c),
            _ => cell,
        }
    }
}

/// A value as a table cell: strings bare, null empty, anything else as JSON.
pub fn text(value: &Value) -> String {
    match value {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A field/value table of an object: `keys` first in that order, then any other key.
pub fn fields(printer: &Printer, object: &Value, keys: &[&str]) -> Table {
    let mut table = printer.table(["Field", "Value"]);
    let Some(map) = object.as_object() else {
        return table;
    };
    for key in keys {
        if let Some(v) = map.get(*key) {
            table.add_row([key.to_string(), text(v)]);
        }
    }
    for (key, v) in map {
        if !keys.contains(&key.as_str()) {
            table.add_row([key.clone(), text(v)]);
        }
    }
    table
}

/// The items of a list answer (`{"subclouds": [...]}`), tolerating a bare list.
pub fn items<'a>(body: &'a Value, key: &str) -> &'a [Value] {
    body.get(key)
        .and_then(Value::as_array)
        .or_else(|| body.as_array())
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// The `id` of an object as text.
pub fn id(object: &Value) -> String {
    text(&object["id"])
}
