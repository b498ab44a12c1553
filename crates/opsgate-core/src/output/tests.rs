//! Rendering and budget tests: tables, cursors, never truncating silently.

use serde_json::json;

use super::*;

fn rows(n: usize) -> ToolOutput {
    ToolOutput {
        summary: vec!["alerts: 3 firing".to_string()],
        columns: vec!["name".to_string(), "value".to_string()],
        rows: (0..n)
            .map(|index| Row { cells: vec![format!("row{index}"), index.to_string()], item: json!({"i": index}) })
            .collect(),
        footer: vec!["query: up".to_string()],
        ..ToolOutput::default()
    }
}

#[test]
fn renders_an_aligned_table_with_summary_and_footer() {
    let rendered = rows(2).render(0, OutputBudget::default());
    assert_eq!(rendered.text, "alerts: 3 firing\nname  value\nrow0  0\nrow1  1\nquery: up");
    assert!(!rendered.truncated);
    assert_eq!(rendered.structured, json!({"items": [{"i": 0}, {"i": 1}], "truncated": false}));
}

#[test]
fn cuts_to_the_budget_and_says_so_with_a_cursor() {
    let rendered = rows(1000).render(0, OutputBudget { max_bytes: 1000 });
    assert!(rendered.truncated);
    assert!(rendered.text.len() + rendered.structured.to_string().len() <= 1000);
    let cursor = rendered.next_cursor.clone().expect("a cursor");
    assert!(rendered.text.contains(&format!("cursor=\"{cursor}\"")));
    assert_eq!(rendered.structured["truncated"], json!(true));
    assert_eq!(rendered.structured["total_items"], json!(1000));

    let offset = decode_cursor(&cursor).expect("cursor decodes");
    let shown = rendered.structured["items"].as_array().map(Vec::len).unwrap_or(0);
    assert_eq!(offset, shown);
    let next = rows(1000).render(offset, OutputBudget { max_bytes: 1000 });
    assert_eq!(next.structured["items"][0], json!({"i": offset}));
}

#[test]
fn always_shows_one_row_so_a_cursor_makes_progress() {
    let rendered = rows(3).render(0, OutputBudget { max_bytes: 10 });
    assert_eq!(rendered.structured["items"].as_array().map(Vec::len), Some(1));
    assert_eq!(rendered.next_cursor.as_deref(), Some("o1"));
}

#[test]
fn long_cells_are_cut_in_text_but_kept_in_structured_items() {
    let long = "x".repeat(200);
    let output = ToolOutput {
        columns: vec!["c".to_string()],
        rows: vec![Row { cells: vec![long.clone()], item: json!({"c": long}) }],
        ..ToolOutput::default()
    };
    let rendered = output.render(0, OutputBudget::default());
    assert!(rendered.text.lines().nth(1).is_some_and(|line| line.ends_with('…') && line.chars().count() == 80));
    assert_eq!(rendered.structured["items"][0]["c"].as_str().map(str::len), Some(200));
}

#[test]
fn cursors_round_trip_and_reject_garbage() {
    assert_eq!(decode_cursor(&encode_cursor(42)), Some(42));
    assert_eq!(decode_cursor("42"), None);
    assert_eq!(decode_cursor("oX"), None);
}

/// A tool that fitted its own lists to the budget says so; there is no cursor, as no row was cut.
#[test]
fn a_tool_that_cut_its_own_lists_is_marked_truncated() {
    let output =
        ToolOutput { truncated: true, ..ToolOutput::text("3 of 9 entities") }.field("entities", json!([1, 2, 3]));
    let rendered = output.render(0, OutputBudget::default());
    assert!(rendered.truncated);
    assert_eq!(rendered.next_cursor, None);
    assert_eq!(rendered.structured, json!({"entities": [1, 2, 3], "truncated": true}));
}
