//! Rendering: aligned text tables by default, one JSON document (or JSON
//! lines) with `--json`, written to stdout through one buffered writer.

use crate::error::CliError;
use serde::Serialize;
use std::io::{self, Write};

/// Where results go: stdout, as tables or JSON.
pub struct Out {
    /// `--json`.
    pub json: bool,
    writer: io::BufWriter<io::Stdout>,
}

impl Out {
    /// Output to stdout, as JSON when `json`.
    pub fn new(json: bool) -> Self {
        Out {
            json,
            writer: io::BufWriter::new(io::stdout()),
        }
    }

    /// Writes one JSON document (pretty-printed) and a newline.
    pub fn document(&mut self, value: &impl Serialize) -> Result<(), CliError> {
        serde_json::to_writer_pretty(&mut self.writer, value).map_err(io::Error::from)?;
        writeln!(self.writer)?;
        Ok(())
    }

    /// Writes one JSON line.
    pub fn line(&mut self, value: &impl Serialize) -> Result<(), CliError> {
        serde_json::to_writer(&mut self.writer, value).map_err(io::Error::from)?;
        writeln!(self.writer)?;
        Ok(())
    }

    /// Writes a table.
    pub fn table(&mut self, table: &Table) -> Result<(), CliError> {
        table.write(&mut self.writer)?;
        Ok(())
    }

    /// Writes one line of text.
    pub fn text(&mut self, text: &str) -> Result<(), CliError> {
        writeln!(self.writer, "{text}")?;
        Ok(())
    }

    /// Sends what is buffered (after each batch of a `tail`).
    pub fn flush(&mut self) -> Result<(), CliError> {
        self.writer.flush()?;
        Ok(())
    }
}

/// How a column is aligned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// Text.
    Left,
    /// Numbers.
    Right,
}

/// A text table: a header row and aligned columns, two spaces apart.
#[derive(Debug)]
pub struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

/// The widest a cell is printed; longer text ends in `…` (JSON output
/// carries it whole).
pub const MAX_CELL_CHARS: usize = 80;

impl Table {
    /// A table with these columns.
    pub fn new(columns: &[(&'static str, Align)]) -> Self {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (cells beyond the columns are dropped, missing ones are
    /// empty).
    pub fn row(&mut self, cells: Vec<String>) {
        let mut cells: Vec<String> = cells.into_iter().map(|c| cell(&c)).collect();
        cells.resize(self.columns.len(), String::new());
        self.rows.push(cells);
    }

    /// Writes the header and the rows.
    pub fn write(&self, w: &mut impl Write) -> io::Result<()> {
        let widths: Vec<usize> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (name, _))| {
                self.rows
                    .iter()
                    .map(|r| r[i].chars().count())
                    .chain([name.chars().count()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let header: Vec<String> = self.columns.iter().map(|(name, _)| (*name).to_owned()).collect();
        for cells in std::iter::once(&header).chain(&self.rows) {
            let mut line = String::new();
            for (i, text) in cells.iter().enumerate() {
                let width = widths[i];
                let pad = width.saturating_sub(text.chars().count());
                let last = i + 1 == cells.len();
                if i > 0 {
                    line.push_str("  ");
                }
                match self.columns[i].1 {
                    Align::Right => {
                        line.extend(std::iter::repeat_n(' ', pad));
                        line.push_str(text);
                    }
                    Align::Left => {
                        line.push_str(text);
                        if !last {
                            line.extend(std::iter::repeat_n(' ', pad));
                        }
                    }
                }
            }
            writeln!(w, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// A cell's text: control characters escaped (a cell is one line), and
/// cut at [`MAX_CELL_CHARS`].
fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len().min(MAX_CELL_CHARS * 4));
    let mut chars = 0;
    for c in text.chars() {
        let piece: String = if c.is_control() {
            c.escape_default().collect()
        } else {
            c.to_string()
        };
        let n = piece.chars().count();
        if chars + n > MAX_CELL_CHARS {
            out.push('…');
            return out;
        }
        out.push_str(&piece);
        chars += n;
    }
    out
}

/// `-` for nothing.
pub fn or_dash(value: Option<String>) -> String {
    value.unwrap_or_else(|| "-".to_owned())
}

/// `512 B`, `12.3 KiB`, `4.0 MiB`.
pub fn bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_as_binary_units() {
        assert_eq!(bytes(512), "512 B");
        assert_eq!(bytes(12_595), "12.3 KiB");
        assert_eq!(bytes(4 << 20), "4.0 MiB");
    }

    #[test]
    fn aligns_columns_and_cuts_long_cells() {
        let mut table = Table::new(&[("NAME", Align::Left), ("N", Align::Right), ("NOTE", Align::Left)]);
        table.row(vec!["a".into(), "10".into(), "x\ny".into()]);
        table.row(vec!["long-name".into(), "2".into(), "z".repeat(100)]);
        let mut text = Vec::new();
        table.write(&mut text).expect("in memory");
        let text = String::from_utf8(text).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "NAME        N  NOTE");
        assert_eq!(lines[1], "a          10  x\\ny");
        assert!(lines[2].starts_with("long-name   2  zzz"));
        assert!(lines[2].ends_with('…'));
        assert_eq!(lines[2].chars().count(), "long-name   2  ".len() + MAX_CELL_CHARS + 1);
    }
}
