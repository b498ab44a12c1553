//! Tool pin tests, on SQLite and on PostgreSQL: the first sight of a tool pins it and a later
//! sight never moves the pin; only trusting replaces it.

use anyhow::Result;
use opsgate_store::ToolPin;
use support::stores;

mod support;

fn pin(server: &str, tool: &str, hash: &str, trusted_by: Option<&str>) -> ToolPin {
    ToolPin {
        server: server.to_string(),
        tool: tool.to_string(),
        hash: hash.to_string(),
        definition: format!("{{\"name\":\"{tool}\",\"v\":\"{hash}\"}}"),
        pinned_at: "2026-11-21T10:00:00.000Z".to_string(),
        trusted_by: trusted_by.map(str::to_string),
    }
}

#[tokio::test]
async fn the_first_sight_pins_and_only_trust_moves_a_pin() -> Result<()> {
    for (store, _dir) in stores("mcp_tool_pins").await? {
        let backend = store.backend();
        assert!(store.tool_pins("memory").await?.is_empty(), "{backend}");
        store.pin_new_tools(&[pin("memory", "read_graph", "aaa", None), pin("memory", "add", "bbb", None)]).await?;
        // Another server's tool of the same name is its own pin.
        store.pin_new_tools(&[pin("other", "add", "ccc", None)]).await?;
        // A second sight with another definition does not move the pin.
        store.pin_new_tools(&[pin("memory", "add", "changed", None)]).await?;
        let pins = store.tool_pins("memory").await?;
        assert_eq!(
            pins,
            vec![pin("memory", "add", "bbb", None), pin("memory", "read_graph", "aaa", None)],
            "{backend}"
        );

        store.trust_tool(&pin("memory", "add", "changed", Some("alice"))).await?;
        let pins = store.tool_pins("memory").await?;
        assert_eq!(pins[0], pin("memory", "add", "changed", Some("alice")), "{backend}");
        assert_eq!(store.tool_pins("other").await?, vec![pin("other", "add", "ccc", None)], "{backend}");
        store.close().await;
    }
    Ok(())
}
