//! Text tables and JSON, the two forms of every read command's output.

use std::io::Write;

use serde::Serialize;

/// Where a command writes: its output, and whether it is JSON.
pub struct Out<'a> {
    /// The command's standard output.
    pub w: &'a mut dyn Write,
    /// `--json`.
    pub json: bool,
    /// Whether the output is a terminal (progress bars instead of lines).
    pub tty: bool,
}

impl std::fmt::Debug for Out<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Out")
            .field("json", &self.json)
            .field("tty", &self.tty)
            .finish_non_exhaustive()
    }
}

impl Out<'_> {
    /// Writes a value as pretty JSON.
    pub fn json<T: Serialize + ?Sized>(&mut self, value: &T) -> anyhow::Result<()> {
        serde_json::to_writer_pretty(&mut *self.w, value)?;
        writeln!(self.w)?;
        Ok(())
    }

    /// Writes one JSON value per line (for streaming output).
    pub fn json_line<T: Serialize + ?Sized>(&mut self, value: &T) -> anyhow::Result<()> {
        serde_json::to_writer(&mut *self.w, value)?;
        writeln!(self.w)?;
        self.w.flush()?;
        Ok(())
    }

    /// Writes a line.
    pub fn line(&mut self, text: impl AsRef<str>) -> anyhow::Result<()> {
        writeln!(self.w, "{}", text.as_ref())?;
        Ok(())
    }

    /// Writes a table: a header row and rows, columns padded to their
    /// widest cell, separated by two spaces.
    pub fn table(&mut self, headers: &[&str], rows: &[Vec<String>]) -> anyhow::Result<()> {
        let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
        for row in rows {
            for (i, cell) in row.iter().enumerate() {
                if let Some(w) = widths.get_mut(i) {
                    *w = (*w).max(cell.chars().count());
                }
            }
        }
        let render = |cells: Vec<&str>| {
            let last = cells.len().saturating_sub(1);
            let mut line = String::new();
            for (i, cell) in cells.into_iter().enumerate() {
                line.push_str(cell);
                if i < last {
                    let pad = widths.get(i).copied().unwrap_or(0) - cell.chars().count();
                    line.push_str(&" ".repeat(pad + 2));
                }
            }
            line
        };
        writeln!(self.w, "{}", render(headers.to_vec()))?;
        for row in rows {
            writeln!(
                self.w,
                "{}",
                render(row.iter().map(String::as_str).collect())
            )?;
        }
        Ok(())
    }
}

/// Formats a time for tables (UTC, seconds).
pub fn time(t: &chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Shortens text for a table cell.
pub fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        text.to_owned()
    } else {
        let mut s: String = text.chars().take(max.saturating_sub(1)).collect();
        s.push('…');
        s
    }
}
