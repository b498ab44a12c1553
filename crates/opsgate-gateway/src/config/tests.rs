use std::path::Path;

use super::*;

fn env(name: &str) -> Option<String> {
    match name {
        "GH_TOKEN" => Some("ghp_secret".to_string()),
        "HOME" => Some("/home/sre".to_string()),
        _ => None,
    }
}

fn write(dir: &Path, relative: &str, text: &str) -> PathBuf {
    let path = dir.join(relative);
    std::fs::create_dir_all(path.parent().unwrap_or(dir)).expect("create dir");
    std::fs::write(&path, text).expect("write");
    path
}

#[test]
fn both_forms_are_read_and_the_project_replaces_global_entries_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let global = write(
        dir.path(),
        "home/.config/opsgate/mcp.json",
        r#"{"mcpServers": {
            "memory": {"command": "npx", "args": ["-y", "@modelcontextprotocol/server-memory"]},
            "github": {"type": "http", "url": "https://api.example.com/mcp", "headers": {"Authorization": "Bearer ${GH_TOKEN}"}}
        }}"#,
    );
    let project = write(
        dir.path(),
        "repo/.opsgate/mcp.json",
        r#"{"mcpServers": {
            "memory": {"transport": "stdio", "command": "node", "args": ["memory.js"], "env": {"MEMORY_FILE_PATH": "${HOME}/m.json"},
                       "call_timeout_seconds": 5, "max_concurrency": 2, "effects": {"read_graph": "read"}},
            "fs": {"transport": "streamable-http", "url": "http://127.0.0.1:9000/mcp"}
        }}"#,
    );
    let loaded = load(&project, Some(&global), &env);
    assert_eq!(loaded.problems, vec![]);
    let names: Vec<&str> = loaded.servers.iter().map(|server| server.name.as_str()).collect();
    assert_eq!(names, ["fs", "github", "memory"]);
    let memory = &loaded.servers[2];
    assert_eq!(memory.source, project);
    assert_eq!(
        memory.transport,
        Transport::Stdio {
            command: "node".to_string(),
            args: vec!["memory.js".to_string()],
            env: [("MEMORY_FILE_PATH".to_string(), "/home/sre/m.json".to_string())].into(),
            cwd: None,
        }
    );
    assert_eq!(memory.call_timeout, Duration::from_secs(5));
    assert_eq!(memory.max_concurrency, 2);
    assert_eq!(memory.effects.get("read_graph"), Some(&Effect::Read));
    let github = &loaded.servers[1];
    assert_eq!(github.source, global);
    let Transport::StreamableHttp { headers, .. } = &github.transport else { panic!("github is HTTP") };
    assert_eq!(headers["Authorization"], "Bearer ghp_secret");
    // Debug output names header keys, never their values.
    assert!(!format!("{github:?}").contains("ghp_secret"));
}

#[test]
fn bad_entries_are_reported_with_file_and_name_and_the_rest_load() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = write(
        dir.path(),
        ".opsgate/mcp.json",
        r#"{"servers": {
            "My_Server": {"command": "x"},
            "no-command": {"args": []},
            "bad-url": {"url": "ftp://example.com"},
            "sse": {"type": "sse", "url": "http://localhost/sse"},
            "unset": {"command": "x", "env": {"TOKEN": "${NOT_SET}"}},
            "bad-effect": {"command": "x", "effects": {"t": "maybe"}},
            "extra": {"command": "x", "autoApprove": [], "colour": "blue"},
            "good": {"command": "x"}
        }}"#,
    );
    let loaded = load(&project, None, &env);
    let names: Vec<&str> = loaded.servers.iter().map(|server| server.name.as_str()).collect();
    assert_eq!(names, ["extra", "good"]);
    let problems: Vec<String> = loaded.problems.iter().map(ToString::to_string).collect();
    let expect = [
        ("My_Server", "must match ^[a-z][a-z0-9-]*$"),
        ("no-command", "needs \"command\""),
        ("bad-url", "http:// or https://"),
        ("sse", "SSE transport is not supported"),
        ("unset", "NOT_SET is not set"),
        ("bad-effect", "\"read\", \"write\" or \"destructive\""),
        ("extra", "unknown key \"colour\" ignored"),
    ];
    for (server, reason) in expect {
        assert!(
            problems.iter().any(|problem| problem.contains(&format!("server {server:?}"))
                && problem.contains(reason)
                && problem.contains(".opsgate/mcp.json")),
            "{server}: {reason} not in {problems:#?}"
        );
    }
    assert_eq!(loaded.problems.iter().filter(|problem| problem.skipped).count(), 6);
}

#[test]
fn a_broken_file_is_one_problem_and_a_missing_one_none() {
    let dir = tempfile::tempdir().expect("tempdir");
    let project = write(dir.path(), ".opsgate/mcp.json", "{\"mcpServers\": {");
    let loaded = load(&project, Some(&dir.path().join("absent.json")), &env);
    assert!(loaded.servers.is_empty());
    assert_eq!(loaded.problems.len(), 1);
    assert!(loaded.problems[0].to_string().contains("not valid JSON"), "{}", loaded.problems[0]);
}

#[test]
fn expansion_supports_defaults_and_names_what_is_missing() {
    assert_eq!(expand("a ${HOME} b ${X:-dflt}", &env), Ok("a /home/sre b dflt".to_string()));
    assert!(expand("${NOPE}", &env).is_err_and(|error| error.contains("NOPE")));
    assert!(expand("${HOME", &env).is_err_and(|error| error.contains("unclosed")));
}
