//! Tool outputs and the output budget: every tool returns rows plus a few summary lines, and the
//! pipeline renders them as a compact text table and `structuredContent`, cut to the budget with a
//! cursor for the rest.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// How much one call may return, in bytes of text plus structured JSON. About four bytes make a
/// token, so the default of 16,000 bytes is about 4,000 tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputBudget {
    pub max_bytes: usize,
}

impl Default for OutputBudget {
    fn default() -> Self {
        OutputBudget { max_bytes: 16_000 }
    }
}

/// One row of a tool's result: its cells for the text table and its structured form.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub cells: Vec<String>,
    pub item: Value,
}

/// What a tool returns before rendering. Tools put their few headline facts in `summary` and
/// `fields`, and their list in `rows`; the pipeline decides how many rows fit.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ToolOutput {
    /// Lines printed above the table.
    pub summary: Vec<String>,
    /// Structured fields beside `items`.
    pub fields: Map<String, Value>,
    pub columns: Vec<String>,
    pub rows: Vec<Row>,
    /// Lines printed below the table (the query that ran, hints).
    pub footer: Vec<String>,
    /// MCP content blocks (images, audio, embedded resources) passed through as JSON after the
    /// text. Counted against the budget like everything else.
    pub content: Vec<Value>,
    /// The tool already cut its output to the budget: it returns lists in `fields` that the
    /// pipeline cannot page (a graph's entities and relations, in the shape a client expects), so
    /// it fits them itself and says so here. The rendered result is then marked truncated.
    pub truncated: bool,
}

impl ToolOutput {
    pub fn text(line: impl Into<String>) -> Self {
        ToolOutput { summary: vec![line.into()], ..ToolOutput::default() }
    }

    pub fn field(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.fields.insert(key.to_string(), value.into());
        self
    }
}

/// The rendered form of a `ToolOutput`: what leaves the pipeline.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    pub text: String,
    /// Non-text content blocks, as the tool returned them.
    pub content: Vec<Value>,
    pub structured: Value,
    pub truncated: bool,
    pub next_cursor: Option<String>,
}

/// The widest a cell may be in the text table; longer cells end in `…`. Structured items keep the
/// full value.
const MAX_CELL_CHARS: usize = 80;

/// Cursors are opaque to agents; today they carry the row offset.
pub fn encode_cursor(offset: usize) -> String {
    format!("o{offset}")
}

pub fn decode_cursor(cursor: &str) -> Option<usize> {
    cursor.strip_prefix('o')?.parse().ok()
}

impl ToolOutput {
    /// Renders rows from `offset` on, as many as fit in `budget`. At least one row is shown when
    /// any remain, so a cursor always makes progress.
    pub fn render(self, offset: usize, budget: OutputBudget) -> Rendered {
        let n_rows_total = self.rows.len();
        let rows: Vec<Row> = self.rows.into_iter().skip(offset).collect();
        let widths = column_widths(&self.columns, &rows);

        let mut head = self.summary.join("\n");
        let content_cost: usize =
            self.content.iter().map(|block| serde_json::to_string(block).map(|json| json.len()).unwrap_or(0)).sum();
        let mut fixed_cost = content_cost + head.len() + self.footer.iter().map(|line| line.len() + 1).sum::<usize>();
        fixed_cost += serde_json::to_string(&self.fields).map(|json| json.len()).unwrap_or(0);
        // Room for the truncation notice and the structured envelope.
        fixed_cost += 160;
        let header_line = if self.columns.is_empty() { String::new() } else { table_line(&self.columns, &widths) };
        fixed_cost += header_line.len() + 1;

        let mut used = fixed_cost;
        let mut lines = Vec::new();
        let mut items = Vec::new();
        for row in &rows {
            let line = table_line(&row.cells, &widths);
            let item_cost = serde_json::to_string(&row.item).map(|json| json.len()).unwrap_or(0);
            let cost = line.len() + 1 + item_cost + 1;
            if !lines.is_empty() && used + cost > budget.max_bytes {
                break;
            }
            used += cost;
            lines.push(line);
            items.push(row.item.clone());
        }
        let n_shown = lines.len();
        let rows_cut = n_shown < rows.len();
        let truncated = rows_cut || self.truncated;
        let next_cursor = rows_cut.then(|| encode_cursor(offset + n_shown));

        if !self.columns.is_empty() {
            if !head.is_empty() {
                head.push('\n');
            }
            head.push_str(&header_line);
            for line in &lines {
                head.push('\n');
                head.push_str(line);
            }
        }
        for line in &self.footer {
            if !head.is_empty() {
                head.push('\n');
            }
            head.push_str(line);
        }
        if let Some(cursor) = &next_cursor {
            head.push_str(&format!(
                "\ntruncated: showing rows {}-{} of {n_rows_total}; call again with cursor=\"{cursor}\" for more",
                offset + 1,
                offset + n_shown
            ));
        }

        let mut structured = self.fields;
        if !self.columns.is_empty() {
            structured.insert("items".to_string(), Value::Array(items));
        }
        structured.insert("truncated".to_string(), Value::Bool(truncated));
        if let Some(cursor) = &next_cursor {
            structured.insert("next_cursor".to_string(), Value::String(cursor.clone()));
            structured.insert("total_items".to_string(), Value::from(n_rows_total));
        }
        Rendered { text: head, content: self.content, structured: Value::Object(structured), truncated, next_cursor }
    }
}

fn cell_text(cell: &str) -> String {
    let cell = cell.replace(['\n', '\r', '\t'], " ");
    if cell.chars().count() <= MAX_CELL_CHARS {
        return cell;
    }
    let mut cut: String = cell.chars().take(MAX_CELL_CHARS - 1).collect();
    cut.push('…');
    cut
}

fn column_widths(columns: &[String], rows: &[Row]) -> Vec<usize> {
    let mut widths: Vec<usize> = columns.iter().map(|column| column.chars().count()).collect();
    for row in rows {
        for (index, cell) in row.cells.iter().enumerate() {
            let width = cell_text(cell).chars().count();
            if let Some(slot) = widths.get_mut(index) {
                *slot = (*slot).max(width);
            }
        }
    }
    widths
}

fn table_line(cells: &[String], widths: &[usize]) -> String {
    let mut line = String::new();
    for (index, cell) in cells.iter().enumerate() {
        let text = cell_text(cell);
        if index > 0 {
            line.push_str("  ");
        }
        let is_last = index + 1 == cells.len();
        line.push_str(&text);
        if !is_last {
            let width = widths.get(index).copied().unwrap_or(0);
            let pad = width.saturating_sub(text.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
    }
    line
}

#[cfg(test)]
mod tests;
